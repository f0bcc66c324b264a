//! The autotuner on a seeded simulated multi-chip board, scored against the simulator's oracle.

mod common;

use bm13xx::{
    BlockHeader, ChipAddressing, ChipModel, Command, Destination, Frequency, NonceLayout,
    PllConstraints, Response, TicketDifficulty, VersionMask,
};
use chipsim::{Oracle, SimControl};
use common::{SimDelay, SimPort, Up, board_up};
use embedded_hal_async::delay::DelayNs;
use hashboard::board::{BM1397_HASHBOARD_12, BoardDescription};
use hashboard::chain::Chain;
use hashboard::drivers::tps546::Tps546;
use hashboard::mining::{Dispatcher, NonceOutcome, Work};
use hashboard::profile::StoredProfile;
use hashboard::tuner::{ChipSample, Goal, TuneRig, TunerConfig, resume, tune};

/// Tuning runs the chips at a low ticket difficulty so error rates are measurable in seconds.
const TUNING_TICKET: f64 = 16.0;
const SCALE: f64 = 1.0 / 4_294_967_296.0;
const CHIPS: u32 = 4;

/// A one-domain variant of the 12-chip board, sized to the simulated chain.
const BOARD: BoardDescription = BoardDescription {
    chips_per_chain: CHIPS,
    voltage_domains: 1,
    ..BM1397_HASHBOARD_12
};

struct SimRig {
    /// The per-chip voltage the regulator is at.
    core_mv: u32,
    chain: Chain<SimPort>,
    dispatcher: Dispatcher,
    regulator: Tps546<chipsim::Tps546>,
    delay: SimDelay,
    control: SimControl,
    addressing: ChipAddressing,
}

impl TuneRig for SimRig {
    type Error = String;

    async fn set_core_mv(&mut self, millivolts: u32) -> Result<(), String> {
        // Voltage changes go through the library's ramp, as the board task's would.
        hashboard::power::ramp_core_voltage(
            &mut self.regulator,
            &BOARD,
            &mut self.delay,
            self.core_mv,
            millivolts,
        )
        .await
        .map_err(|e| e.to_string())?;
        self.core_mv = BOARD.clamp_core_mv(millivolts);
        Ok(())
    }

    async fn set_clock(&mut self, chip: u32, frequency: Frequency) -> Result<(), String> {
        let setting = bm13xx::pll::solve(
            ChipModel::Bm1397,
            frequency,
            PllConstraints::esp_miner(ChipModel::Bm1397),
        )
        .map_err(|e| e.to_string())?;
        let address = self.addressing.address_of(chip).ok_or("no such chip")?;
        self.chain
            .write_frame(
                Command::write(Destination::Chip(address), setting.parameter)
                    .encode()
                    .as_bytes(),
            )
            .await
            .map_err(|e| format!("{e:?}"))
    }

    async fn measure(&mut self, seconds: u32, samples: &mut [ChipSample]) -> Result<f32, String> {
        let until = self.control.with_sim(|s| s.now_s()) + f64::from(seconds);
        while self.control.with_sim(|s| s.now_s()) < until {
            let Some(Response::Nonce(nonce)) = self
                .chain
                .next_response(&mut self.delay, 100)
                .await
                .map_err(|e| format!("{e:?}"))?
            else {
                continue;
            };
            match self.dispatcher.check(&nonce) {
                NonceOutcome::Share(share) => samples[share.chip_index as usize].valid += 1,
                NonceOutcome::Valid { chip_index, .. } => samples[chip_index as usize].valid += 1,
                NonceOutcome::HardwareError { chip_index } => {
                    samples[chip_index as usize].errors += 1
                }
                NonceOutcome::Duplicate { .. } | NonceOutcome::Stale { .. } => {}
            }
        }
        Ok(self
            .regulator
            .telemetry()
            .map_err(|e| e.to_string())?
            .pout_w)
    }
}

