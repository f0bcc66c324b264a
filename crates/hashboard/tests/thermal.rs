//! A fan that dies mid-run: the guard throttles, then stops hashing before any chip reaches its
//! critical temperature — every time, across seeds. The loop here is what the firmware's board
//! task does each second: read sensors, decide, apply.

mod common;

use bm13xx::{
    BlockHeader, ChipModel, Command, Destination, Job, JobId, MidstateJob, PllConstraints,
    VersionMask,
};
use chipsim::Faults;
use common::{Up, board_up};
use embedded_hal_async::delay::DelayNs;
use hashboard::board::ThermalLimits;
use hashboard::chain::Chain;
use hashboard::drivers::emc2101::{self, Emc2101};
use hashboard::thermal::{FanController, ThermalAction, ThermalGuard};

const LIMITS: ThermalLimits = ThermalLimits {
    target_c: 60.0,
    throttle_c: 75.0,
    shutdown_c: 90.0,
    min_cooldown_s: 60,
};
/// The simulated silicon stops hashing on its own here; the guard must act well before.
const CHIP_CRITICAL_C: f64 = chipsim::physics::CRITICAL_C;

struct Outcome {
    max_temp_c: f64,
    throttled: bool,
    stopped: bool,
    /// Resumed, and the chips (which lost their state with the supply) hashed again.
    resumed_hashing: bool,
}

async fn fan_failure_run(seed: u64) -> Outcome {
    let Up {
        mut chain,
        mut regulator,
        control,
        mut delay,
        mut reset,
        config,
    } = board_up(4, seed).await;
    regulator.set_vout_mv(1400).expect("in range");
    let mut fan =
        Emc2101::init(control.fan_controller(), emc2101::DEFAULT_ADDRESS).expect("fan controller");
    let header = BlockHeader {
        version: 0x2000_0000,
        prev_hash: [1; 32],
        merkle_root: [2; 32],
        ntime: 3,
        nbits: 4,
        nonce: 0,
    };
    let job = MidstateJob::from_header(
        JobId::new(ChipModel::Bm1397, 4).expect("valid"),
        &header,
        Some(VersionMask::BIP320),
    );
    chain
        .write_frame(Job::Midstate(job).encode().as_bytes())
        .await
        .expect("writes");

    let mut fan_control = FanController::new(&LIMITS, 25.0);
    let mut guard = ThermalGuard::new(LIMITS);
    let mut outcome = Outcome {
        max_temp_c: 0.0,
        throttled: false,
        stopped: false,
        resumed_hashing: false,
    };
    for second in 0..1800u32 {
        if second == 120 {
            control.set_faults(Faults {
                fan_failure: true,
                ..Faults::default()
            });
        }
        let temp = fan.external_temp_c().ok();
        let rpm = fan.fan_rpm().ok();
        let fan_percent = fan_control.decide(temp, 1.0).percent;
        fan.set_fan_percent(fan_percent).expect("writes");
        match guard.decide(f64::from(second), temp, rpm, fan_percent) {
            ThermalAction::Hold => {}
            ThermalAction::Throttle { clock_scale, .. } => {
                outcome.throttled = true;
                set_clock(&mut chain, 425.0 * clock_scale).await;
            }
            ThermalAction::Stop { .. } => {
                outcome.stopped = true;
                regulator.set_output(false).expect("writes");
            }
            ThermalAction::Resume { clock_scale, .. } => {
                // The supply was off: the chips must be brought up again before they hash.
                regulator.set_output(true).expect("writes");
                chain
                    .reinit(&mut reset, &mut delay, config)
                    .await
                    .expect("comes back up");
                set_clock(&mut chain, 425.0 * clock_scale).await;
                chain
                    .write_frame(Job::Midstate(job).encode().as_bytes())
                    .await
                    .expect("writes");
                delay.delay_ms(1000).await;
                outcome.resumed_hashing |=
                    control.with_sim(|s| s.chips().iter().all(|c| c.hashrate() > 0.0));
            }
        }
        delay.delay_ms(1000).await;
        let hottest = control.with_sim(|s| {
            s.chips()
                .iter()
                .map(|c| c.thermal.temp_c)
                .fold(f64::MIN, f64::max)
        });
        outcome.max_temp_c = outcome.max_temp_c.max(hottest);
    }
    outcome
}

async fn set_clock(chain: &mut Chain<common::SimPort>, mhz: f32) {
    let target = bm13xx::Frequency::from_khz((mhz * 1000.0) as u32);
    let setting = bm13xx::pll::solve(
        ChipModel::Bm1397,
        target,
        PllConstraints::esp_miner(ChipModel::Bm1397),
    )
    .expect("solvable");
    chain
        .write_frame(
            Command::write(Destination::All, setting.parameter)
                .encode()
                .as_bytes(),
        )
        .await
        .expect("writes");
}

#[tokio::test]
async fn a_dead_fan_throttles_then_stops_before_the_critical_temperature() {
    for seed in 1..=5 {
        let outcome = fan_failure_run(seed).await;
        eprintln!("seed {seed}: hottest chip {:.1} °C", outcome.max_temp_c);
        assert!(
            outcome.throttled,
            "seed {seed}: the stalled fan must throttle"
        );
        assert!(
            outcome.stopped,
            "seed {seed}: without airflow hashing must stop"
        );
        assert!(
            outcome.max_temp_c < CHIP_CRITICAL_C - 5.0,
            "seed {seed}: reached {:.1} °C",
            outcome.max_temp_c
        );
    }
}
