//! What the miner tells the fleet: periodic telemetry and its retained state, built from the
//! board's own readings (regulator power over PMBus, fan tachometer and board sensor over I2C)
//! and the mining counts.

use std::collections::VecDeque;
use std::time::Duration;

use fleet_proto::messages::{ChainHealth, Fan, Nameplate};
use fleet_proto::{Mode, State, Telemetry};
use tokio::time::Instant;

use crate::control::Intent;
use crate::snapshot::Snapshot;

/// The running build's version: its manifest's when the supervisor started it from a slot (the
/// version the fleet rolled out), else this binary's own.
pub fn firmware_version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        std::env::var(crate::update::VERSION_VAR)
            .ok()
            .filter(|v| v.parse::<fleet_proto::image::Version>().is_ok())
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string())
    })
}

/// The hash-rate windows fleet tools expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    S5,
    M1,
    M15,
}

impl Window {
    const fn length(self) -> Duration {
        match self {
            Window::S5 => Duration::from_secs(5),
            Window::M1 => Duration::from_secs(60),
            Window::M15 => Duration::from_secs(900),
        }
    }
}

/// TH/s from `work` (difficulty-1 units, 2^32 hashes each) done in `seconds`.
pub fn terahashes(work: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        work * 4_294_967_296.0 / seconds / 1e12
    } else {
        0.0
    }
}

/// Hash rate over recent windows of wall time, from (wall time, chip seconds, work done)
/// samples, so a stall shows within seconds instead of diluting a run-long average.
#[derive(Debug, Default)]
pub struct Rates {
    samples: VecDeque<(Instant, f64, f64)>,
}

impl Rates {
    pub fn add(&mut self, now: Instant, simulated_s: f64, work: f64) {
        self.samples.push_back((now, simulated_s, work));
        // Keep one sample older than the longest window, so that window is always covered.
        while self
            .samples
            .get(1)
            .is_some_and(|(t, _, _)| now - *t >= Window::M15.length())
        {
            self.samples.pop_front();
        }
    }

    /// TH/s over `window` (or as much of it as has passed).
    pub fn ths(&self, window: Window) -> f64 {
        let Some(&(t1, s1, n1)) = self.samples.back() else {
            return 0.0;
        };
        let first = self
            .samples
            .iter()
            .find(|(t, _, _)| t1 - *t <= window.length())
            .copied();
        match first {
            Some((_, s0, n0)) if s1 > s0 => terahashes(n1 - n0, s1 - s0),
            _ => 0.0,
        }
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The telemetry message for a snapshot.
pub fn from_snapshot(snapshot: &Snapshot) -> Telemetry {
    let checked = snapshot.nonces + snapshot.hardware_errors;
    let hw_error_rate = if checked == 0 {
        0.0
    } else {
        snapshot.hardware_errors as f64 / checked as f64
    };
    let hashrate = snapshot.hashrate;
    let power_w = snapshot.power_w.unwrap_or(0.0);
    Telemetry {
        v: fleet_proto::command::VERSION,
        at: unix_now(),
        uptime_s: snapshot.elapsed_s,
        firmware: firmware_version().into(),
        mode: snapshot.mode,
        hashrate_ths: hashrate,
        share_difficulty: snapshot.share_difficulty,
        shares_accepted: snapshot.accepted,
        shares_rejected: snapshot.rejected,
        power_w,
        // Meaningless while the hash rate is (nearly) zero: absent rather than infinite.
        efficiency_j_per_th: (hashrate.s5 > 1e-6 && power_w > 0.0).then(|| power_w / hashrate.s5),
        board_temp_c: snapshot.board_temp_c,
        fans: snapshot
            .fan
            .map(|(rpm, percent)| Fan {
                rpm,
                percent: f64::from(percent),
            })
            .into_iter()
            .collect(),
        chains: snapshot
            .chains
            .iter()
            .map(|chain| {
                let checked = chain.nonces + chain.hardware_errors;
                ChainHealth {
                    index: chain.index,
                    chips_expected: chain.chips,
                    chips_alive: chain.chips_up,
                    hashrate_ths: chain.ths_5s,
                    hw_error_rate: if checked == 0 {
                        0.0
                    } else {
                        chain.hardware_errors as f64 / checked as f64
                    },
                    max_chip_temp_c: (chain.chips_up > 0).then_some(chain.temperature_c),
                }
            })
            .collect(),
        hw_error_rate,
    }
}

/// The tuner's part of the retained state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TuneView {
    /// A chain is measuring right now.
    pub tuning: bool,
    /// The machine's measured curve, highest voltage first.
    pub curve: Vec<fleet_proto::messages::CurvePoint>,
}

/// The machine's first settled reading at its configured clock: its power and the hash rate its
/// chips are expected to give at that clock, measured together so the host's J/TH is one
/// operating point's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NameplateReading {
    pub power_w: f64,
    pub hashrate_ths: f64,
}

/// How long after start a reading may stand for the nameplate: the chips settled at their clock.
pub const NAMEPLATE_SETTLE: Duration = Duration::from_secs(3);

