//! What a verified command does to the machine, decided without touching it: the operator's
//! intent (durable), the board change that brings the machine to it, and the host-silence
//! failsafe. The daemon applies the change; everything here is pure and tested on its own.

use std::time::Duration;

use bm13xx::Frequency;
use fleet_proto::Action;
use fleet_proto::command::TuneMode;
use hashboard::board::BoardDescription;
use serde::{Deserialize, Serialize};

/// Why a machine sleeps. Both survive a reboot; only a `wake` command ends either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SleepCause {
    Command,
    /// The host went silent and the site's failsafe says sleep.
    Failsafe,
}

/// What the operator asked for, kept across reboots. `None` fields mean the configuration's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    pub sleeping: Option<SleepCause>,
    pub frequency_mhz: Option<f64>,
    pub core_mv: Option<u32>,
    /// Hold the board's power here by its clock (the power limiter), W.
    #[serde(default)]
    pub power_target_w: Option<f64>,
    /// Run the tuner's clocks and voltage for this (efficiency or hash rate).
    #[serde(default)]
    pub tune: Option<TuneMode>,
}

/// What has to happen on the board.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// Already so: acknowledged as applied, nothing touched.
    Nothing,
    Sleep,
    /// Wake at the intent's clock and voltage.
    Wake,
    Frequency(Frequency),
    CoreVoltage(u32),
    /// Hand the clock to the power limiter (`None`: back to the fixed clock).
    PowerTarget(Option<f64>),
    /// Tune for this; the daemon's loop runs the tuner from here on.
    Tune(TuneMode),
    /// Power-cycle and bring the chains up again.
    Reboot,
    Identify,
}

/// The outcome of deciding a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Make `change`, then the machine is at `intent`; `note` goes into the `applied` ack.
    Apply {
        intent: Intent,
        change: Change,
        note: Option<String>,
    },
    /// The command cannot be obeyed here; the reason goes into the `failed` ack.
    Fail(String),
}

/// The machine's settings as they stand, for telling a no-op from a change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Current {
    pub frequency: Frequency,
    pub core_mv: u32,
}

