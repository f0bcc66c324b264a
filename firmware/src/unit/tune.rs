//! A unit's autotuner: `hashboard::tuner::Tuner` stepped from the mining loop, one
//! measurement window at a time, while the chains keep mining real work and the loop keeps
//! obeying commands, serving the APIs and running the thermal guard. A tune lowers the chain's
//! ticket so every chip returns enough nonces to measure its error rate, and restores it after.
//!
//! What a unit should be doing is reconciled against the operator's intent every round: a tune
//! starts when the intent asks for one the chain has not got, and stops when the chain stops
//! (sleep, thermal guard) or the intent moves on. A chain tuned before a restart resumes from its
//! stored profile in minutes instead of sweeping again.

use fleet_proto::command::TuneMode;
use fleet_proto::messages::CurvePoint;
use hashboard::profile::StoredProfile;
use hashboard::tuner::{ChipSample, Goal, Profile, RetunePolicy, RetuneReason, TuneStep, Tuner};
use tracing::{info, warn};

use super::Unit;
use crate::board::{BoardError, Hardware};
use crate::config::TunerSettings;
use crate::persist::TunedChain;
use crate::telemetry::unix_now;

/// Chip seconds after a ticket change before nonces found under the old mask stop passing.
const TICKET_SETTLE_S: f64 = 1.0;
/// How often a tuned chain is checked for drift, in chip seconds, and the nonces a check needs
/// before its error rate means anything (a window with fewer is extended).
const RETUNE_CHECK_S: f64 = 300.0;
const RETUNE_MIN_NONCES: u64 = 200;
/// When a tuned chain counts as drifted. The error bound sits half again above the tuner's own
/// per-chip threshold (3 %): a chain tuned to the edge runs near that rate by design, and a bound
/// below it would retune it every check for nothing.
const RETUNE: RetunePolicy = RetunePolicy {
    max_temp_drift_c: RetunePolicy::DEFAULT.max_temp_drift_c,
    max_error_rate: 0.045,
};

/// A tuned chain's conditions once its profile settled, to notice when they have moved on.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Watch {
    /// The temperature the chips settled at under the profile: read at the first check, since
    /// at the end of a tune they are still cooling from (or heating to) where the tune left them.
    tuned_at_c: Option<f64>,
    since_s: f64,
    nonces: u64,
    errors: u64,
}

/// Whether a tuned chain should be tuned again: its error rate over the window since `watch`
/// (once it holds enough nonces), or its temperature against the one it was tuned at.
fn retune_due(
    policy: &RetunePolicy,
    watch: &Watch,
    now_c: Option<f64>,
    nonces: u64,
    errors: u64,
) -> Option<RetuneReason> {
    let valid = nonces.saturating_sub(watch.nonces);
    let erring = errors.saturating_sub(watch.errors);
    if valid + erring < RETUNE_MIN_NONCES {
        return None;
    }
    let error_rate = erring as f32 / (valid + erring) as f32;
    let (tuned_at_c, now_c) = match (watch.tuned_at_c, now_c) {
        (Some(then), Some(now)) => (then as f32, now as f32),
        // Without a sensor only the errors can tell.
        _ => (0.0, 0.0),
    };
    policy.check(tuned_at_c, now_c, error_rate)
}

/// One chain's tune in progress.
#[derive(Debug)]
struct Session {
    tuner: Box<Tuner>,
    mode: TuneMode,
    /// The curve a resumed tune keeps (the sweep's, from before the restart).
    kept_curve: Option<Vec<CurvePoint>>,
    /// When the current measurement ends, in the unit's chip seconds.
    window_end_s: f64,
    /// Each chip's (valid, erring) counts when the window began.
    baseline: Vec<(u32, u32)>,
    mining_ticket: f64,
}

/// A unit's tuning: the tune in progress, and the last one finished.
#[derive(Debug, Default)]
pub struct Autotune {
    session: Option<Session>,
    /// The chain's last finished tune (this run's, or the stored one from before a restart).
    pub tuned: Option<TunedChain>,
    /// Whether the chips run `tuned`'s settings now.
    applied: bool,
    /// A tune that failed or that the thermal guard cut short is not retried by itself (it
    /// would only fail again); a new `set_mode` clears this.
    gave_up: Option<TuneMode>,
    /// While `tuned` runs: what it is checked against for drift.
    watch: Option<Watch>,
}

