//! The fleet as the host hears it: each miner's retained status and state and its latest
//! telemetry, from MQTT payloads, turned into what the planner and the executor need. A payload
//! that does not parse is refused with the reason and changes nothing.

use std::collections::BTreeMap;

use fleet_proto::messages::{Nameplate, State, Telemetry};
use fleet_proto::{Kind, Mode};

use crate::planner::{Machine, Point, Setting};
use crate::units::{TerahashPerSecond, Watts};

/// A miner is offline when its status says so, or when it has not sent telemetry for this long.
pub const SILENT_AFTER_S: u64 = 60;

/// One miner, as heard.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Heard {
    /// `status` says `online` (the last will says `offline`).
    pub online: bool,
    pub state: Option<State>,
    pub telemetry: Option<Telemetry>,
    /// When the host last received anything from it (host clock, unix s).
    pub last_seen: u64,
    /// When its latest telemetry arrived (host clock): what proves a change took effect.
    pub telemetry_at: u64,
    /// Since when (host clock) its telemetry has said it mines without a break.
    pub mining_since: Option<u64>,
}

/// Live efficiency is trusted once a machine has mined this long without a break: the 1-minute
/// hash rate then holds no start-up, sleep or ramp.
pub const SETTLED_AFTER_S: u64 = 60;