/// Decides what `action` means for a machine at `intent`, currently running at `current`.
pub fn decide(
    intent: Intent,
    current: Current,
    action: &Action,
    board: &BoardDescription,
) -> Decision {
    let asleep = intent.sleeping.is_some();
    let apply = |intent, change, note: Option<&str>| Decision::Apply {
        intent,
        change,
        note: note.map(str::to_string),
    };
    match *action {
        Action::Sleep if asleep => apply(intent, Change::Nothing, Some("already asleep")),
        Action::Sleep => apply(
            Intent {
                sleeping: Some(SleepCause::Command),
                ..intent
            },
            Change::Sleep,
            None,
        ),
        Action::Wake if !asleep => apply(intent, Change::Nothing, Some("already mining")),
        Action::Wake => apply(
            Intent {
                sleeping: None,
                ..intent
            },
            Change::Wake,
            None,
        ),
        Action::SetFrequency { mhz } => {
            if !(mhz.is_finite() && mhz > 0.0) {
                return Decision::Fail(format!("{mhz} MHz is not a clock frequency"));
            }
            let wanted = Frequency::from_khz((mhz * 1000.0).round() as u32);
            let clamped = board.clamp_frequency(wanted);
            let note = clamp_note(wanted.mhz(), clamped.mhz(), "MHz");
            // An explicit clock is the operator taking over from the power limiter or the tuner
            // (whose voltage stays, as it is what the chips run at now).
            let took_over = intent.power_target_w.is_some() || intent.tune.is_some();
            let intent = Intent {
                frequency_mhz: Some(clamped.mhz()),
                power_target_w: None,
                core_mv: intent.core_mv.or(intent.tune.map(|_| current.core_mv)),
                tune: None,
                ..intent
            };
            let change = if asleep || (clamped == current.frequency && !took_over) {
                Change::Nothing
            } else {
                Change::Frequency(clamped)
            };
            settle(intent, change, note, asleep)
        }
        Action::SetVoltage { millivolts } => {
            let clamped = board.clamp_core_mv(millivolts);
            let note = clamp_note(f64::from(millivolts), f64::from(clamped), "mV");
            // The tuner's clocks were found at its voltage: another voltage ends its mode.
            let left_tuning = intent.tune.is_some();
            let intent = Intent {
                core_mv: Some(clamped),
                tune: None,
                ..intent
            };
            let change = if asleep || (clamped == current.core_mv && !left_tuning) {
                Change::Nothing
            } else {
                Change::CoreVoltage(clamped)
            };
            settle(intent, change, note, asleep)
        }
        Action::SetPowerTarget { watts } => {
            if !(watts.is_finite() && watts > 0.0) {
                return Decision::Fail(format!(
                    "{watts} W is not a power target (to stop, send sleep)"
                ));
            }
            // The limiter scales the tuned clocks as a whole: the chips keep their shares.
            let intent = Intent {
                power_target_w: Some(watts),
                tune: None,
                ..intent
            };
            let note = Some(
                "the clock follows the target within seconds; telemetry shows the power"
                    .to_string(),
            );
            let change = if asleep {
                Change::Nothing
            } else {
                Change::PowerTarget(Some(watts))
            };
            settle(intent, change, note, asleep)
        }
        Action::SetMode {
            mode: TuneMode::Power,
        } => match intent.power_target_w {
            Some(_) => apply(
                intent,
                Change::Nothing,
                Some("already holding a power target"),
            ),
            None => Decision::Fail("power mode needs a target: send set_power_target".into()),
        },
        // Nothing new for a tune running or done; one that gave up is tried again.
        Action::SetMode { mode } if intent.tune == Some(mode) => apply(
            intent,
            if asleep {
                Change::Nothing
            } else {
                Change::Tune(mode)
            },
            Some(&format!("already in {} mode", mode_name(mode))),
        ),
        Action::SetMode { mode } => {
            let intent = Intent {
                tune: Some(mode),
                power_target_w: None,
                frequency_mhz: None,
                core_mv: None,
                ..intent
            };
            let note = format!(
                "tuning for {}: telemetry reads `tuning` while it measures (tens of minutes of \
                 mining), then the state's curve carries the result",
                mode_name(mode)
            );
            let change = if asleep {
                Change::Nothing
            } else {
                Change::Tune(mode)
            };
            settle(intent, change, Some(note), asleep)
        }
        Action::Reboot if asleep => apply(
            intent,
            Change::Nothing,
            Some("asleep: the chains come up at wake"),
        ),
        Action::Reboot => apply(intent, Change::Reboot, None),
        Action::Identify => apply(intent, Change::Identify, None),
        // Not a change to the chains: the daemon fetches and installs it beside the mining loop
        // (`commands::obey`), and the chains mine on until the supervisor restarts into it.
        Action::Update { .. } => apply(intent, Change::Nothing, None),
    }
}

fn mode_name(mode: TuneMode) -> &'static str {
    match mode {
        TuneMode::Efficiency => "efficiency",
        TuneMode::Power => "power",
        TuneMode::Hashrate => "hash rate",
    }
}

fn clamp_note(wanted: f64, got: f64, unit: &str) -> Option<String> {
    (wanted != got).then(|| format!("clamped {wanted} {unit} to the board's limit {got} {unit}"))
}

/// A setting changed while asleep is remembered and takes effect at wake.
fn settle(intent: Intent, change: Change, note: Option<String>, asleep: bool) -> Decision {
    let note = match (note, asleep) {
        (Some(n), true) => Some(format!("{n}; applies at wake")),
        (None, true) => Some("applies at wake".into()),
        (note, false) => note,
    };
    Decision::Apply {
        intent,
        change,
        note,
    }
}

/// What a site wants its miners to do when the host goes silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailsafeAction {
    /// Keep doing what the host last asked.
    Keep,
    /// Sleep until woken: what demand-response contracts require.
    Sleep,
}