async fn rig(seed: u64) -> SimRig {
    let Up {
        mut chain,
        regulator,
        control,
        delay,
        ..
    } = board_up(CHIPS, seed).await;
    // Full airflow keeps the chips cool and steady while they are measured.
    control.with_sim(|s| s.set_fan_duty(1.0));
    let ticket = TicketDifficulty::at_most(TUNING_TICKET).expect("valid");
    chain
        .write_frame(
            Command::write(Destination::All, ticket.mask())
                .encode()
                .as_bytes(),
        )
        .await
        .expect("writes");
    let addressing = chain.addressing();
    let mut dispatcher = Dispatcher::new(
        ChipModel::Bm1397,
        NonceLayout::ESP_MINER,
        addressing,
        TUNING_TICKET,
        SCALE,
    );
    let work = Work {
        work_id: 1,
        header: BlockHeader {
            version: 0x2000_0000,
            prev_hash: [7; 32],
            merkle_root: [seed as u8; 32],
            ntime: 1,
            nbits: 2,
            nonce: 0,
        },
        version_mask: VersionMask::BIP320,
        pool_difficulty: f64::INFINITY,
    };
    chain
        .write_frame(dispatcher.dispatch(work).as_bytes())
        .await
        .expect("writes");
    SimRig {
        // chipsim's supply starts at the chip's nominal 1.4 V.
        core_mv: 1400,
        chain,
        dispatcher,
        regulator,
        delay,
        control,
        addressing,
    }
}

/// The chain's efficiency as the simulator knows it: true power over the hash rate that is not
/// lost to errors.
fn true_efficiency(control: &SimControl) -> (f64, f64, f64) {
    control.with_sim(|sim| {
        let volts = sim.core_volts();
        let terahashes: f64 = sim
            .chips()
            .iter()
            .map(|c| {
                c.hashrate()
                    * (1.0
                        - c.silicon
                            .error_rate(c.frequency_mhz(), volts, c.thermal.temp_c))
                    / 1e12
            })
            .sum();
        let watts = sim.power_w();
        (terahashes, watts, watts / terahashes)
    })
}

/// Tunes `rig` for `goal`, lets the temperatures settle for two minutes, and returns the profile
/// with the simulator's truth at the chosen point: (TH/s, W, J/TH).
async fn tuned(rig: &mut SimRig, goal: Goal) -> (hashboard::tuner::Profile, (f64, f64, f64)) {
    let profile = tune(rig, &BOARD, CHIPS as usize, goal, TunerConfig::DEFAULT)
        .await
        .expect("tunes");
    rig.delay.delay_ms(120_000).await;
    (profile, true_efficiency(&rig.control))
}

fn mean_temp(control: &SimControl) -> f64 {
    control.with_sim(|s| s.chips().iter().map(|c| c.thermal.temp_c).sum::<f64>() / f64::from(CHIPS))
}

#[tokio::test]
async fn max_efficiency_is_within_3_percent_of_the_oracle() {
    for seed in [11, 12] {
        let mut rig = rig(seed).await;
        let profile = tune(
            &mut rig,
            &BOARD,
            CHIPS as usize,
            Goal::MaxEfficiency,
            TunerConfig::DEFAULT,
        )
        .await
        .expect("tunes");
        // Let temperatures settle at the chosen point before judging it.
        rig.delay.delay_ms(120_000).await;
        let (th, watts, jth) = true_efficiency(&rig.control);
        let temp = mean_temp(&rig.control);
        let oracle = rig
            .control
            .with_sim(|s| {
                Oracle::best_chain_point(
                    s,
                    f64::from(BOARD.min_core_mv) / 1000.0,
                    f64::from(BOARD.max_core_mv) / 1000.0,
                    temp,
                )
            })
            .expect("oracle");
        let ratio = jth / oracle.joules_per_th;
        eprintln!(
            "seed {seed}: tuned {jth:.2} J/TH ({th:.3} TH/s, {watts:.1} W at {} mV) vs oracle {:.2} J/TH at {:.3} V; ratio {ratio:.4}; {} simulated min",
            profile.core_mv,
            oracle.joules_per_th,
            oracle.volts,
            profile.elapsed_s / 60
        );
        assert!(
            ratio <= 1.03,
            "seed {seed}: {ratio:.4} of the oracle's best J/TH"
        );
        assert!(
            profile.curve.iter().flatten().count() >= 2,
            "the curve has the points visited"
        );
    }
}

