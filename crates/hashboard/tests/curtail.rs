//! Sleep and wake against the simulator: power really drops, nonces stop, and waking brings every
//! chip back at its own tuned clock.

mod common;

use bm13xx::{BlockHeader, ChipModel, Frequency, NonceLayout, Response, VersionMask};
use common::{Up, board_up};
use embedded_hal_async::delay::DelayNs;
use hashboard::board::{BM1397_HASHBOARD_12, BoardDescription};
use hashboard::curtail::{PowerState, sleep, wake};
use hashboard::drivers::emc2101::{self, Emc2101};
use hashboard::mining::{Dispatcher, NonceOutcome, Work};
use hashboard::profile::StoredProfile;

const CHIPS: u32 = 4;
const BOARD: BoardDescription = BoardDescription {
    chips_per_chain: CHIPS,
    voltage_domains: 1,
    ..BM1397_HASHBOARD_12
};

fn work() -> Work {
    Work {
        work_id: 7,
        header: BlockHeader {
            version: 0x2000_0000,
            prev_hash: [9; 32],
            merkle_root: [8; 32],
            ntime: 1,
            nbits: 2,
            nonce: 0,
        },
        version_mask: VersionMask::BIP320,
        pool_difficulty: f64::INFINITY,
    }
}

/// A stored profile for the four simulated chips.
fn profile(core_mv: u32, clocks: [u32; 4]) -> StoredProfile {
    let mut clocks_khz = [0u32; hashboard::mining::MAX_CHIPS];
    clocks_khz[..4].copy_from_slice(&clocks);
    StoredProfile {
        model: ChipModel::Bm1397,
        core_mv,
        chips: CHIPS as usize,
        clocks_khz,
    }
}

#[tokio::test]
async fn sleep_cuts_the_power_and_wake_restores_the_tuned_clocks() {
    let Up {
        mut chain,
        mut regulator,
        control,
        mut delay,
        mut reset,
        config,
    } = board_up(CHIPS, 31).await;
    let mut fan = Emc2101::init(control.fan_controller(), emc2101::DEFAULT_ADDRESS).expect("fan");
    let mut dispatcher = Dispatcher::new(
        ChipModel::Bm1397,
        NonceLayout::ESP_MINER,
        chain.addressing(),
        256.0,
        1.0 / 4_294_967_296.0,
    );
    chain
        .write_frame(dispatcher.dispatch(work()).as_bytes())
        .await
        .expect("writes");
    delay.delay_ms(30_000).await;
    let mining_w = control.with_sim(|s| s.power_w());
    assert!(mining_w > 20.0, "{mining_w} W while mining");
    // Take what was sent while mining.
    while chain
        .next_response(&mut delay, 100)
        .await
        .expect("reads")
        .is_some()
    {}

    let asleep = sleep(
        &mut chain,
        &mut regulator,
        Some(&mut fan),
        &mut delay,
        &BOARD,
        Frequency::from_khz(425_000),
    )
    .await
    .expect("sleeps");
    assert_eq!(asleep.state, PowerState::Sleeping);
    assert!(
        asleep.took_ms <= 5_000,
        "asleep within seconds: {} ms",
        asleep.took_ms
    );
    assert_eq!(control.with_sim(|s| s.power_w()), 0.0);
    assert!(
        (control.with_sim(|s| s.fan_duty()) - f64::from(BOARD.min_fan_percent) / 100.0).abs()
            < 0.02
    );
    // Asleep, nothing comes back.
    assert_eq!(
        chain
            .next_response(&mut delay, 60_000)
            .await
            .expect("reads"),
        None
    );

    // Wake at a tuned profile: each chip at its own clock.
    let profile = profile(1425, [437_500, 450_000, 425_000, 462_500]);
    let awake = wake(
        &mut chain,
        &mut regulator,
        &mut reset,
        &mut delay,
        &BOARD,
        config,
        &profile,
    )
    .await
    .expect("wakes");
    assert_eq!(awake.state, PowerState::Mining);
    let clocks: Vec<f64> =
        control.with_sim(|s| s.chips().iter().map(|c| c.frequency_mhz()).collect());
    assert_eq!(clocks, [437.5, 450.0, 425.0, 462.5]);
    assert!((control.with_sim(|s| s.core_volts()) - 1.425).abs() < 0.002);

    // And it mines again: new work, genuine nonces.
    chain
        .write_frame(dispatcher.dispatch(work()).as_bytes())
        .await
        .expect("writes");
    let mut valid = 0;
    for _ in 0..600 {
        if let Some(Response::Nonce(n)) = chain.next_response(&mut delay, 100).await.expect("reads")
            && matches!(
                dispatcher.check(&n),
                NonceOutcome::Valid { .. } | NonceOutcome::Share(_)
            )
        {
            valid += 1;
        }
    }
    assert!(valid > 5, "{valid} valid nonces after waking");
}

#[tokio::test]
async fn a_profile_for_another_board_does_not_wake_it() {
    let Up {
        mut chain,
        mut regulator,
        control,
        mut delay,
        mut reset,
        config,
    } = board_up(CHIPS, 32).await;
    let profile = profile(1425, [900_000; 4]);
    let result = wake(
        &mut chain,
        &mut regulator,
        &mut reset,
        &mut delay,
        &BOARD,
        config,
        &profile,
    )
    .await;
    assert!(result.is_err(), "900 MHz is beyond the board");
    assert!(control.with_sim(|s| s.chips().iter().all(|c| c.frequency_mhz() < 500.0)));
}