/// Why a message was not taken.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{kind} from {miner}: {source}")]
    Malformed {
        kind: &'static str,
        miner: String,
        source: serde_json::Error,
    },
    #[error("{kind} from {miner}: status is neither online nor offline")]
    BadStatus { kind: &'static str, miner: String },
    #[error("{kind} from {miner}: not something a miner publishes")]
    NotFromAMiner { kind: &'static str, miner: String },
    #[error("{kind} from {miner}: the fleet already holds {max} miners ([agent] max_miners)")]
    FleetFull {
        kind: &'static str,
        miner: String,
        max: usize,
    },
    #[error("{kind} from {miner} not believed: {source}")]
    Implausible {
        kind: &'static str,
        miner: String,
        source: crate::plausible::Implausible,
    },
}

/// What the host knows of each miner, by name.
#[derive(Debug, Clone)]
pub struct FleetView {
    miners: BTreeMap<String, Heard>,
    /// Telemetry gap after which a miner counts as unreachable: longer when agents share the
    /// telemetry stream, since each then hears a miner only every n-th report.
    silent_after_s: u64,
    /// Miners this view holds at most: names beyond it are refused, so a client inventing
    /// miners on a broker without ACLs cannot grow the agent without end.
    max_miners: usize,
}

/// The default bound on miners one agent holds: the size one agent is built for.
pub const MAX_MINERS: usize = 100_000;

impl Default for FleetView {
    fn default() -> Self {
        Self {
            miners: BTreeMap::new(),
            silent_after_s: SILENT_AFTER_S,
            max_miners: MAX_MINERS,
        }
    }
}

impl FleetView {
    /// A view that holds at most `max_miners` (a site's own count, with some room).
    pub fn with_max_miners(max_miners: usize) -> Self {
        Self {
            max_miners,
            ..Self::default()
        }
    }

    pub fn set_silent_after(&mut self, seconds: u64) {
        self.silent_after_s = seconds;
    }

    /// Whether `miner` can be commanded now: `online`, and telemetry within the silence bound.
    pub fn reachable(&self, miner: &str, now: u64) -> bool {
        self.miners
            .get(miner)
            .is_some_and(|heard| heard.reachable(now, self.silent_after_s))
    }

    /// Takes one message from `miner` on `kind`, received at host time `now`.
    pub fn ingest(
        &mut self,
        miner: &str,
        kind: Kind,
        payload: &[u8],
        now: u64,
    ) -> Result<(), IngestError> {
        let malformed = |source| IngestError::Malformed {
            kind: kind.as_str(),
            miner: miner.to_string(),
            source,
        };
        let implausible = |source| IngestError::Implausible {
            kind: kind.as_str(),
            miner: miner.to_string(),
            source,
        };
        if !self.miners.contains_key(miner) && self.miners.len() >= self.max_miners {
            return Err(IngestError::FleetFull {
                kind: kind.as_str(),
                miner: miner.to_string(),
                max: self.max_miners,
            });
        }
        match kind {
            Kind::Status => {
                let online = match payload {
                    b"online" => true,
                    b"offline" => false,
                    _ => {
                        return Err(IngestError::BadStatus {
                            kind: kind.as_str(),
                            miner: miner.to_string(),
                        });
                    }
                };
                let heard = self.miners.entry(miner.to_string()).or_default();
                heard.online = online;
                heard.last_seen = now;
            }
            Kind::State => {
                let mut state: State = serde_json::from_slice(payload).map_err(malformed)?;
                crate::plausible::state(&state, now).map_err(implausible)?;
                state.firmware = crate::plausible::printable(&state.firmware);
                state.nameplate.model = crate::plausible::printable(&state.nameplate.model);
                state.nameplate.chip = crate::plausible::printable(&state.nameplate.chip);
                let heard = self.miners.entry(miner.to_string()).or_default();
                heard.state = Some(state);
                heard.last_seen = now;
            }
            Kind::Telemetry => {
                let mut telemetry: Telemetry =
                    serde_json::from_slice(payload).map_err(malformed)?;
                crate::plausible::telemetry(&telemetry, now).map_err(implausible)?;
                telemetry.firmware = crate::plausible::printable(&telemetry.firmware);
                let heard = self.miners.entry(miner.to_string()).or_default();
                heard.mining_since = match telemetry.mode {
                    Mode::Mining | Mode::PowerTarget => heard.mining_since.or(Some(now)),
                    _ => None,
                };
                heard.telemetry = Some(telemetry);
                heard.last_seen = now;
                heard.telemetry_at = now;
            }
            Kind::Cmd | Kind::Ack => {
                return Err(IngestError::NotFromAMiner {
                    kind: kind.as_str(),
                    miner: miner.to_string(),
                });
            }
        }
        Ok(())
    }

    pub fn get(&self, miner: &str) -> Option<&Heard> {
        self.miners.get(miner)
    }

    pub fn len(&self) -> usize {
        self.miners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.miners.is_empty()
    }

    /// Every miner that has told the host what it is (its retained state), as the planner sees
    /// it at `now`. Switch history is the executor's to add.
    pub fn machines(&self, now: u64) -> Vec<Machine> {
        self.miners
            .iter()
            .filter_map(|(id, heard)| heard.machine(id, now, self.silent_after_s))
            .collect()
    }
}

impl Heard {
    fn reachable(&self, now: u64, silent_after_s: u64) -> bool {
        self.online && now.saturating_sub(self.last_seen) <= silent_after_s
    }

    /// What it runs at: the mode of whichever is newer by the miner's clock, its telemetry or its
    /// retained state (republished on every change; it wins a tie, since timestamps are whole
    /// seconds and a report sent in the second of a change may describe the moment before it).
    /// Telemetry alone can be stale: with agents sharing a site each hears only every n-th
    /// report, and an agent taking a miner over may hold one from before its last change.
    pub fn setting(&self) -> Option<Setting> {
        let state = self.state.as_ref()?;
        let mode = match &self.telemetry {
            Some(telemetry) if telemetry.at > state.at => telemetry.mode,
            _ => state.mode,
        };
        Some(match mode {
            Mode::Sleeping => Setting::Sleep,
            _ => match state.power_target_w {
                Some(watts) => Setting::PowerTarget(Watts(watts)),
                None => Setting::Full,
            },
        })
    }

    /// The build it runs, by whichever of its state and telemetry is newer: the version that
    /// ends what it reports (`0.4.2`, or `hashwarden-fw 0.4.2`), `None` when that is no version.
    pub fn firmware(&self) -> Option<fleet_proto::image::Version> {
        let reported = match (&self.state, &self.telemetry) {
            (Some(state), Some(telemetry)) if telemetry.at > state.at => &telemetry.firmware,
            (Some(state), _) => &state.firmware,
            (None, Some(telemetry)) => &telemetry.firmware,
            (None, None) => return None,
        };
        reported.split_whitespace().last()?.parse().ok()
    }

    /// The watts it draws now, by its telemetry.
    pub fn power(&self) -> Option<Watts> {
        self.telemetry.as_ref().map(|t| Watts(t.power_w))
    }

    fn machine(&self, id: &str, now: u64, silent_after_s: u64) -> Option<Machine> {
        let state = self.state.as_ref()?;
        let full = full_point(state)?;
        let curve = state
            .curve
            .iter()
            .map(|p| Point {
                watts: Watts(p.power_w),
                hashrate: TerahashPerSecond(p.hashrate_ths),
            })
            .collect();
        // Live efficiency from the 1-minute hash rate (steadier than 5 s, fresher than 15 min),
        // once the machine has mined a full minute without a break; its full point until then.
        let settled = self
            .mining_since
            .is_some_and(|since| now.saturating_sub(since) >= SETTLED_AFTER_S);
        let live = self.telemetry.as_ref().filter(|_| settled).and_then(|t| {
            (t.uptime_s >= SETTLED_AFTER_S && t.power_w > 0.0 && t.hashrate_ths.m1 > 0.0).then_some(
                Point {
                    watts: Watts(t.power_w),
                    hashrate: TerahashPerSecond(t.hashrate_ths.m1),
                },
            )
        });
        Some(Machine {
            online: self.reachable(now, silent_after_s),
            setting: self.setting()?,
            live,
            ..Machine::new(id, full, curve)
        })
    }
}

/// Its full operating point: the nameplate when it carries a measured power, else the curve's
/// highest point. `None` when neither says what it draws.
fn full_point(state: &State) -> Option<Point> {
    let Nameplate {
        hashrate_ths,
        power_w,
        ..
    } = state.nameplate;
    if power_w > 0.0 && hashrate_ths > 0.0 {
        return Some(Point {
            watts: Watts(power_w),
            hashrate: TerahashPerSecond(hashrate_ths),
        });
    }
    state
        .curve
        .iter()
        .filter(|p| p.power_w > 0.0 && p.hashrate_ths > 0.0)
        .max_by(|a, b| a.power_w.total_cmp(&b.power_w))
        .map(|p| Point {
            watts: Watts(p.power_w),
            hashrate: TerahashPerSecond(p.hashrate_ths),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_proto::examples;

    const NOW: u64 = 1_767_225_600;

    fn example(suffix: &str) -> Vec<u8> {
        examples::payload(suffix).expect("a documented example")
    }

    #[test]
    fn the_documented_messages_make_a_machine() {
        let mut fleet = FleetView::default();
        fleet
            .ingest("s19xp-r04-017", Kind::Status, b"online", NOW)
            .expect("status");
        fleet
            .ingest("s19xp-r04-017", Kind::State, &example("/state"), NOW)
            .expect("state");
        fleet
            .ingest(
                "s19xp-r04-017",
                Kind::Telemetry,
                &example("/telemetry"),
                NOW,
            )
            .expect("telemetry");
        let machines = fleet.machines(NOW + 5);
        assert_eq!(machines.len(), 1);
        let m = &machines[0];
        assert!(m.online);
        assert_eq!(m.setting, Setting::Full);
        assert_eq!(m.full.watts, Watts(3_031.0));
        assert_eq!(m.curve.len(), 3);
        // Live efficiency only once it has mined a settled minute.
        assert!(m.live.is_none());
        fleet
            .ingest(
                "s19xp-r04-017",
                Kind::Telemetry,
                &example("/telemetry"),
                NOW + 61,
            )
            .expect("telemetry");
        assert!(fleet.machines(NOW + 61)[0].live.is_some());
        // Silent past the bound: offline, though its status still says online.
        assert!(!fleet.machines(NOW + 61 + SILENT_AFTER_S + 1)[0].online);
        fleet
            .ingest("s19xp-r04-017", Kind::Status, b"offline", NOW + 62)
            .expect("status");
        assert!(!fleet.machines(NOW + 63)[0].online);
    }

    #[test]
    fn the_newer_of_state_and_telemetry_says_what_it_runs_at() {
        let miner = "s19xp-r04-017";
        let mut fleet = FleetView::default();
        let mut state: fleet_proto::State =
            serde_json::from_slice(&example("/state")).expect("parses");
        let mut telemetry: fleet_proto::Telemetry =
            serde_json::from_slice(&example("/telemetry")).expect("parses");
        let mut hear = |state: &fleet_proto::State, telemetry: &fleet_proto::Telemetry| {
            let state = serde_json::to_vec(state).expect("encodes");
            let telemetry = serde_json::to_vec(telemetry).expect("encodes");
            fleet
                .ingest(miner, Kind::Telemetry, &telemetry, NOW)
                .expect("telemetry");
            fleet
                .ingest(miner, Kind::State, &state, NOW)
                .expect("state");
            fleet.get(miner).and_then(Heard::setting)
        };
        // Telemetry from before a sleep (as an agent sharing the site may hold), the state
        // republished on the sleep: asleep.
        telemetry.at = state.at - 10;
        state.mode = Mode::Sleeping;
        assert_eq!(hear(&state, &telemetry), Some(Setting::Sleep));
        // Telemetry after the state: it speaks for the miner now.
        telemetry.at = state.at + 10;
        telemetry.mode = Mode::Mining;
        assert_eq!(hear(&state, &telemetry), Some(Setting::Full));
    }

    #[test]
    fn bad_payloads_are_refused_and_change_nothing() {
        let mut fleet = FleetView::default();
        fleet
            .ingest("m1", Kind::State, &example("/state"), NOW)
            .expect("state");
        let before = fleet.get("m1").cloned();
        for (kind, payload) in [
            (Kind::State, &b"{\"v\":1"[..]),
            (Kind::Telemetry, b"[]"),
            (Kind::Status, b"maybe"),
            (Kind::Cmd, b"{}"),
            (Kind::Ack, b"{}"),
        ] {
            let e = fleet
                .ingest("m1", kind, payload, NOW + 1)
                .expect_err("refused");
            assert!(e.to_string().contains("m1"), "{e}");
        }
        assert_eq!(fleet.get("m1").cloned(), before);
        // Telemetry alone says nothing of what the machine is: no machine yet.
        fleet
            .ingest("m2", Kind::Telemetry, &example("/telemetry"), NOW)
            .expect("telemetry");
        assert_eq!(fleet.machines(NOW).len(), 1);
    }

    proptest::proptest! {
        #[test]
        fn any_payload_is_taken_or_refused_never_a_panic(
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
            kind in 0usize..5,
        ) {
            let mut fleet = FleetView::default();
            let _ = fleet.ingest("m1", Kind::ALL[kind], &payload, NOW);
            let _ = fleet.machines(NOW);
        }
    }

    #[test]
    fn invented_miners_past_the_bound_are_refused_and_known_ones_still_heard() {
        // The documented state's own time, so it is no report from the future.
        const NOW: u64 = 1_767_225_600;
        let mut fleet = FleetView::with_max_miners(3);
        for m in ["m1", "m2", "m3"] {
            fleet.ingest(m, Kind::Status, b"online", NOW).expect("room");
        }
        match fleet.ingest("ghost-4", Kind::State, &example("/state"), NOW) {
            Err(IngestError::FleetFull { max: 3, miner, .. }) => assert_eq!(miner, "ghost-4"),
            other => panic!("{other:?}"),
        }
        assert_eq!(fleet.len(), 3);
        fleet
            .ingest("m2", Kind::State, &example("/state"), NOW)
            .expect("a known miner is always heard");
        assert!(fleet.get("m2").is_some_and(|h| h.state.is_some()));
    }
}
