//! One chain and everything that runs it: its board, its mining state, its fan and clock
//! governors, its hash-rate windows. A machine is a list of these; the daemon's loop serves them
//! in turn. What kind of board it is (serial, simulated) stays behind [`Hardware`].

use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::board::{BoardError, Hardware, Witness};
use crate::control::Change;
use crate::cooling::{Cooling, scale_clocks};
use crate::mining::{Mining, WorkSource};
use crate::persist::TunedChain;
use crate::silence::{self, SilenceWatch};
use crate::snapshot::{ChainRow, Snapshot};
use crate::telemetry::{Rates, Window};

mod tune;

pub use tune::{Autotune, TuneEvent, machine_curve};

/// The chain is drained when it has been quiet this long.
const DRAIN_QUIET_MS: u32 = 50;

/// A board ready to run, and the difficulty its chips filter nonces at.
pub struct Rig<H> {
    pub hw: H,
    pub ticket: f64,
    /// Share difficulties are scaled by a simulated chain's floor; 1 on real chips.
    pub scale: f64,
}

impl<H> std::fmt::Debug for Rig<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rig")
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

/// One chain. Its parts are private: the rest of the daemon reads it through the accessors
/// below and changes it only through its operations (`apply`, `aim_power`, `set_fan`,
/// `leave_out`, the tune's), which keep its rules — clocks before voltage, the thermal guard's
/// hold, a re-initialised chain's lost jobs.
pub struct Unit<H> {
    index: u32,
    /// Why the chain is left out (it did not come up, its I/O failed, it did not come back from
    /// sleep); such a chain is left out of every change.
    failed: Option<String>,
    hw: H,
    mining: Mining,
    cooling: Cooling,
    rates: Rates,
    autotune: Autotune,
    /// Chips that stopped answering although the chain still enumerates them.
    silence: SilenceWatch,
    started: Instant,
    start_s: f64,
    peak_chip_c: f64,
}

