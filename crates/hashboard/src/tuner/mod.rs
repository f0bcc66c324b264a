//! The autotuner: per-chip clocks and the chain's core voltage, for the lowest J/TH, a power
//! target, or a hash-rate target.
//!
//! The whole method is a pure state machine, [`Tuner`]: it says what to run and for how long,
//! and takes the measurement back. [`tune`] and [`resume`] drive it over a [`TuneRig`] (a board
//! task that can block for the tune's half hour); a daemon that must keep serving commands and
//! its thermal guard meanwhile steps the machine from its own loop instead. The method:
//!
//! 1. At a core voltage, raise each chip's clock in steps while its hardware-error rate stays under
//!    a threshold; the first step over it sends that chip back one step for good (each chip finds
//!    its own silicon limit).
//! 2. Measure the settled point — hash rate from the clocks less the error share, power from the
//!    regulator — and add it to the efficiency curve.
//! 3. Step the voltage down and repeat, starting each chip a little below its last limit, until
//!    efficiency stops improving or the board's minimum voltage is reached.
//! 4. Pick the point for the goal; for a power or hash-rate target, trim all clocks by the ratio
//!    until the measurement is within tolerance.

use bm13xx::{ChipModel, Frequency};

use crate::board::BoardDescription;
use crate::mining::MAX_CHIPS;

mod drive;
mod machine;

pub use drive::{resume, tune};
pub use machine::{CURVE_POINTS, TuneStep, Tuner};

/// What the tuner aims for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// The lowest J/TH the board can reach within its limits.
    MaxEfficiency,
    /// As much hash rate as fits in this many watts.
    PowerTarget { watts: f32 },
    /// This hash rate for as little power as possible.
    HashrateTarget { terahashes: f32 },
}

/// Nonces one chip returned during a measurement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChipSample {
    pub valid: u32,
    pub errors: u32,
}

impl ChipSample {
    pub fn error_rate(&self) -> f32 {
        let total = self.valid + self.errors;
        if total == 0 {
            0.0
        } else {
            self.errors as f32 / total as f32
        }
    }
}

/// What the board must do for the tuner. Implemented by the firmware's board task and by tests.
// One board task drives one tuner; see `uart::SetBaud` for why the futures are not `Send`-bound.
#[allow(async_fn_in_trait)]
pub trait TuneRig {
    type Error: core::fmt::Debug;
    /// Per-chip core voltage (the rig multiplies by the board's series domains).
    async fn set_core_mv(&mut self, millivolts: u32) -> Result<(), Self::Error>;
    async fn set_clock(&mut self, chip: u32, frequency: Frequency) -> Result<(), Self::Error>;
    /// Mines for `seconds`, fills one sample per chip, and returns the board's power in watts.
    async fn measure(
        &mut self,
        seconds: u32,
        samples: &mut [ChipSample],
    ) -> Result<f32, Self::Error>;
}

/// Knobs of the method.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TunerConfig {
    /// A chip whose error share exceeds this is past its limit.
    pub error_threshold: f32,
    /// Clock step while searching.
    pub clock_step: Frequency,
    /// Voltage step of the sweep, per chip.
    pub voltage_step_mv: u32,
    /// Seconds per measurement while searching, and for the settled point.
    pub search_window_s: u32,
    pub settle_window_s: u32,
    /// Power / hash-rate targets are met within this fraction.
    pub target_tolerance: f32,
}

impl TunerConfig {
    pub const DEFAULT: Self = Self {
        error_threshold: 0.03,
        clock_step: Frequency::from_khz(12_500),
        voltage_step_mv: 25,
        search_window_s: 30,
        settle_window_s: 60,
        target_tolerance: 0.02,
    };
}

/// One settled operating point: the efficiency curve the host's economics use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    pub core_mv: u32,
    pub terahashes: f32,
    pub watts: f32,
}

impl CurvePoint {
    pub fn joules_per_th(&self) -> f32 {
        if self.terahashes > 0.0 {
            self.watts / self.terahashes
        } else {
            f32::INFINITY
        }
    }
}

/// Expected hash rate of clocks, less the share of nonces that were errors.
pub fn efficiency(
    model: ChipModel,
    clocks_khz: &[u32],
    samples: &[ChipSample],
    watts: f32,
) -> (f32, f32) {
    let small_cores = model.hashing_small_cores() as f32;
    let terahashes: f32 = clocks_khz
        .iter()
        .zip(samples)
        .map(|(&khz, sample)| khz as f32 * 1e3 * small_cores * (1.0 - sample.error_rate()) / 1e12)
        .sum();
    (
        terahashes,
        if terahashes > 0.0 {
            watts / terahashes
        } else {
            f32::INFINITY
        },
    )
}