/// What a chain's tuning should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TuneAction {
    /// Nothing: the tune in progress goes on, or none is wanted or possible.
    Keep,
    /// Start tuning for this mode.
    Start(TuneMode),
    /// End the tune in progress without a profile, for `reason`; with `give_up`, the mode is not
    /// tried again by itself (the thermal guard cut it short, so it would only be cut again).
    Stop {
        reason: &'static str,
        give_up: Option<TuneMode>,
    },
}

/// What a round of tuning came to.
#[derive(Debug, Clone, PartialEq)]
pub enum TuneEvent {
    /// A chain started measuring (the machine's mode is `tuning` now).
    Started,
    /// A chain finished: its profile is running and should be stored.
    Finished(TunedChain),
    /// A tune stopped without a profile; the chain mines on at its last settings.
    Stopped(String),
}

impl Autotune {
    pub fn restored(tuned: Option<TunedChain>) -> Self {
        Self {
            tuned,
            ..Self::default()
        }
    }

    pub fn tuning(&self) -> bool {
        self.session.is_some()
    }

    /// A `set_mode` was obeyed: a tune that gave up may be tried again (one that is running or
    /// running its result goes on as it is).
    pub fn retry(&mut self) {
        self.gave_up = None;
    }

    /// The operator no longer wants a tune: whatever was set instead, the chips no longer run
    /// the tuned settings, and nothing is held against a later one.
    fn let_go(&mut self) {
        self.applied = false;
        self.gave_up = None;
        self.watch = None;
    }

    /// What the tuning should do, given the mode the operator wants, whether the chain can run
    /// a tune now (awake, up, not hot, the thermal guard not holding the clocks) and whether the
    /// guard is idle.
    pub fn next(&self, want: Option<TuneMode>, can_run: bool, guard_idle: bool) -> TuneAction {
        match (want, self.session.as_ref().map(|s| s.mode)) {
            (Some(want), Some(running)) if want == running && can_run => TuneAction::Keep,
            (want, Some(running)) => TuneAction::Stop {
                reason: if want != Some(running) {
                    "the operator chose another mode"
                } else if guard_idle {
                    "the chain stopped"
                } else {
                    "the thermal guard took over the clocks"
                },
                give_up: (!guard_idle).then_some(running),
            },
            (Some(want), None)
                if can_run
                    && self.gave_up != Some(want)
                    && !(self.applied && self.tuned.as_ref().is_some_and(|t| t.mode == want)) =>
            {
                TuneAction::Start(want)
            }
            _ => TuneAction::Keep,
        }
    }
}

fn goal(mode: TuneMode) -> Option<Goal> {
    match mode {
        TuneMode::Efficiency => Some(Goal::MaxEfficiency),
        // The most hash rate the silicon gives at the board's highest voltage.
        TuneMode::Hashrate => Some(Goal::HashrateTarget {
            terahashes: f32::INFINITY,
        }),
        // Power mode is the limiter's, not the tuner's.
        TuneMode::Power => None,
    }
}

fn curve_points(profile: &Profile) -> Vec<CurvePoint> {
    profile
        .points()
        .map(|p| CurvePoint {
            core_mv: p.core_mv,
            hashrate_ths: f64::from(p.terahashes),
            power_w: f64::from(p.watts),
        })
        .collect()
}

