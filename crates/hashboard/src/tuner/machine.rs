//! The tuning method as a state machine: no I/O, no clock, one decision per measurement. Whoever
//! drives it applies [`Tuner::core_mv`] and [`Tuner::clocks`], mines for the seconds
//! [`Tuner::step`] asks, and hands the per-chip counts and the board's power to
//! [`Tuner::observe`]. Driving it from a loop (rather than awaiting a half-hour future) lets a
//! daemon keep obeying commands and its thermal guard while a tune runs, and abort one by simply
//! dropping it.

use bm13xx::Frequency;

use super::{
    ChipSample, ClockSearch, CurvePoint, Goal, NoOperatingPoint, Profile, TunerConfig, efficiency,
    pick,
};
use crate::board::BoardDescription;
use crate::mining::MAX_CHIPS;
use crate::profile::StoredProfile;

/// Voltages a sweep visits at most (the curve's length).
pub const CURVE_POINTS: usize = 24;
/// Trims of the clocks towards a power or hash-rate target, at most.
const MAX_TRIMS: u32 = 8;

/// What the tuner wants done next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TuneStep {
    /// Run at [`Tuner::core_mv`] and [`Tuner::clocks`] for `seconds`, then [`Tuner::observe`].
    Measure { seconds: u32 },
    /// Finished: [`Tuner::outcome`] has the profile to run from now on.
    Finished,
}

#[derive(Debug, Clone)]
enum Phase {
    /// Per-chip clock limits at the current voltage.
    Search(ClockSearch),
    /// The settled point at the limits found.
    Settle,
    /// Clocks trimmed towards a target, the `tries`th time.
    Trim {
        tries: u32,
    },
    /// A stored profile, stepping erring chips down until clean.
    Resume,
    Done(Result<Profile, NoOperatingPoint>),
}

/// One tune of one chain, from the first measurement to the profile.
#[derive(Debug, Clone)]
pub struct Tuner {
    board: BoardDescription,
    config: TunerConfig,
    goal: Goal,
    chips: usize,
    phase: Phase,
    core_mv: u32,
    clocks: [u32; MAX_CHIPS],
    curve: [Option<CurvePoint>; CURVE_POINTS],
    /// The clocks behind each curve point, to return to the one picked.
    settings: [[u32; MAX_CHIPS]; CURVE_POINTS],
    points: usize,
    best_jth: f32,
    worse_in_a_row: u32,
    elapsed_s: u32,
}

impl Tuner {
    /// A full sweep for `goal`: from the board's highest voltage down, each chip's clock limit
    /// found at every voltage.
    pub fn sweep(board: &BoardDescription, chips: usize, goal: Goal, config: TunerConfig) -> Self {
        let chips = chips.min(MAX_CHIPS);
        let start = [board.default_frequency.khz(); MAX_CHIPS];
        let search = ClockSearch::new(chips, &start[..chips], &config, board);
        let mut tuner = Self::idle(board, chips, goal, config, board.max_core_mv);
        tuner.clocks[..chips].copy_from_slice(search.clocks());
        tuner.phase = Phase::Search(search);
        tuner
    }

    /// Starts from a stored profile: applies it, and steps down only the chips that now err
    /// (aged silicon, or a sibling board's profile). Minutes instead of the sweep's tens of them.
    pub fn resume(board: &BoardDescription, profile: &StoredProfile, config: TunerConfig) -> Self {
        let chips = profile.chips.min(MAX_CHIPS);
        let core_mv = board.clamp_core_mv(profile.core_mv);
        let mut tuner = Self::idle(board, chips, Goal::MaxEfficiency, config, core_mv);
        for (slot, &khz) in tuner.clocks.iter_mut().zip(profile.clocks()) {
            *slot = board.clamp_frequency(Frequency::from_khz(khz)).khz();
        }
        tuner.phase = Phase::Resume;
        tuner
    }

    fn idle(
        board: &BoardDescription,
        chips: usize,
        goal: Goal,
        config: TunerConfig,
        core_mv: u32,
    ) -> Self {
        Self {
            board: *board,
            config,
            goal,
            chips,
            phase: Phase::Settle,
            core_mv,
            clocks: [0; MAX_CHIPS],
            curve: [None; CURVE_POINTS],
            settings: [[0; MAX_CHIPS]; CURVE_POINTS],
            points: 0,
            best_jth: f32::INFINITY,
            worse_in_a_row: 0,
            elapsed_s: 0,
        }
    }

    pub fn goal(&self) -> Goal {
        self.goal
    }

    pub fn chips(&self) -> usize {
        self.chips
    }

