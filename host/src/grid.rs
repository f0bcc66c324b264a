//! The site's power cap from the grid side: a `…/grid` signal (a cap in kW until a time) and
//! the `maestro/target` demand-response contract (`target` 0 = curtail, 100 = run; a site that
//! hears nothing for four minutes curtails by itself). The cap in force is the tightest of them
//! and of the site's contract limit.

use fleet_proto::{GridSignal, MaestroTarget};

use crate::units::Watts;

/// A maestro site that hears nothing for this long curtails.
pub const MAESTRO_SILENCE_S: u64 = 240;

/// Clock skew tolerated on a grid signal's `at`, s.
const SIGNAL_SKEW_S: u64 = 300;
/// A grid signal older than this when it arrives is refused (a retained one from yesterday).
const SIGNAL_MAX_AGE_S: u64 = 86_400;
/// How far after it was sent a grid signal may start or end: demand response is announced
/// hours to a day ahead and lasts hours; a week is generous.
const SIGNAL_REACH_S: u64 = 7 * 86_400;

#[derive(Debug, Clone, Default)]
pub struct Grid {
    /// The site's own contract limit.
    contract: Option<Watts>,
    signal: Option<GridSignal>,
    /// Whether the site follows `maestro/target` (silence then means curtail).
    maestro: bool,
    last_maestro: Option<(MaestroTarget, u64)>,
    /// When the agent started: a maestro site is not silent before it could have heard.
    since: u64,
    /// How long before a cap announced ahead (`from`) it is applied, so the batches have shed
    /// what they must by the time it starts.
    lead_s: u64,
}

impl Grid {
    pub fn new(contract: Option<Watts>, maestro: bool, since: u64) -> Self {
        Self {
            contract,
            maestro,
            since,
            ..Self::default()
        }
    }

    /// Applies caps announced ahead `lead_s` before they start.
    pub fn with_lead(self, lead_s: u64) -> Self {
        Self { lead_s, ..self }
    }

    /// Takes a signal in place of the last one, unless it contradicts itself.
    /// A signal received at `now`. Refused (changing nothing) when it is no power, ends before it
    /// starts, is dated far from now, or reaches further than a demand-response event does —
    /// a cap "until the end of time" is a mistake or an attack, not a contract.
    pub fn signal(&mut self, signal: GridSignal, now: u64) -> Result<(), String> {
        if let Some(kw) = signal.cap_kw
            && !(kw.is_finite() && kw >= 0.0)
        {
            return Err(format!("a cap of {kw} kW is not a power"));
        }
        if signal.at > now + SIGNAL_SKEW_S || signal.at + SIGNAL_MAX_AGE_S < now {
            return Err(format!(
                "it is dated {}, {} s from this host's clock (at most {SIGNAL_SKEW_S} s ahead, \
                 {SIGNAL_MAX_AGE_S} s old)",
                signal.at,
                signal.at.abs_diff(now)
            ));
        }
        for (what, time) in [("ends", signal.until), ("starts", signal.from)] {
            if let Some(time) = time
                && time > signal.at.saturating_add(SIGNAL_REACH_S)
            {
                return Err(format!(
                    "it {what} at {time}, more than {} days after it was sent",
                    SIGNAL_REACH_S / 86_400
                ));
            }
        }
        if let (Some(from), Some(until)) = (signal.from, signal.until)
            && from >= until
        {
            return Err(format!(
                "it starts at {from}, not before it ends at {until}"
            ));
        }
        self.signal = Some(signal);
        Ok(())
    }

    /// A cap announced for later: (the cap, when it starts), while it is not in force yet.
    pub fn scheduled(&self, now: u64) -> Option<(Watts, u64)> {
        let signal = self.signal.as_ref()?;
        let from = signal.from.filter(|&from| now + self.lead_s < from)?;
        Some((Watts(signal.cap_kw? * 1000.0), from))
    }

    /// A maestro message, received at host time `now`.
    pub fn maestro(&mut self, target: MaestroTarget, now: u64) {
        self.last_maestro = Some((target, now));
    }