impl<H: Hardware> Unit<H> {
    /// Brings the chain's tuning in line with the intent's `want`. `may_run` is false while the
    /// machine is meant to be asleep.
    pub async fn reconcile_tune(
        &mut self,
        want: Option<TuneMode>,
        may_run: bool,
        settings: &TunerSettings,
    ) -> Option<TuneEvent> {
        let guard_idle = self.cooling.guard_idle();
        let can_run = may_run
            && self.failed.is_none()
            && !self.hw.asleep()
            && !self.cooling.overheated()
            && guard_idle;
        if want.is_none() {
            self.autotune.let_go();
        }
        match self.autotune.next(want, can_run, guard_idle) {
            TuneAction::Keep => None,
            TuneAction::Stop { reason, give_up } => {
                if give_up.is_some() {
                    self.autotune.gave_up = give_up;
                }
                Some(self.stop_tune(reason).await)
            }
            TuneAction::Start(mode) => match self.start_tune(mode, settings).await {
                Ok(()) => Some(TuneEvent::Started),
                Err(reason) => {
                    self.autotune.gave_up = Some(mode);
                    Some(self.stop_tune(&reason).await)
                }
            },
        }
    }

    async fn start_tune(&mut self, mode: TuneMode, settings: &TunerSettings) -> Result<(), String> {
        let goal = goal(mode).ok_or("power mode is held by the power limiter, not the tuner")?;
        if self.hw.power_w().is_none() {
            return Err("tuning needs the board's power reading, and this board has none".into());
        }
        let board = self.hw.description();
        let chips = self.hw.clocks().len();
        let stored = self.autotune.tuned.as_ref().and_then(|t| {
            let profile = stored_profile(board, t)?;
            (t.mode == mode).then_some((profile, t.curve.clone()))
        });
        let config = settings.config();
        let (tuner, kept_curve) = match stored {
            Some((profile, curve)) => (Tuner::resume(board, &profile, config), Some(curve)),
            None => (Tuner::sweep(board, chips, goal, config), None),
        };
        info!(
            chain = self.index,
            ?mode,
            from_stored = kept_curve.is_some(),
            ticket = settings.ticket_difficulty,
            "tuning"
        );
        let mining_ticket = self.mining.ticket;
        self.cooling.set_power_target(None);
        self.autotune.session = Some(Session {
            tuner: Box::new(tuner),
            mode,
            kept_curve,
            window_end_s: f64::INFINITY,
            baseline: Vec::new(),
            mining_ticket,
        });
        self.set_ticket(settings.ticket_difficulty)
            .await
            .map_err(|e| e.to_string())?;
        self.begin_window().await.map_err(|e| e.to_string())
    }

    async fn set_ticket(&mut self, ticket: f64) -> Result<(), BoardError> {
        let ticket = self.hw.set_ticket(ticket).await?;
        let settles_at_s = self.chip_s() + TICKET_SETTLE_S;
        self.mining.set_ticket(ticket, settles_at_s);
        Ok(())
    }

    /// Applies the tuner's settings for its next measurement and starts the window.
    async fn begin_window(&mut self) -> Result<(), BoardError> {
        let Some(session) = &self.autotune.session else {
            return Ok(());
        };
        let TuneStep::Measure { seconds } = session.tuner.step() else {
            return Ok(());
        };
        let core_mv = session.tuner.core_mv();
        let clocks = session.tuner.clocks().to_vec();
        self.set_operating_point(core_mv, &clocks).await?;
        let baseline = self.mining.chip_counts(clocks.len() as u32);
        let window_end_s = self.chip_s() + f64::from(seconds);
        if let Some(session) = &mut self.autotune.session {
            session.baseline = baseline;
            session.window_end_s = window_end_s;
        }
        Ok(())
    }