impl<H> std::fmt::Debug for Unit<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unit")
            .field("index", &self.index)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl<H: Hardware> Unit<H> {
    /// Brings the chain up (or keeps it down when the machine was left asleep) and starts the
    /// chips' clock where they keep their own.
    pub async fn start(
        index: u32,
        rig: Rig<H>,
        asleep: bool,
        power_target_w: Option<f64>,
        tuned: Option<TunedChain>,
        speed: f64,
    ) -> Result<Self, BoardError> {
        let Rig {
            mut hw,
            ticket,
            scale,
        } = rig;
        let board = hw.description();
        let mut failed = None;
        if asleep {
            hw.power_off_at_start()?;
        } else if let Err(e) = hw.power_up().await {
            // One dead hashboard must not stop the others: this chain stays down and says so.
            error!(chain = index, error = %e, "chain did not come up; the others mine on");
            failed = Some(e.to_string());
        } else {
            info!(
                chain = index,
                board = board.name,
                chips = hw.chips_up(),
                baud = hw.baud(),
                mhz = hw.frequency().mhz(),
                ticket,
                "chain up"
            );
        }
        if !hw.has_thermal_sensor() {
            warn!(
                chain = index,
                "no temperature sensor wired: fan control and thermal protection are off"
            );
        }
        let mut cooling = Cooling::new(&hw);
        cooling.set_power_target(power_target_w);
        let mut mining = Mining::new(
            index,
            ticket,
            scale,
            crate::mining::job_interval(board, speed),
        );
        mining.restart(&hw);
        hw.start_chip_clock();
        let started = Instant::now();
        let mut unit = Self {
            index,
            failed,
            hw,
            mining,
            cooling,
            rates: Rates::default(),
            autotune: Autotune::restored(tuned),
            silence: SilenceWatch::default(),
            started,
            start_s: 0.0,
            peak_chip_c: f64::MIN,
        };
        unit.start_s = unit.chip_clock();
        // A target from before the restart: to the tuned curve's point for it, if there is one.
        if let Err(e) = unit.aim_power(power_target_w).await {
            warn!(chain = index, error = %e, "power target: cannot move to the curve's point");
        }
        Ok(unit)
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    /// Why the chain is left out, when it is.
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Whether the chain is still in the machine (not left out).
    pub fn working(&self) -> bool {
        self.failed.is_none()
    }

    /// The board, for reading.
    pub fn hw(&self) -> &H {
        &self.hw
    }

    pub fn tally(&self) -> &crate::mining::Tally {
        &self.mining.tally
    }

    /// Jobs sent to the chips.
    pub fn jobs(&self) -> u64 {
        self.mining.jobs()
    }

    /// Hash rate over `window`, TH/s.
    pub fn ths(&self, window: Window) -> f64 {
        self.rates.ths(window)
    }

    pub fn autotune(&self) -> &Autotune {
        &self.autotune
    }

    /// The chain's job table, for the pool's work to be dealt into.
    pub fn work_queue(&mut self) -> &mut Mining {
        &mut self.mining
    }

    /// The next frame from the chain, waiting at most `wait_ms`.
    pub async fn next_response(
        &mut self,
        wait_ms: u32,
    ) -> Result<Option<bm13xx::Response>, BoardError> {
        self.hw.next_response(wait_ms).await
    }

    /// A frame from the chain: a nonce checked and credited, a share submitted.
    pub fn take(&mut self, response: bm13xx::Response, source: &WorkSource) {
        self.mining.take(response, source);
    }

    /// A fixed fan duty, or `None` for automatic control; the thermal guard still watches.
    pub fn set_fan(&mut self, percent: Option<f32>) -> Result<(), BoardError> {
        self.cooling.set_manual_fan(&mut self.hw, percent)
    }

    /// Makes a decided change on this chain. A chain the thermal guard stopped stays down until
    /// it has cooled, whatever the command: the intent is kept and applied at resume. Returns a
    /// note when the change is held back.
    pub async fn apply(&mut self, change: Change) -> Result<Option<&'static str>, BoardError> {
        let held = Some("overheated: the chains resume once they have cooled");
        if let Change::Tune(_) = change {
            self.autotune.retry();
        }
        let outcome = match change {
            Change::Nothing => Ok(None),
            Change::Sleep => self.hw.sleep().await.map(|()| None),
            Change::Wake | Change::Reboot if self.cooling.overheated() => Ok(held),
            Change::Wake => self.hw.power_up().await.map(|()| None),
            Change::Frequency(target) => {
                self.cooling.set_power_target(None);
                self.hw.set_frequency(target).await?;
                self.cooling.base_clocks = self.hw.clocks().to_vec();
                Ok(None)
            }
            Change::PowerTarget(watts) => return self.aim_power(watts).await.map(|()| None),
            // The loop's reconcile starts the tune; only a board that cannot be measured refuses.
            Change::Tune(_) if self.hw.power_w().is_none() => Err(BoardError::NoPowerReading),
            Change::Tune(_) => Ok(None),
            Change::CoreVoltage(mv) => self.hw.set_core_voltage(mv).await.map(|()| None),
            Change::Reboot => {
                self.hw.sleep().await?;
                self.hw.power_up().await.map(|()| None)
            }
            Change::Identify => {
                info!("identify: this is the machine");
                Ok(None)
            }
        };
        if matches!(change, Change::Wake | Change::Reboot) {
            // A re-initialised chain has forgotten its jobs.
            self.mining.restart(&self.hw);
            // A target kept while asleep is aimed now that the chips run.
            if outcome.is_ok()
                && let Err(e) = self.aim_power(self.cooling.power_target()).await
            {
                warn!(chain = self.index, error = %e, "power target: cannot move to the curve's point");
            }
        }
        outcome
    }

    /// The chain did not come back from a wake the others survived: its supply is cut (half
    /// brought up, it may draw power for nothing) and it is left out from now on.
    pub async fn leave_out(&mut self, reason: String) {
        if let Err(e) = self.hw.sleep().await {
            warn!(chain = self.index, error = %e, "cannot cut the supply of a chain that did not come back");
        }
        self.fail(reason);
    }

    /// The chain's I/O failed while running (a UART that vanished): it is left out from now on,
    /// and the machine mines on with the others.
    pub fn fail(&mut self, reason: String) {
        error!(chain = self.index, error = %reason, "chain failed; the others mine on");
        self.failed = Some(reason);
    }

    /// The chips' time: their own clock where they keep one, the wall clock otherwise.
    fn chip_clock(&self) -> f64 {
        self.hw
            .chip_clock_s()
            .unwrap_or_else(|| self.started.elapsed().as_secs_f64())
    }

    /// Seconds the chips have run since start.
    pub fn chip_s(&self) -> f64 {
        self.chip_clock() - self.start_s
    }

    /// Sends the chain its next work, if it is due.
    pub async fn feed(&mut self, source: &WorkSource) -> Result<(), BoardError> {
        if let Some(work) = self.mining.fresh_work(source, self.hw.asleep())
            && let Some(frame) = self.mining.dispatch(work)
        {
            self.hw.write_frame(frame.as_bytes()).await?;
        }
        Ok(())
    }

    /// Fan, thermal guard and power limiter, when a round is due.
    pub async fn govern(&mut self, asleep_by_intent: bool) {
        let chip_s = self.chip_s();
        if !self.cooling.due(chip_s) {
            return;
        }
        if let Some(dies) = self.hw.die_temps() {
            self.peak_chip_c = self.peak_chip_c.max(dies.hottest_c);
        }
        let was_asleep = self.hw.asleep();
        self.cooling
            .tick(&mut self.hw, chip_s, asleep_by_intent)
            .await;
        if std::mem::take(&mut self.cooling.capped_under)
            && let Err(e) = self.step_up_the_curve().await
        {
            warn!(chain = self.index, error = %e, "power target: cannot step up the curve");
        }
        if was_asleep && !self.hw.asleep() {
            // Resumed after a thermal stop: the chips lost their work with their supply.
            self.mining.restart(&self.hw);
        }
    }

    /// This chain's part of the one-second snapshot (board readings included).
    pub fn reading(&mut self, now: Instant) -> Snapshot {
        let chip_s = self.chip_s();
        self.watch_silence(chip_s);
        self.rates.add(now, chip_s, self.mining.tally.work);
        let tally = &self.mining.tally;
        let mhs_av = crate::telemetry::terahashes(tally.work, chip_s) * 1e6;
        let board = self.hw.description();
        let board_temp_c = self.hw.board_temp_c();
        // Per-chip die sensors, where the board reads them, say more than the board's one.
        let (hottest_chip_c, dies_overheated) = match self.hw.die_temps() {
            Some(dies) => (Some(dies.hottest_c), dies.any_overheated),
            None => (board_temp_c, false),
        };
        let mode = crate::telemetry::chain_mode(crate::telemetry::ChainConditions {
            overheated: self.cooling.overheated() || dies_overheated,
            asleep: self.hw.asleep(),
            tuning: self.autotune.tuning(),
            power_target: self.cooling.power_target().is_some(),
        });
        let hashrate = fleet_proto::messages::Hashrate {
            s5: self.rates.ths(Window::S5),
            m1: self.rates.ths(Window::M1),
            m15: self.rates.ths(Window::M15),
        };
        let chips_up = if self.failed.is_some() {
            0
        } else {
            self.hw.chips_up().saturating_sub(self.silence.silent())
        };
        Snapshot {
            elapsed_s: self.started.elapsed().as_secs(),
            mhs_av,
            mhs_5s: hashrate.s5 * 1e6,
            // The pool's verdicts and list are the machine's: the daemon adds them once.
            accepted: 0,
            rejected: 0,
            pools: Vec::new(),
            stale: tally.stale,
            hardware_errors: tally.hardware_errors,
            nonces: tally.nonces,
            chains: vec![ChainRow {
                index: self.index,
                chips: board.chips_per_chain,
                chips_up,
                model: board.model.name(),
                frequency_mhz: self.hw.frequency().mhz(),
                temperature_c: hottest_chip_c.unwrap_or(0.0),
                mhs_av,
                ths_5s: hashrate.s5,
                nonces: tally.nonces,
                hardware_errors: tally.hardware_errors,
            }],
            board: board.name,
            mode,
            hashrate,
            expected_ths: bm13xx::expected_hashrate(
                board.model,
                self.hw.frequency(),
                board.chips_per_chain,
            )
            .terahashes(),
            share_difficulty: tally.share_difficulty,
            best_difficulty: tally.best_difficulty,
            power_w: self.hw.power_w(),
            fan: self.hw.fan(),
            board_temp_c,
            regulator_temp_c: self.hw.regulator_temp_c(),
            hottest_chip_c,
            core_mv: self.hw.core_mv(),
            frequency_mhz: self.hw.frequency().mhz(),
            chips_up,
            chips_expected: board.chips_per_chain,
            asic_model: board.model.part_number(),
        }
    }

    /// Holds `target` watts (or, `None`, lets go). On a chain with a tuned curve the chips are
    /// first moved to the curve's point that gives the most hash rate within the target — its
    /// voltage, the tuned clocks scaled to it (`operating::for_target`) — and the power limiter
    /// trims from there; on others the limiter alone moves the clocks. An asleep chain keeps the
    /// target and is aimed at wake.
    pub async fn aim_power(&mut self, target: Option<f64>) -> Result<(), BoardError> {
        self.cooling.set_power_target(target);
        let (Some(target), Some(tuned)) = (target, self.autotune.tuned.as_ref()) else {
            return Ok(());
        };
        match crate::operating::for_target(&tuned.curve, tuned.core_mv, target) {
            Some(point) => self.move_to(point, target).await,
            None => Ok(()),
        }
    }

    /// A tuned chain whose point draws less than its curve said, its clocks at their ceiling
    /// under the target: one point up the curve.
    async fn step_up_the_curve(&mut self) -> Result<(), BoardError> {
        let (Some(target), Some(tuned)) =
            (self.cooling.power_target(), self.autotune.tuned.as_ref())
        else {
            return Ok(());
        };
        match crate::operating::above(&tuned.curve, tuned.core_mv, self.hw.core_mv(), target) {
            Some(point) => self.move_to(point, target).await,
            None => Ok(()),
        }
    }

    /// The chips to `point` of the tuned curve: its voltage, the tuned clocks scaled, and the
    /// limiter's ceiling at its clean clocks.
    async fn move_to(
        &mut self,
        point: crate::operating::Operating,
        target: f64,
    ) -> Result<(), BoardError> {
        let Some(tuned) = self.autotune.tuned.as_ref() else {
            return Ok(());
        };
        if self.failed.is_some()
            || self.hw.asleep()
            || tuned.clocks_khz.len() != self.hw.clocks().len()
        {
            return Ok(());
        }
        let board = self.hw.description();
        let clocks = scale_clocks(&tuned.clocks_khz, point.clock_factor, board);
        let ceiling = scale_clocks(&tuned.clocks_khz, point.ceiling_factor, board);
        info!(
            chain = self.index,
            target_w = target,
            core_mv = point.core_mv,
            clock_factor = point.clock_factor,
            "power target: to the tuned curve's point"
        );
        self.set_operating_point(point.core_mv, &clocks).await?;
        self.cooling.clock_ceiling = Some(ceiling);
        Ok(())
    }

    /// The chips to `core_mv` and `clocks` (kHz, chip by chip): the clocks come down before the
    /// voltage does and the voltage goes up before the clocks, so no chip ever runs faster than
    /// its voltage holds on the way. The thermal guard and the power limiter scale from here.
    async fn set_operating_point(
        &mut self,
        core_mv: u32,
        clocks: &[u32],
    ) -> Result<(), BoardError> {
        if core_mv < self.hw.core_mv() {
            self.hw.set_clocks(clocks).await?;
            self.hw.set_core_voltage(core_mv).await?;
        } else {
            self.hw.set_core_voltage(core_mv).await?;
            self.hw.set_clocks(clocks).await?;
        }
        self.cooling.base_clocks = self.hw.clocks().to_vec();
        Ok(())
    }

    /// Counts the chips that went silent (or came back) since the last reading, and says so.
    fn watch_silence(&mut self, chip_s: f64) {
        let chips = self.hw.chips_up();
        if self.failed.is_some() || self.hw.asleep() || chips == 0 {
            self.silence.reset();
            return;
        }
        let model = self.hw.description().model;
        let answers: Vec<u64> = self
            .mining
            .chip_counts(chips)
            .iter()
            .map(|&(valid, erring)| u64::from(valid) + u64::from(erring))
            .collect();
        let hashes_per_nonce = self.mining.ticket * 4_294_967_296.0;
        let expected_per_s: Vec<f64> = self
            .hw
            .clocks()
            .iter()
            .take(chips as usize)
            .map(|&khz| {
                let clock = bm13xx::Frequency::from_khz(khz);
                bm13xx::expected_hashrate(model, clock, 1).0 / hashes_per_nonce
            })
            .collect();
        for change in self.silence.observe(chip_s, &answers, &expected_per_s) {
            match change {
                silence::Change::Silent { chip, quiet_s } => warn!(
                    chain = self.index,
                    chip,
                    quiet_s = quiet_s.round(),
                    "chip silent: no nonce where {} were due; no longer counted up",
                    crate::silence::SILENT_AFTER_NONCES
                ),
                silence::Change::Back { chip } => {
                    info!(chain = self.index, chip, "chip answering again")
                }
            }
        }
    }

    /// Stops the chips' clock (so the counts reconcile with what the chain sent), takes what
    /// the chips already sent, and ramps the chain down. Returns the seconds it ran.
    pub async fn stop(&mut self, source: &WorkSource) -> Result<f64, BoardError> {
        self.hw.stop_chip_clock().await;
        let ran_s = self.chip_s();
        if !self.hw.asleep() {
            while let Some(response) = self.hw.next_response(DRAIN_QUIET_MS).await? {
                self.mining.take(response, source);
            }
            // Ramp down rather than drop the load; the intent is untouched, so a restart mines.
            let ramped = self.hw.sleep().await;
            // A board that cannot cut its supply still hashes while it clocks down: count that.
            while let Some(response) = self.hw.drain_response(DRAIN_QUIET_MS).await? {
                self.mining.take(response, source);
            }
            match ramped {
                Ok(()) => info!(chain = self.index, "chain ramped down"),
                Err(e) => warn!(chain = self.index, error = %e, "ramp-down failed"),
            }
        }
        Ok(ran_s)
    }

    /// The board's own account of the run, with the hottest die this unit saw.
    pub fn witness(&self) -> Option<Witness> {
        self.hw.witness().map(|seen| Witness {
            peak_chip_c: self.peak_chip_c.max(seen.peak_chip_c),
            ..seen
        })
    }
}