/// Notices a host that has been silent for too long: its presence topic says it is not online,
/// or the broker itself is unreachable. Fires once per silence; hearing the host again re-arms it.
#[derive(Debug, Clone)]
pub struct HostWatch {
    after: Duration,
    silent_since: Option<Duration>,
    fired: bool,
}

impl HostWatch {
    /// `now` is time since the daemon started: a host never heard from is silent from the start.
    pub fn new(after: Duration) -> Self {
        Self {
            after,
            silent_since: Some(Duration::ZERO),
            fired: false,
        }
    }

    /// Whether the failsafe is due at `now`, given whether the host can be heard right now.
    pub fn observe(&mut self, now: Duration, host_heard: bool) -> bool {
        if host_heard {
            self.silent_since = None;
            self.fired = false;
            return false;
        }
        let since = *self.silent_since.get_or_insert(now);
        if !self.fired && now.saturating_sub(since) >= self.after {
            self.fired = true;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hashboard::board::BM1397_HASHBOARD_12 as BOARD;

    const AT_DEFAULT: Current = Current {
        frequency: BOARD.default_frequency,
        core_mv: BOARD.default_core_mv,
    };

    fn applied(decision: Decision) -> (Intent, Change, Option<String>) {
        match decision {
            Decision::Apply {
                intent,
                change,
                note,
            } => (intent, change, note),
            Decision::Fail(reason) => panic!("failed: {reason}"),
        }
    }

    #[test]
    fn sleep_and_wake_are_idempotent() {
        let mining = Intent::default();
        let (asleep, change, _) = applied(decide(mining, AT_DEFAULT, &Action::Sleep, &BOARD));
        assert_eq!(change, Change::Sleep);
        assert_eq!(asleep.sleeping, Some(SleepCause::Command));
        let (again, change, note) = applied(decide(asleep, AT_DEFAULT, &Action::Sleep, &BOARD));
        assert_eq!((again, change), (asleep, Change::Nothing));
        assert_eq!(note.as_deref(), Some("already asleep"));

        let (awake, change, _) = applied(decide(asleep, AT_DEFAULT, &Action::Wake, &BOARD));
        assert_eq!((awake, change), (mining, Change::Wake));
        let (_, change, _) = applied(decide(awake, AT_DEFAULT, &Action::Wake, &BOARD));
        assert_eq!(change, Change::Nothing);
        // A failsafe sleep is also ended by wake.
        let failsafe = Intent {
            sleeping: Some(SleepCause::Failsafe),
            ..mining
        };
        let (_, change, _) = applied(decide(failsafe, AT_DEFAULT, &Action::Wake, &BOARD));
        assert_eq!(change, Change::Wake);
    }

    #[test]
    fn expert_settings_are_clamped_and_noted() {
        let (intent, change, note) = applied(decide(
            Intent::default(),
            AT_DEFAULT,
            &Action::SetFrequency { mhz: 900.0 },
            &BOARD,
        ));
        assert_eq!(change, Change::Frequency(BOARD.max_frequency));
        assert_eq!(intent.frequency_mhz, Some(650.0));
        assert_eq!(
            note.as_deref(),
            Some("clamped 900 MHz to the board's limit 650 MHz")
        );
        let (intent, change, _) = applied(decide(
            Intent::default(),
            AT_DEFAULT,
            &Action::SetVoltage { millivolts: 900 },
            &BOARD,
        ));
        assert_eq!(change, Change::CoreVoltage(BOARD.min_core_mv));
        assert_eq!(intent.core_mv, Some(1100));
        // The current setting again changes nothing.
        let (_, change, note) = applied(decide(
            Intent::default(),
            AT_DEFAULT,
            &Action::SetFrequency { mhz: 425.0 },
            &BOARD,
        ));
        assert_eq!((change, note), (Change::Nothing, None));
        for mhz in [f64::NAN, -1.0, 0.0, f64::INFINITY] {
            assert!(matches!(
                decide(
                    Intent::default(),
                    AT_DEFAULT,
                    &Action::SetFrequency { mhz },
                    &BOARD
                ),
                Decision::Fail(_)
            ));
        }
    }

    #[test]
    fn settings_sent_while_asleep_wait_for_wake() {
        let asleep = Intent {
            sleeping: Some(SleepCause::Command),
            ..Intent::default()
        };
        let (intent, change, note) = applied(decide(
            asleep,
            AT_DEFAULT,
            &Action::SetFrequency { mhz: 500.0 },
            &BOARD,
        ));
        assert_eq!(change, Change::Nothing);
        assert_eq!(intent.frequency_mhz, Some(500.0));
        assert_eq!(intent.sleeping, Some(SleepCause::Command));
        assert_eq!(note.as_deref(), Some("applies at wake"));
        let (_, change, _) = applied(decide(asleep, AT_DEFAULT, &Action::Reboot, &BOARD));
        assert_eq!(change, Change::Nothing);
    }

    #[test]
    fn tuner_modes_start_a_tune_once_and_power_mode_needs_a_target() {
        for mode in [TuneMode::Efficiency, TuneMode::Hashrate] {
            let held = Intent {
                power_target_w: Some(30.0),
                frequency_mhz: Some(500.0),
                core_mv: Some(1400),
                ..Intent::default()
            };
            let (tuning, change, note) =
                applied(decide(held, AT_DEFAULT, &Action::SetMode { mode }, &BOARD));
            assert_eq!(change, Change::Tune(mode));
            assert!(note.is_some_and(|n| n.contains("tuning")));
            // The tuner owns the clock and the voltage from now on.
            assert_eq!(
                tuning,
                Intent {
                    tune: Some(mode),
                    ..Intent::default()
                }
            );
            let (same, again, note) = applied(decide(
                tuning,
                AT_DEFAULT,
                &Action::SetMode { mode },
                &BOARD,
            ));
            assert_eq!((same, again), (tuning, Change::Tune(mode)));
            assert!(note.is_some_and(|n| n.starts_with("already")));
        }
        // Asleep: remembered, tuned at wake.
        let asleep = Intent {
            sleeping: Some(SleepCause::Command),
            ..Intent::default()
        };
        let mode = TuneMode::Efficiency;
        let (intent, change, note) = applied(decide(
            asleep,
            AT_DEFAULT,
            &Action::SetMode { mode },
            &BOARD,
        ));
        assert_eq!((intent.tune, change), (Some(mode), Change::Nothing));
        assert!(note.is_some_and(|n| n.ends_with("applies at wake")));
        assert!(matches!(
            decide(
                Intent::default(),
                AT_DEFAULT,
                &Action::SetMode {
                    mode: TuneMode::Power
                },
                &BOARD
            ),
            Decision::Fail(r) if r.contains("set_power_target")
        ));
    }

    #[test]
    fn a_power_target_is_kept_until_an_explicit_clock_replaces_it() {
        let (intent, change, _) = applied(decide(
            Intent::default(),
            AT_DEFAULT,
            &Action::SetPowerTarget { watts: 30.0 },
            &BOARD,
        ));
        assert_eq!(change, Change::PowerTarget(Some(30.0)));
        assert_eq!(intent.power_target_w, Some(30.0));
        for watts in [0.0, -5.0, f64::NAN] {
            assert!(matches!(
                decide(
                    intent,
                    AT_DEFAULT,
                    &Action::SetPowerTarget { watts },
                    &BOARD
                ),
                Decision::Fail(_)
            ));
        }
        // The same clock as now, but it ends the power target: that is a change.
        let (after, change, _) = applied(decide(
            intent,
            AT_DEFAULT,
            &Action::SetFrequency { mhz: 425.0 },
            &BOARD,
        ));
        assert_eq!(change, Change::Frequency(BOARD.default_frequency));
        assert_eq!(after.power_target_w, None);
    }

    #[test]
    fn an_explicit_clock_voltage_or_power_target_ends_a_tuner_mode() {
        let tuned = Intent {
            tune: Some(TuneMode::Efficiency),
            ..Intent::default()
        };
        let at_tuned = Current {
            frequency: BOARD.default_frequency,
            core_mv: 1250,
        };
        // The same mean clock is still a change: the chips leave their own clocks for one.
        let (intent, change, _) = applied(decide(
            tuned,
            at_tuned,
            &Action::SetFrequency { mhz: 425.0 },
            &BOARD,
        ));
        assert_eq!(change, Change::Frequency(BOARD.default_frequency));
        assert_eq!((intent.tune, intent.core_mv), (None, Some(1250)));
        let (intent, change, _) = applied(decide(
            tuned,
            at_tuned,
            &Action::SetVoltage { millivolts: 1250 },
            &BOARD,
        ));
        assert_eq!(change, Change::CoreVoltage(1250));
        assert_eq!(intent.tune, None);
        let (intent, _, _) = applied(decide(
            tuned,
            at_tuned,
            &Action::SetPowerTarget { watts: 20.0 },
            &BOARD,
        ));
        assert_eq!((intent.tune, intent.power_target_w), (None, Some(20.0)));
    }

    fn any_action() -> impl proptest::strategy::Strategy<Value = Action> {
        use proptest::prelude::*;
        let mode = prop_oneof![
            Just(TuneMode::Efficiency),
            Just(TuneMode::Power),
            Just(TuneMode::Hashrate)
        ];
        prop_oneof![
            Just(Action::Sleep),
            Just(Action::Wake),
            Just(Action::Reboot),
            Just(Action::Identify),
            any::<f64>().prop_map(|watts| Action::SetPowerTarget { watts }),
            any::<f64>().prop_map(|mhz| Action::SetFrequency { mhz }),
            any::<u32>().prop_map(|millivolts| Action::SetVoltage { millivolts }),
            mode.prop_map(|mode| Action::SetMode { mode }),
        ]
    }

    proptest::proptest! {
        /// Whatever a (validly signed) command asks, the decision keeps the board within its
        /// limits and never panics; a sequence of them never leaves a nonsensical intent.
        #[test]
        fn decisions_stay_within_the_board(actions in proptest::collection::vec(any_action(), 1..12)) {
            let mut intent = Intent::default();
            for action in &actions {
                if let Decision::Apply { intent: next, change, .. } = decide(intent, AT_DEFAULT, action, &BOARD) {
                    if let Some(mhz) = next.frequency_mhz {
                        proptest::prop_assert!((BOARD.min_frequency.mhz()..=BOARD.max_frequency.mhz()).contains(&mhz));
                    }
                    if let Some(mv) = next.core_mv {
                        proptest::prop_assert!((BOARD.min_core_mv..=BOARD.max_core_mv).contains(&mv));
                    }
                    if let Some(watts) = next.power_target_w {
                        proptest::prop_assert!(watts.is_finite() && watts > 0.0);
                    }
                    if let Change::Frequency(f) = change {
                        proptest::prop_assert_eq!(BOARD.clamp_frequency(f), f);
                    }
                    intent = next;
                }
            }
        }
    }

    #[test]
    fn the_failsafe_fires_once_per_silence() {
        let after = Duration::from_secs(60);
        let mut watch = HostWatch::new(after);
        let s = Duration::from_secs;
        // Never heard: silent from the start.
        assert!(!watch.observe(s(59), false));
        assert!(watch.observe(s(60), false));
        assert!(!watch.observe(s(61), false), "once");
        // Heard again, then silent: the clock starts over.
        assert!(!watch.observe(s(100), true));
        assert!(!watch.observe(s(120), false));
        assert!(!watch.observe(s(179), false));
        assert!(watch.observe(s(180), false));
        // A host heard every 50 s never trips it.
        let mut watch = HostWatch::new(after);
        for t in 0..300 {
            assert!(!watch.observe(s(t), t % 50 == 0));
        }
    }
}