    /// One round: when the current window has run its course, hand the tuner the measurement
    /// and start the next window, or finish.
    pub async fn tune_round(&mut self, settings: &TunerSettings) -> Option<TuneEvent> {
        // A chain left out after an I/O failure is not touched again.
        if self.failed.is_some() {
            return None;
        }
        let chip_s = self.chip_s();
        self.mining.settle_ticket_if_due(chip_s);
        if self.autotune.session.is_none() {
            return self.check_drift(chip_s, settings).await;
        }
        let session = self.autotune.session.as_mut()?;
        if chip_s < session.window_end_s {
            return None;
        }
        let counts = self.mining.chip_counts(session.baseline.len() as u32);
        let samples: Vec<ChipSample> = counts
            .iter()
            .zip(&session.baseline)
            .map(|(&(valid, errors), &(valid0, errors0))| ChipSample {
                valid: valid.saturating_sub(valid0),
                errors: errors.saturating_sub(errors0),
            })
            .collect();
        let Some(watts) = self.hw.power_w() else {
            return Some(self.stop_tune("the board's power reading is gone").await);
        };
        session.tuner.observe(&samples, watts as f32);
        match session.tuner.step() {
            TuneStep::Measure { .. } => match self.begin_window().await {
                Ok(()) => None,
                Err(e) => Some(self.stop_tune(&format!("board I/O failed: {e}")).await),
            },
            TuneStep::Finished => match session.tuner.outcome() {
                Some(Ok(profile)) => {
                    let profile = profile.clone();
                    Some(self.finish_tune(&profile).await)
                }
                Some(Err(e)) => {
                    self.autotune.gave_up = Some(session.mode);
                    Some(self.stop_tune(&e.to_string()).await)
                }
                None => None,
            },
        }
    }

    async fn finish_tune(&mut self, profile: &Profile) -> TuneEvent {
        let Some(session) = self.autotune.session.as_ref() else {
            return TuneEvent::Stopped("no tune was running".into());
        };
        let mode = session.mode;
        let curve = session
            .kept_curve
            .clone()
            .unwrap_or_else(|| curve_points(profile));
        let elapsed_s = session.tuner.elapsed_s();
        if let Err(e) = self
            .set_operating_point(profile.core_mv, profile.clocks())
            .await
        {
            return self
                .stop_tune(&format!("could not apply the tuned profile: {e}"))
                .await;
        }
        self.restore_ticket().await;
        self.autotune.session = None;
        let tuned = TunedChain {
            chain: self.index,
            mode,
            chip: self.hw.description().model.name().to_string(),
            core_mv: profile.core_mv,
            clocks_khz: profile.clocks().to_vec(),
            curve,
            at: unix_now(),
        };
        info!(
            chain = self.index,
            ?mode,
            core_mv = profile.core_mv,
            ths = profile.achieved.terahashes,
            watts = profile.achieved.watts,
            j_per_th = profile.achieved.joules_per_th(),
            measured_s = elapsed_s,
            "tuned"
        );
        self.autotune.tuned = Some(tuned.clone());
        self.autotune.applied = true;
        self.autotune.watch = Some(self.watch_from_now());
        TuneEvent::Finished(tuned)
    }

    fn watch_from_now(&mut self) -> Watch {
        Watch {
            tuned_at_c: None,
            since_s: self.chip_s(),
            nonces: self.mining.tally.nonces,
            errors: self.mining.tally.hardware_errors,
        }
    }

    /// A tuned chain whose errors crept back or whose temperature moved on is tuned again, from
    /// its own profile: erring chips step down in a few windows.
    async fn check_drift(&mut self, chip_s: f64, settings: &TunerSettings) -> Option<TuneEvent> {
        let watch = self.autotune.watch?;
        if chip_s - watch.since_s < RETUNE_CHECK_S || self.hw.asleep() {
            return None;
        }
        let now_c = self.hw.board_temp_c();
        let tally = &self.mining.tally;
        let due = retune_due(&RETUNE, &watch, now_c, tally.nonces, tally.hardware_errors);
        let enough =
            tally.nonces + tally.hardware_errors - watch.nonces - watch.errors >= RETUNE_MIN_NONCES;
        if enough && due.is_none() {
            // A fresh window, against the settled temperature (the first check reads it).
            self.autotune.watch = Some(Watch {
                tuned_at_c: watch.tuned_at_c.or(now_c),
                ..self.watch_from_now()
            });
        }
        let reason = due?;
        let mode = self.autotune.tuned.as_ref()?.mode;
        warn!(
            chain = self.index,
            ?reason,
            "the tuned profile has drifted: tuning again"
        );
        self.autotune.watch = None;
        match self.start_tune(mode, settings).await {
            Ok(()) => Some(TuneEvent::Started),
            Err(reason) => {
                self.autotune.gave_up = Some(mode);
                Some(self.stop_tune(&reason).await)
            }
        }
    }