/// Where one chip's clock search stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChipSearch {
    Raising,
    Settled,
}

/// Per-chip clock search at one voltage: pure, one decision per measurement.
#[derive(Debug, Clone)]
pub struct ClockSearch {
    clocks_khz: [u32; MAX_CHIPS],
    state: [ChipSearch; MAX_CHIPS],
    chips: usize,
    step_khz: u32,
    max_khz: u32,
    threshold: f32,
}

impl ClockSearch {
    pub fn new(
        chips: usize,
        start: &[u32],
        config: &TunerConfig,
        board: &BoardDescription,
    ) -> Self {
        let chips = chips.min(MAX_CHIPS);
        let mut clocks_khz = [0u32; MAX_CHIPS];
        for (slot, &khz) in clocks_khz.iter_mut().zip(start).take(chips) {
            *slot = board.clamp_frequency(Frequency::from_khz(khz)).khz();
        }
        Self {
            clocks_khz,
            state: [ChipSearch::Raising; MAX_CHIPS],
            chips,
            step_khz: config.clock_step.khz(),
            max_khz: board.max_frequency.khz(),
            threshold: config.error_threshold,
        }
    }

    pub fn clocks(&self) -> &[u32] {
        &self.clocks_khz[..self.chips]
    }

    pub fn done(&self) -> bool {
        self.state[..self.chips]
            .iter()
            .all(|s| *s == ChipSearch::Settled)
    }

    /// Takes a measurement of the current clocks: chips over the threshold step back once and
    /// settle; chips under it step up (or settle at the board's maximum).
    pub fn observe(&mut self, samples: &[ChipSample]) {
        for i in 0..self.chips {
            if self.state[i] == ChipSearch::Settled {
                continue;
            }
            let sample = samples.get(i).copied().unwrap_or_default();
            // Two errors at least: one stray error is the silicon's base rate, not a limit.
            if sample.errors >= 2 && sample.error_rate() > self.threshold {
                self.clocks_khz[i] = self.clocks_khz[i].saturating_sub(self.step_khz);
                self.state[i] = ChipSearch::Settled;
            } else if self.clocks_khz[i] + self.step_khz > self.max_khz {
                self.state[i] = ChipSearch::Settled;
            } else {
                self.clocks_khz[i] += self.step_khz;
            }
        }
    }
}

/// The tuner's result: what to run, and the curve it measured on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub core_mv: u32,
    pub clocks_khz: [u32; MAX_CHIPS],
    pub chips: usize,
    pub achieved: CurvePoint,
    pub curve: [Option<CurvePoint>; CURVE_POINTS],
    /// Simulated or wall seconds the tuning took.
    pub elapsed_s: u32,
}

impl Profile {
    pub fn clocks(&self) -> &[u32] {
        &self.clocks_khz[..self.chips.min(MAX_CHIPS)]
    }

    /// The points measured, in the order the sweep visited them (highest voltage first).
    pub fn points(&self) -> impl Iterator<Item = CurvePoint> + '_ {
        self.curve.iter().flatten().copied()
    }
}

/// Why tuning failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TuneError<E: core::fmt::Debug> {
    #[error("board I/O failed while tuning: {0:?}")]
    Rig(E),
    #[error("no operating point fits the goal")]
    Unreachable,
}

impl<E: core::fmt::Debug> From<NoOperatingPoint> for TuneError<E> {
    fn from(_: NoOperatingPoint) -> Self {
        TuneError::Unreachable
    }
}

/// The sweep measured no point that could serve the goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no operating point fits the goal")]
pub struct NoOperatingPoint;

/// The curve point to start from for a goal: the lowest J/TH; for a target, the cheapest point
/// at or above it, whose clocks are then trimmed down to it (clocks are at their limits, so they
/// may only go down). A target above every point gives the point closest to it.
pub fn pick(curve: &[Option<CurvePoint>], goal: Goal) -> Option<CurvePoint> {
    let points = || curve.iter().flatten().copied();
    let by_watts = |a: &CurvePoint, b: &CurvePoint| a.watts.total_cmp(&b.watts);
    match goal {
        Goal::MaxEfficiency => {
            points().min_by(|a, b| a.joules_per_th().total_cmp(&b.joules_per_th()))
        }
        Goal::PowerTarget { watts } => points()
            .filter(|p| p.watts >= watts)
            .min_by(by_watts)
            .or_else(|| points().max_by(by_watts)),
        Goal::HashrateTarget { terahashes } => points()
            .filter(|p| p.terahashes >= terahashes)
            .min_by(by_watts)
            .or_else(|| points().max_by(|a, b| a.terahashes.total_cmp(&b.terahashes))),
    }
}