impl NameplateReading {
    /// The nameplate from a reading, when it can stand for one: mining at the configured
    /// clock, drawing power, settled since start.
    pub fn from_reading(reading: &Telemetry, expected_ths: f64, running: Duration) -> Option<Self> {
        (reading.mode == Mode::Mining && reading.power_w > 0.0 && running >= NAMEPLATE_SETTLE)
            .then_some(Self {
                power_w: reading.power_w,
                hashrate_ths: expected_ths,
            })
    }
}

/// What a chain is doing, for its mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChainConditions {
    /// The thermal guard holds it, or a chip shut itself down for heat.
    pub overheated: bool,
    pub asleep: bool,
    pub tuning: bool,
    pub power_target: bool,
}

/// A chain's mode as the fleet is told it: the heat first (a hot chain mines nothing, whatever
/// it was asked), then sleep, a tune, a power target, and otherwise mining.
pub fn chain_mode(chain: ChainConditions) -> Mode {
    if chain.overheated {
        Mode::Overheated
    } else if chain.asleep {
        Mode::Sleeping
    } else if chain.tuning {
        Mode::Tuning
    } else if chain.power_target {
        Mode::PowerTarget
    } else {
        Mode::Mining
    }
}

/// The machine's mode from its chains' (merged): asleep by the operator's word, a machine
/// reports sleeping even while its chips are still hot, so a curtailment of a hot machine is
/// seen to be in effect (its temperatures still show the heat).
pub fn machine_mode(chains: Mode, asleep_by_intent: bool) -> Mode {
    if asleep_by_intent && chains == Mode::Overheated {
        Mode::Sleeping
    } else {
        chains
    }
}

/// The retained state: what the machine is set to and what it is.
pub fn state(
    board: &hashboard::board::BoardDescription,
    intent: Intent,
    nameplate: Option<NameplateReading>,
    tune: TuneView,
) -> State {
    State {
        v: fleet_proto::command::VERSION,
        at: unix_now(),
        mode: if intent.sleeping.is_some() {
            Mode::Sleeping
        } else if tune.tuning {
            Mode::Tuning
        } else if intent.power_target_w.is_some() {
            Mode::PowerTarget
        } else {
            Mode::Mining
        },
        power_target_w: intent.power_target_w,
        tune: intent.tune,
        firmware: firmware_version().into(),
        nameplate: Nameplate {
            model: board.name.into(),
            chip: board.model.name().into(),
            chips: board.total_chips(),
            // What it does at the clock it runs, once measured; the board's default until then.
            hashrate_ths: nameplate.map_or_else(
                || {
                    bm13xx::expected_hashrate(
                        board.model,
                        board.default_frequency,
                        board.total_chips(),
                    )
                    .terahashes()
                },
                |n| n.hashrate_ths,
            ),
            power_w: nameplate.map_or(0.0, |n| n.power_w),
        },
        curve: tune.curve,
        durable_sleep: intent.sleeping.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heat_comes_first_then_sleep_a_tune_a_target_and_mining() {
        let hot = ChainConditions {
            overheated: true,
            asleep: true,
            tuning: true,
            power_target: true,
        };
        assert_eq!(chain_mode(hot), Mode::Overheated);
        let asleep = ChainConditions {
            overheated: false,
            ..hot
        };
        assert_eq!(chain_mode(asleep), Mode::Sleeping);
        let tuning = ChainConditions {
            asleep: false,
            ..asleep
        };
        assert_eq!(chain_mode(tuning), Mode::Tuning);
        let limited = ChainConditions {
            tuning: false,
            ..tuning
        };
        assert_eq!(chain_mode(limited), Mode::PowerTarget);
        assert_eq!(chain_mode(ChainConditions::default()), Mode::Mining);
        // Put to sleep while hot: reported asleep; hot by itself: overheated.
        assert_eq!(machine_mode(Mode::Overheated, true), Mode::Sleeping);
        assert_eq!(machine_mode(Mode::Overheated, false), Mode::Overheated);
        assert_eq!(machine_mode(Mode::Mining, true), Mode::Mining);
    }

    #[test]
    fn only_a_settled_mining_reading_stands_for_the_nameplate() {
        let snapshot = Snapshot {
            power_w: Some(120.0),
            mode: Mode::Mining,
            ..Snapshot::default()
        };
        let reading = from_snapshot(&snapshot);
        let settled = NAMEPLATE_SETTLE;
        assert_eq!(
            NameplateReading::from_reading(&reading, 3.4, settled),
            Some(NameplateReading {
                power_w: 120.0,
                hashrate_ths: 3.4
            })
        );
        assert_eq!(
            NameplateReading::from_reading(&reading, 3.4, settled / 2),
            None,
            "not settled"
        );
        let tuning = Telemetry {
            mode: Mode::Tuning,
            ..reading.clone()
        };
        assert_eq!(NameplateReading::from_reading(&tuning, 3.4, settled), None);
        let dark = Telemetry {
            power_w: 0.0,
            ..reading
        };
        assert_eq!(NameplateReading::from_reading(&dark, 3.4, settled), None);
    }
}