    /// Ends a tune without a profile: the chain keeps its current clocks and mines on at its
    /// usual ticket.
    async fn stop_tune(&mut self, reason: &str) -> TuneEvent {
        warn!(chain = self.index, reason, "tuning stopped");
        self.restore_ticket().await;
        self.autotune.session = None;
        TuneEvent::Stopped(reason.to_string())
    }

    async fn restore_ticket(&mut self) {
        let Some(mining_ticket) = self.autotune.session.as_ref().map(|s| s.mining_ticket) else {
            return;
        };
        if let Err(e) = self.set_ticket(mining_ticket).await {
            warn!(chain = self.index, error = %e, "could not restore the mining ticket");
        }
    }
}

/// A stored tune as the hashboard crate's profile, if it fits this board.
fn stored_profile(
    board: &hashboard::board::BoardDescription,
    tuned: &TunedChain,
) -> Option<StoredProfile> {
    if tuned.chip != board.model.name() {
        return None;
    }
    let mut clocks_khz = [0u32; hashboard::mining::MAX_CHIPS];
    if tuned.clocks_khz.len() > clocks_khz.len() {
        return None;
    }
    clocks_khz[..tuned.clocks_khz.len()].copy_from_slice(&tuned.clocks_khz);
    let profile = StoredProfile {
        model: board.model,
        core_mv: tuned.core_mv,
        chips: tuned.clocks_khz.len(),
        clocks_khz,
    };
    profile.check_for(board).ok().map(|()| profile)
}