    /// The cap at `now`, and why, when there is one.
    pub fn cap(&self, now: u64) -> Option<(Watts, &'static str)> {
        let mut caps: Vec<(Watts, &'static str)> = Vec::new();
        if let Some(contract) = self.contract {
            caps.push((contract, "the site's contract limit"));
        }
        if let Some(signal) = &self.signal
            && signal.until.is_none_or(|until| until > now)
            && signal.from.is_none_or(|from| now + self.lead_s >= from)
            && let Some(kw) = signal.cap_kw
        {
            caps.push((Watts(kw * 1000.0), "the grid signal"));
        }
        if self.maestro {
            let heard = self.last_maestro.map_or(self.since, |(_, at)| at);
            match self.last_maestro {
                _ if now.saturating_sub(heard) > MAESTRO_SILENCE_S => {
                    caps.push((Watts(0.0), "maestro silent for four minutes"));
                }
                Some((target, _)) if target.target == 0 => {
                    caps.push((Watts(0.0), "maestro target 0"));
                }
                _ => {}
            }
        }
        caps.into_iter().min_by(|a, b| a.0.0.total_cmp(&b.0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_767_225_600;

    #[test]
    fn the_tightest_cap_in_force_wins() {
        let mut grid = Grid::new(Some(Watts(2_000_000.0)), false, NOW);
        assert_eq!(grid.cap(NOW).map(|c| c.0), Some(Watts(2_000_000.0)));
        grid.signal(
            GridSignal {
                v: 1,
                at: NOW,
                cap_kw: Some(1_800.0),
                until: Some(NOW + 3_600),
                from: None,
            },
            NOW,
        )
        .expect("a cap");
        assert_eq!(
            grid.cap(NOW + 10),
            Some((Watts(1_800_000.0), "the grid signal"))
        );
        // Expired: back to the contract.
        assert_eq!(grid.cap(NOW + 3_600).map(|c| c.0), Some(Watts(2_000_000.0)));
        grid.signal(
            GridSignal {
                v: 1,
                at: NOW,
                cap_kw: None,
                until: None,
                from: None,
            },
            NOW,
        )
        .expect("a lift");
        assert_eq!(grid.cap(NOW).map(|c| c.0), Some(Watts(2_000_000.0)));
    }

    #[test]
    fn a_cap_announced_ahead_applies_its_lead_before_it_starts_and_ends_on_time() {
        let mut grid = Grid::new(None, false, NOW).with_lead(300);
        let signal = GridSignal {
            v: 1,
            at: NOW,
            cap_kw: Some(1_200.0),
            until: Some(NOW + 5_400),
            from: Some(NOW + 1_800),
        };
        grid.signal(signal, NOW).expect("a cap with notice");
        assert_eq!(grid.cap(NOW), None, "not yet");
        assert_eq!(grid.scheduled(NOW), Some((Watts(1_200_000.0), NOW + 1_800)));
        assert_eq!(grid.cap(NOW + 1_499), None);
        assert_eq!(
            grid.cap(NOW + 1_500).map(|c| c.0),
            Some(Watts(1_200_000.0)),
            "shedding starts the lead before the event"
        );
        assert_eq!(grid.scheduled(NOW + 1_500), None);
        assert_eq!(grid.cap(NOW + 5_400), None, "over");
        // A signal that ends before it starts, or caps at no power, is refused and changes
        // nothing.
        let backwards = GridSignal {
            from: Some(NOW + 9_000),
            ..signal
        };
        assert!(grid.signal(backwards, NOW).is_err());
        let nan = GridSignal {
            cap_kw: Some(f64::NAN),
            ..signal
        };
        assert!(grid.signal(nan, NOW).is_err());
        assert_eq!(grid.cap(NOW + 1_500).map(|c| c.0), Some(Watts(1_200_000.0)));
    }

    #[test]
    fn a_cap_for_ever_or_from_another_day_is_refused() {
        let mut grid = Grid::new(None, false, NOW);
        let cap = GridSignal {
            v: 1,
            at: NOW,
            cap_kw: Some(0.0),
            until: Some(u64::MAX),
            from: None,
        };
        // Once capped the site at 0 W for ever.
        let refused = grid.signal(cap, NOW).expect_err("for ever");
        assert!(refused.contains("more than 7 days"), "{refused}");
        let far_start = GridSignal {
            until: Some(NOW + 9 * 86_400),
            from: Some(NOW + 8 * 86_400),
            ..cap
        };
        assert!(grid.signal(far_start, NOW).is_err());
        let yesterday = GridSignal {
            at: NOW - 2 * 86_400,
            until: Some(NOW + 3_600),
            ..cap
        };
        assert!(grid.signal(yesterday, NOW).is_err());
        let tomorrow = GridSignal {
            at: NOW + 3_600,
            until: Some(NOW + 7_200),
            ..cap
        };
        assert!(grid.signal(tomorrow, NOW).is_err());
        assert_eq!(grid.cap(NOW), None, "none of them took");
        // A day-long event announced now is what demand response looks like: taken.
        let event = GridSignal {
            until: Some(NOW + 86_400),
            ..cap
        };
        grid.signal(event, NOW + 10).expect("a day-long cap");
        assert_eq!(grid.cap(NOW + 20).map(|c| c.0), Some(Watts(0.0)));
    }

    #[test]
    fn maestro_curtails_on_zero_and_on_silence() {
        let mut grid = Grid::new(None, true, NOW);
        assert_eq!(
            grid.cap(NOW + 10),
            None,
            "not silent before it could have heard"
        );
        grid.maestro(
            MaestroTarget {
                target: 100,
                timestamp: NOW,
            },
            NOW + 20,
        );
        assert_eq!(grid.cap(NOW + 30), None);
        grid.maestro(
            MaestroTarget {
                target: 0,
                timestamp: NOW,
            },
            NOW + 50,
        );
        assert_eq!(grid.cap(NOW + 60), Some((Watts(0.0), "maestro target 0")));
        grid.maestro(
            MaestroTarget {
                target: 100,
                timestamp: NOW,
            },
            NOW + 80,
        );
        assert_eq!(grid.cap(NOW + 80 + MAESTRO_SILENCE_S), None);
        assert_eq!(
            grid.cap(NOW + 81 + MAESTRO_SILENCE_S),
            Some((Watts(0.0), "maestro silent for four minutes"))
        );
        // A site that does not follow maestro ignores it.
        let mut free = Grid::new(None, false, NOW);
        free.maestro(
            MaestroTarget {
                target: 0,
                timestamp: NOW,
            },
            NOW,
        );
        assert_eq!(free.cap(NOW + 1_000), None);
    }
}