    /// The per-chip core voltage to run at now.
    pub fn core_mv(&self) -> u32 {
        self.core_mv
    }

    /// Each chip's clock to run at now, kHz.
    pub fn clocks(&self) -> &[u32] {
        &self.clocks[..self.chips]
    }

    /// Seconds of measurement so far.
    pub fn elapsed_s(&self) -> u32 {
        self.elapsed_s
    }

    /// The points settled so far, highest voltage first.
    pub fn curve(&self) -> impl Iterator<Item = CurvePoint> + '_ {
        self.curve.iter().flatten().copied()
    }

    /// What to do now.
    pub fn step(&self) -> TuneStep {
        let seconds = match &self.phase {
            Phase::Search(_) => self.config.search_window_s,
            Phase::Settle | Phase::Trim { .. } | Phase::Resume => self.config.settle_window_s,
            Phase::Done(_) => return TuneStep::Finished,
        };
        TuneStep::Measure { seconds }
    }

    /// The profile (or why there is none), once finished.
    pub fn outcome(&self) -> Option<Result<&Profile, NoOperatingPoint>> {
        match &self.phase {
            Phase::Done(outcome) => Some(outcome.as_ref().map_err(|e| *e)),
            _ => None,
        }
    }

    /// The measurement of the step just run: one sample per chip (missing ones count as
    /// silent) and the board's power in watts. Ignored once finished.
    pub fn observe(&mut self, samples: &[ChipSample], watts: f32) {
        let seconds = match self.step() {
            TuneStep::Measure { seconds } => seconds,
            TuneStep::Finished => return,
        };
        self.elapsed_s = self.elapsed_s.saturating_add(seconds);
        let mut padded = [ChipSample::default(); MAX_CHIPS];
        for (slot, sample) in padded.iter_mut().zip(samples).take(self.chips) {
            *slot = *sample;
        }
        let samples = &padded[..self.chips];
        match core::mem::replace(&mut self.phase, Phase::Settle) {
            Phase::Search(mut search) => {
                search.observe(samples);
                self.clocks[..self.chips].copy_from_slice(search.clocks());
                if !search.done() {
                    self.phase = Phase::Search(search);
                }
            }
            Phase::Settle => self.settled(self.point(samples, watts)),
            Phase::Trim { tries } => self.trimmed_or_done(tries, self.point(samples, watts)),
            Phase::Resume => self.resumed(samples, watts),
            done @ Phase::Done(_) => self.phase = done,
        }
    }

    fn point(&self, samples: &[ChipSample], watts: f32) -> CurvePoint {
        let (terahashes, _) = efficiency(self.board.model, self.clocks(), samples, watts);
        CurvePoint {
            core_mv: self.core_mv,
            terahashes,
            watts,
        }
    }

    /// A voltage's settled point: on to the next voltage, or choose.
    fn settled(&mut self, point: CurvePoint) {
        self.curve[self.points] = Some(point);
        self.settings[self.points] = self.clocks;
        self.points += 1;
        if point.joules_per_th() < self.best_jth * 0.995 {
            self.best_jth = point.joules_per_th();
            self.worse_in_a_row = 0;
        } else {
            self.worse_in_a_row += 1;
        }
        // Past the efficiency optimum lower voltages only lose hash rate; below a target, every
        // lower voltage is further below it.
        let below_target = match self.goal {
            Goal::MaxEfficiency => self.worse_in_a_row >= 2,
            Goal::PowerTarget { watts } => point.watts < watts,
            Goal::HashrateTarget { terahashes } => point.terahashes < terahashes,
        };
        let next_mv = self.core_mv.saturating_sub(self.config.voltage_step_mv);
        if below_target || next_mv < self.board.min_core_mv || self.points == CURVE_POINTS {
            self.choose();
            return;
        }
        self.core_mv = next_mv;
        // A lower voltage lowers each limit: start two steps under the last one.
        let mut start = self.clocks;
        for clock in start.iter_mut().take(self.chips) {
            *clock = clock.saturating_sub(2 * self.config.clock_step.khz());
        }
        let search = ClockSearch::new(self.chips, &start[..self.chips], &self.config, &self.board);
        self.clocks[..self.chips].copy_from_slice(search.clocks());
        self.phase = Phase::Search(search);
    }

    /// Back to the point the goal picks; for a target, the first trim towards it.
    fn choose(&mut self) {
        let Some((index, chosen)) = pick(&self.curve, self.goal).and_then(|chosen| {
            let index = self.curve.iter().position(|p| *p == Some(chosen))?;
            Some((index, chosen))
        }) else {
            self.phase = Phase::Done(Err(NoOperatingPoint));
            return;
        };
        self.core_mv = chosen.core_mv;
        self.clocks = self.settings[index];
        self.trimmed_or_done(0, chosen);
    }

    /// For a target: (the target, what `point` achieved of it).
    fn target_and_actual(&self, point: &CurvePoint) -> Option<(f32, f32)> {
        match self.goal {
            Goal::MaxEfficiency => None,
            Goal::PowerTarget { watts } => Some((watts, point.watts)),
            Goal::HashrateTarget { terahashes } => Some((terahashes, point.terahashes)),
        }
    }

    /// Trims every clock by the ratio still missing, or finishes: within tolerance, already
    /// below the target with every clock at its limit (the closest there is), or out of tries.
    fn trimmed_or_done(&mut self, tries: u32, achieved: CurvePoint) {
        if let Some((target, actual)) = self.target_and_actual(&achieved) {
            let ratio = target / actual;
            let within = (actual / target - 1.0).abs() <= self.config.target_tolerance;
            if !within && ratio < 1.0 && tries < MAX_TRIMS {
                for clock in self.clocks.iter_mut().take(self.chips) {
                    let khz = (*clock as f32 * ratio) as u32;
                    *clock = self.board.clamp_frequency(Frequency::from_khz(khz)).khz();
                }
                self.phase = Phase::Trim { tries: tries + 1 };
                return;
            }
        }
        self.finish(achieved);
    }

    /// A stored profile measured: erring chips step down and are measured again.
    fn resumed(&mut self, samples: &[ChipSample], watts: f32) {
        let step = self.config.clock_step.khz();
        let min = self.board.min_frequency.khz();
        let mut stepped = false;
        for (clock, sample) in self.clocks.iter_mut().zip(samples) {
            if sample.errors >= 2
                && sample.error_rate() > self.config.error_threshold
                && *clock > min
            {
                *clock = clock.saturating_sub(step).max(min);
                stepped = true;
            }
        }
        if stepped {
            self.phase = Phase::Resume;
            return;
        }
        let achieved = self.point(samples, watts);
        self.curve[0] = Some(achieved);
        self.finish(achieved);
    }

    fn finish(&mut self, achieved: CurvePoint) {
        self.phase = Phase::Done(Ok(Profile {
            core_mv: self.core_mv,
            clocks_khz: self.clocks,
            chips: self.chips,
            achieved,
            curve: self.curve,
            elapsed_s: self.elapsed_s,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::BM1397_HASHBOARD_12;

    const BOARD: BoardDescription = BoardDescription {
        chips_per_chain: 3,
        ..BM1397_HASHBOARD_12
    };

    /// Synthetic silicon: each chip's clock limit rises with voltage, and the three chips differ.
    fn limit_khz(chip: usize, core_mv: u32) -> u32 {
        300_000 + (core_mv - 1100) * 600 + chip as u32 * 20_000
    }

    /// Dynamic power ∝ f·V², plus a fixed part that a slower board pays for fewer hashes: the
    /// efficiency optimum lies inside the board's voltage window.
    fn watts(core_mv: u32, clocks: &[u32]) -> f32 {
        let volts = core_mv as f32 / 1000.0;
        let dynamic: f32 = clocks
            .iter()
            .map(|&khz| khz as f32 / 1000.0 * volts * volts * 0.012)
            .sum();
        dynamic + 30.0
    }

    fn measure(tuner: &Tuner) -> ([ChipSample; 3], f32) {
        let mut samples = [ChipSample::default(); 3];
        for (chip, (sample, &khz)) in samples.iter_mut().zip(tuner.clocks()).enumerate() {
            *sample = if khz > limit_khz(chip, tuner.core_mv()) {
                ChipSample {
                    valid: 90,
                    errors: 10,
                }
            } else {
                ChipSample {
                    valid: 100,
                    errors: 0,
                }
            };
        }
        (samples, watts(tuner.core_mv(), tuner.clocks()))
    }

    fn run(mut tuner: Tuner) -> (Profile, u32) {
        let mut expected_s = 0;
        for _ in 0..10_000 {
            match tuner.step() {
                TuneStep::Measure { seconds } => {
                    expected_s += seconds;
                    let (samples, watts) = measure(&tuner);
                    tuner.observe(&samples, watts);
                }
                TuneStep::Finished => {
                    let profile = tuner.outcome().expect("finished").expect("a point");
                    return (profile.clone(), expected_s);
                }
            }
        }
        panic!("the tuner never finished");
    }

    #[test]
    fn a_sweep_finds_each_chips_limit_and_the_best_voltage() {
        let config = TunerConfig::DEFAULT;
        let tuner = Tuner::sweep(&BOARD, 3, Goal::MaxEfficiency, config);
        assert_eq!(tuner.core_mv(), BOARD.max_core_mv);
        assert_eq!(tuner.clocks(), [425_000; 3]);
        assert_eq!(
            tuner.step(),
            TuneStep::Measure {
                seconds: config.search_window_s
            }
        );
        let (profile, measured_s) = run(tuner);
        assert_eq!(profile.elapsed_s, measured_s);
        // Each chip sits on the last 12.5 MHz step at or under its own limit.
        for (chip, &khz) in profile.clocks().iter().enumerate() {
            let limit = limit_khz(chip, profile.core_mv);
            assert!(khz <= limit, "chip {chip}: {khz} over {limit}");
            assert!(
                khz + 12_500 > limit,
                "chip {chip}: {khz} leaves a step under {limit}"
            );
        }
        // The chosen voltage is the curve's best J/TH, and the curve is ordered by voltage.
        let best = profile
            .points()
            .min_by(|a, b| a.joules_per_th().total_cmp(&b.joules_per_th()))
            .expect("points");
        assert_eq!(profile.core_mv, best.core_mv);
        assert!(profile.points().count() >= 3);
        assert!(
            profile
                .points()
                .zip(profile.points().skip(1))
                .all(|(higher, lower)| higher.core_mv > lower.core_mv)
        );
        assert!(
            profile.core_mv > BOARD.min_core_mv && profile.core_mv < BOARD.max_core_mv,
            "this silicon's optimum is inside the window: {} mV",
            profile.core_mv
        );
    }

    #[test]
    fn a_hashrate_goal_above_reach_stops_at_the_highest_voltage() {
        let (profile, _) = run(Tuner::sweep(
            &BOARD,
            3,
            Goal::HashrateTarget { terahashes: 1e6 },
            TunerConfig::DEFAULT,
        ));
        assert_eq!(profile.core_mv, BOARD.max_core_mv);
        assert_eq!(profile.points().count(), 1, "one voltage is enough");
    }

    #[test]
    fn a_power_target_trims_the_clocks_to_within_tolerance() {
        let full = watts(1300, &[425_000; 3]);
        let target = full * 0.8;
        let (profile, _) = run(Tuner::sweep(
            &BOARD,
            3,
            Goal::PowerTarget { watts: target },
            TunerConfig::DEFAULT,
        ));
        let error = (profile.achieved.watts / target - 1.0).abs();
        assert!(error <= TunerConfig::DEFAULT.target_tolerance, "{error}");
        assert_eq!(
            profile.achieved.watts,
            watts(profile.core_mv, profile.clocks()),
            "the achieved point is the one measured at the profile's settings"
        );
    }

    #[test]
    fn resuming_steps_down_only_the_chips_that_err() {
        let mut clocks_khz = [0; MAX_CHIPS];
        // Chip 1 is set 40 MHz over its limit at 1300 mV; chips 0 and 2 are within theirs.
        clocks_khz[..3].copy_from_slice(&[400_000, limit_khz(1, 1300) + 40_000, 420_000]);
        let stored = StoredProfile {
            model: BOARD.model,
            core_mv: 1300,
            chips: 3,
            clocks_khz,
        };
        let (profile, measured_s) = run(Tuner::resume(&BOARD, &stored, TunerConfig::DEFAULT));
        assert_eq!(profile.core_mv, 1300);
        assert_eq!(profile.clocks()[0], 400_000);
        assert_eq!(profile.clocks()[2], 420_000);
        assert!(profile.clocks()[1] <= limit_khz(1, 1300));
        // Four steps of 12.5 MHz down, then a clean measurement: five windows.
        assert_eq!(measured_s, 5 * TunerConfig::DEFAULT.settle_window_s);
        assert_eq!(profile.points().count(), 1);
    }

    #[test]
    fn observing_after_the_end_changes_nothing() {
        let (profile, _) = run(Tuner::sweep(
            &BOARD,
            3,
            Goal::HashrateTarget { terahashes: 1e6 },
            TunerConfig::DEFAULT,
        ));
        let mut tuner = Tuner::resume(
            &BOARD,
            &StoredProfile::from_tuned(BOARD.model, &profile),
            TunerConfig::DEFAULT,
        );
        let (samples, watts) = measure(&tuner);
        tuner.observe(&samples, watts);
        assert_eq!(tuner.step(), TuneStep::Finished);
        let finished = tuner.outcome().expect("finished").cloned();
        tuner.observe(&[], 0.0);
        assert_eq!(tuner.step(), TuneStep::Finished);
        assert_eq!(tuner.outcome().expect("finished").cloned(), finished);
    }
}