#[tokio::test]
async fn power_target_is_met_within_2_percent() {
    let mut rig = rig(13).await;
    // Nominal power of the four chips at the board's default point, to set a realistic target.
    rig.delay.delay_ms(60_000).await;
    let nominal_w = rig.control.with_sim(|s| s.power_w());
    let target = (nominal_w * 0.75) as f32;
    let (profile, (_, watts, _)) = tuned(&mut rig, Goal::PowerTarget { watts: target }).await;
    let error = (watts / f64::from(target) - 1.0).abs();
    eprintln!(
        "power target {target:.1} W: {watts:.1} W true ({:.2} %), {} simulated min",
        error * 100.0,
        profile.elapsed_s / 60
    );
    assert!(error <= 0.02, "{watts:.2} W for a {target:.2} W target");
}

#[tokio::test]
async fn hashrate_target_is_met_within_2_percent() {
    let mut rig = rig(14).await;
    // Two thirds of what the chips do at the board's default point.
    let target = (4.0 * 425e6 * 672.0 / 1e12 * 2.0 / 3.0) as f32;
    let (profile, (th, watts, jth)) =
        tuned(&mut rig, Goal::HashrateTarget { terahashes: target }).await;
    let error = (th / f64::from(target) - 1.0).abs();
    eprintln!(
        "hash-rate target {target:.3} TH/s: {th:.3} TH/s true ({:.2} %) at {watts:.1} W ({jth:.1} J/TH), {} simulated min",
        error * 100.0,
        profile.elapsed_s / 60
    );
    assert!(error <= 0.02, "{th:.4} TH/s for a {target:.4} TH/s target");
}

/// A restart resumes from the stored profile in minutes, not the sweep's tens of minutes, and runs
/// as efficiently; on a sibling board with weaker chips the stored clocks step down until clean.
#[tokio::test]
async fn resuming_from_a_stored_profile() {
    let mut first = rig(15).await;
    let (tuned, (_, _, tuned_jth)) = tuned(&mut first, Goal::MaxEfficiency).await;
    let mut flash = [0u8; hashboard::profile::MAX_ENCODED_LEN];
    let len = StoredProfile::from_tuned(ChipModel::Bm1397, &tuned)
        .encode(&mut flash)
        .expect("fits");
    let stored = StoredProfile::decode(&flash[..len]).expect("reads back");

    // The same board after a restart.
    let mut same = rig(15).await;
    let resumed = resume(&mut same, &BOARD, &stored, TunerConfig::DEFAULT)
        .await
        .expect("resumes");
    same.delay.delay_ms(120_000).await;
    let (_, _, resumed_jth) = true_efficiency(&same.control);
    eprintln!(
        "resumed in {} s vs tuned in {} s; {resumed_jth:.2} vs {tuned_jth:.2} J/TH",
        resumed.elapsed_s, tuned.elapsed_s
    );
    assert!(
        resumed.elapsed_s * 10 <= tuned.elapsed_s,
        "{} s vs {} s",
        resumed.elapsed_s,
        tuned.elapsed_s
    );
    assert!((resumed_jth / tuned_jth - 1.0).abs() < 0.01);

    // A sibling board: different silicon, the same stored clocks.
    let mut sibling = rig(16).await;
    let adapted = resume(&mut sibling, &BOARD, &stored, TunerConfig::DEFAULT)
        .await
        .expect("resumes");
    sibling.delay.delay_ms(60_000).await;
    let errors = sibling.control.with_sim(|s| {
        let volts = s.core_volts();
        s.chips()
            .iter()
            .map(|c| {
                c.silicon
                    .error_rate(c.frequency_mhz(), volts, c.thermal.temp_c)
            })
            .fold(0.0, f64::max)
    });
    eprintln!(
        "sibling: clocks {:?}, worst error rate {errors:.4}",
        &adapted.clocks_khz[..4]
    );
    assert!(
        errors < 0.05,
        "every chip of the sibling ends clean enough: {errors}"
    );
}