/// Why the tuner should run again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetuneReason {
    /// The chips run this far from the temperature they were tuned at (stable clocks fall as
    /// silicon heats; a cooler board has headroom left unused).
    TemperatureDrift { tuned_at_c: f32, now_c: f32 },
    /// Errors have crept back above the threshold.
    Errors { rate: f32 },
}

/// When a tuned board should be tuned again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetunePolicy {
    pub max_temp_drift_c: f32,
    pub max_error_rate: f32,
}

impl RetunePolicy {
    pub const DEFAULT: Self = Self {
        max_temp_drift_c: 10.0,
        max_error_rate: 0.02,
    };

    pub fn check(&self, tuned_at_c: f32, now_c: f32, error_rate: f32) -> Option<RetuneReason> {
        if (now_c - tuned_at_c).abs() > self.max_temp_drift_c {
            Some(RetuneReason::TemperatureDrift { tuned_at_c, now_c })
        } else if error_rate > self.max_error_rate {
            Some(RetuneReason::Errors { rate: error_rate })
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::BM1397_HASHBOARD_12;

    #[test]
    fn clock_search_raises_until_errors_then_steps_back() {
        let config = TunerConfig::DEFAULT;
        let mut search = ClockSearch::new(2, &[425_000, 425_000], &config, &BM1397_HASHBOARD_12);
        let clean = ChipSample {
            valid: 100,
            errors: 0,
        };
        let erring = ChipSample {
            valid: 60,
            errors: 40,
        };
        search.observe(&[clean, clean]);
        assert_eq!(search.clocks(), [437_500, 437_500]);
        search.observe(&[erring, clean]);
        assert_eq!(search.clocks(), [425_000, 450_000]);
        assert!(!search.done());
        // One stray error is not a limit.
        search.observe(&[
            erring,
            ChipSample {
                valid: 99,
                errors: 1,
            },
        ]);
        assert_eq!(search.clocks(), [425_000, 462_500]);
        for _ in 0..20 {
            search.observe(&[clean, clean]);
        }
        assert!(search.done(), "the board's maximum ends the search");
        assert_eq!(search.clocks()[1], 650_000);
    }

    #[test]
    fn picking_points_for_each_goal() {
        let curve = [
            Some(CurvePoint {
                core_mv: 1500,
                terahashes: 4.0,
                watts: 200.0,
            }),
            Some(CurvePoint {
                core_mv: 1400,
                terahashes: 3.5,
                watts: 150.0,
            }),
            Some(CurvePoint {
                core_mv: 1300,
                terahashes: 3.0,
                watts: 115.0,
            }),
            None,
        ];
        assert_eq!(
            pick(&curve, Goal::MaxEfficiency).map(|p| p.core_mv),
            Some(1300)
        );
        assert_eq!(
            pick(&curve, Goal::PowerTarget { watts: 140.0 }).map(|p| p.core_mv),
            Some(1400)
        );
        assert_eq!(
            pick(&curve, Goal::HashrateTarget { terahashes: 3.2 }).map(|p| p.core_mv),
            Some(1400)
        );
        assert_eq!(
            pick(&curve, Goal::HashrateTarget { terahashes: 9.0 }).map(|p| p.core_mv),
            Some(1500)
        );
        assert_eq!(pick(&[None], Goal::MaxEfficiency), None);
    }

    #[test]
    fn retune_when_temperature_drifts_or_errors_return() {
        let policy = RetunePolicy::DEFAULT;
        assert_eq!(policy.check(55.0, 60.0, 0.001), None);
        assert_eq!(
            policy.check(55.0, 70.0, 0.0),
            Some(RetuneReason::TemperatureDrift {
                tuned_at_c: 55.0,
                now_c: 70.0
            })
        );
        assert_eq!(policy.check(55.0, 40.0, 0.0).map(|_| ()), Some(()));
        assert_eq!(
            policy.check(55.0, 56.0, 0.05),
            Some(RetuneReason::Errors { rate: 0.05 })
        );
    }

    #[test]
    fn efficiency_counts_errors_against_hash_rate() {
        let samples = [
            ChipSample {
                valid: 90,
                errors: 10,
            },
            ChipSample {
                valid: 100,
                errors: 0,
            },
        ];
        let (th, jth) = efficiency(ChipModel::Bm1397, &[500_000, 500_000], &samples, 30.0);
        let per_chip = 500e6 * 672.0 / 1e12;
        assert!((th - per_chip as f32 * 1.9).abs() < 1e-4);
        assert!((jth - 30.0 / th).abs() < 1e-4);
    }
}