/// The machine's curve: at each voltage every tuned chain measured, their points summed.
pub fn machine_curve<'a>(chains: impl Iterator<Item = &'a TunedChain>) -> Vec<CurvePoint> {
    let chains: Vec<&TunedChain> = chains.collect();
    let Some(first) = chains.first() else {
        return Vec::new();
    };
    first
        .curve
        .iter()
        .filter_map(|point| {
            chains.iter().try_fold(
                CurvePoint {
                    core_mv: point.core_mv,
                    hashrate_ths: 0.0,
                    power_w: 0.0,
                },
                |sum, chain| {
                    let same = chain.curve.iter().find(|p| p.core_mv == point.core_mv)?;
                    Some(CurvePoint {
                        hashrate_ths: sum.hashrate_ths + same.hashrate_ths,
                        power_w: sum.power_w + same.power_w,
                        ..sum
                    })
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hashboard::board::BM1397_HASHBOARD_12 as BOARD;

    fn point(core_mv: u32, hashrate_ths: f64, power_w: f64) -> CurvePoint {
        CurvePoint {
            core_mv,
            hashrate_ths,
            power_w,
        }
    }

    fn chain(chain: u32, curve: Vec<CurvePoint>) -> TunedChain {
        TunedChain {
            chain,
            mode: TuneMode::Efficiency,
            chip: "bm1397".into(),
            core_mv: 1300,
            clocks_khz: vec![400_000; BOARD.chips_per_chain as usize],
            curve,
            at: 0,
        }
    }

    #[test]
    fn the_machine_curve_sums_the_voltages_every_chain_measured() {
        let a = chain(
            0,
            vec![
                point(1400, 1.0, 40.0),
                point(1350, 0.9, 34.0),
                point(1300, 0.8, 29.0),
            ],
        );
        // Chain 1 stopped one voltage earlier: 1300 mV is not the machine's.
        let b = chain(1, vec![point(1400, 1.1, 42.0), point(1350, 0.95, 35.0)]);
        let curve = machine_curve([&a, &b].into_iter());
        assert_eq!(curve, vec![point(1400, 2.1, 82.0), point(1350, 1.85, 69.0)]);
        assert!(machine_curve(std::iter::empty()).is_empty());
    }

    #[test]
    fn drift_needs_enough_nonces_and_a_settled_temperature() {
        let policy = RetunePolicy::DEFAULT;
        let watch = Watch {
            tuned_at_c: None,
            since_s: 0.0,
            nonces: 1_000,
            errors: 10,
        };
        // 5 % errors, but over too few nonces to mean anything yet.
        assert_eq!(retune_due(&policy, &watch, Some(60.0), 1_095, 15), None);
        // The same share over enough nonces.
        assert_eq!(
            retune_due(&policy, &watch, Some(60.0), 1_380, 30),
            Some(RetuneReason::Errors { rate: 0.05 })
        );
        // No settled temperature yet: only errors count, however hot.
        assert_eq!(retune_due(&policy, &watch, Some(95.0), 1_400, 10), None);
        let settled = Watch {
            tuned_at_c: Some(55.0),
            ..watch
        };
        assert!(matches!(
            retune_due(&policy, &settled, Some(70.0), 1_400, 10),
            Some(RetuneReason::TemperatureDrift { .. })
        ));
        assert_eq!(retune_due(&policy, &settled, Some(58.0), 1_400, 10), None);
        assert_eq!(retune_due(&policy, &settled, None, 1_400, 10), None);
    }

    fn running(mode: TuneMode) -> Autotune {
        Autotune {
            session: Some(Session {
                tuner: Box::new(Tuner::sweep(
                    &BOARD,
                    BOARD.chips_per_chain as usize,
                    Goal::MaxEfficiency,
                    hashboard::tuner::TunerConfig::DEFAULT,
                )),
                mode,
                kept_curve: None,
                window_end_s: 0.0,
                baseline: Vec::new(),
                mining_ticket: 256.0,
            }),
            ..Autotune::default()
        }
    }

    #[test]
    fn a_tune_starts_when_wanted_and_possible_and_stops_with_a_reason() {
        use TuneAction::*;
        use TuneMode::{Efficiency, Hashrate};
        let idle = Autotune::default();
        assert_eq!(idle.next(Some(Efficiency), true, true), Start(Efficiency));
        assert_eq!(
            idle.next(Some(Efficiency), false, true),
            Keep,
            "asleep or hot"
        );
        assert_eq!(idle.next(None, true, true), Keep);

        let tuning = running(Efficiency);
        assert_eq!(tuning.next(Some(Efficiency), true, true), Keep);
        let stop = |reason, give_up| Stop { reason, give_up };
        assert_eq!(
            tuning.next(Some(Hashrate), true, true),
            stop("the operator chose another mode", None)
        );
        assert_eq!(
            tuning.next(Some(Efficiency), false, true),
            stop("the chain stopped", None)
        );
        // Cut short by the guard: not tried again by itself.
        assert_eq!(
            tuning.next(Some(Efficiency), false, false),
            stop("the thermal guard took over the clocks", Some(Efficiency))
        );

        let gave_up = Autotune {
            gave_up: Some(Efficiency),
            ..Autotune::default()
        };
        assert_eq!(gave_up.next(Some(Efficiency), true, true), Keep);
        assert_eq!(gave_up.next(Some(Hashrate), true, true), Start(Hashrate));

        // Already running the profile of the mode asked for: nothing to do.
        let applied = Autotune {
            tuned: Some(chain(0, Vec::new())),
            applied: true,
            ..Autotune::default()
        };
        assert_eq!(applied.next(Some(Efficiency), true, true), Keep);
        assert_eq!(applied.next(Some(Hashrate), true, true), Start(Hashrate));
    }

    #[test]
    fn a_stored_tune_is_used_only_on_a_board_it_fits() {
        let good = chain(0, Vec::new());
        let profile = stored_profile(&BOARD, &good).expect("fits");
        assert_eq!(profile.clocks(), good.clocks_khz.as_slice());
        assert_eq!(profile.core_mv, 1300);
        let other_chip = TunedChain {
            chip: "bm1366".into(),
            ..good.clone()
        };
        let fewer_chips = TunedChain {
            clocks_khz: vec![400_000; 3],
            ..good.clone()
        };
        let out_of_range = TunedChain {
            clocks_khz: vec![2_000_000; BOARD.chips_per_chain as usize],
            ..good.clone()
        };
        let too_many = TunedChain {
            clocks_khz: vec![400_000; 1000],
            ..good
        };
        for bad in [other_chip, fewer_chips, out_of_range, too_many] {
            assert_eq!(stored_profile(&BOARD, &bad), None, "{bad:?}");
        }
    }
}
