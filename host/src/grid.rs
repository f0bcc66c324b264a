//! The site's power cap from the grid side: a `…/grid` signal (a cap in kW until a time) and
//! the `maestro/target` demand-response contract (`target` 0 = curtail, 100 = run; a site that
//! hears nothing for four minutes curtails by itself). The cap in force is the tightest of them
//! and of the site's contract limit.

use fleet_proto::{GridSignal, MaestroTarget};

use crate::units::Watts;

/// A maestro site that hears nothing for this long curtails.
pub const MAESTRO_SILENCE_S: u64 = 240;

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

    pub fn signal(&mut self, signal: GridSignal) {
        self.signal = Some(signal);
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
            && let Some(kw) = signal.cap_kw.filter(|kw| kw.is_finite() && *kw >= 0.0)
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
        grid.signal(GridSignal {
            v: 1,
            at: NOW,
            cap_kw: Some(1_800.0),
            until: Some(NOW + 3_600),
        });
        assert_eq!(
            grid.cap(NOW + 10),
            Some((Watts(1_800_000.0), "the grid signal"))
        );
        // Expired: back to the contract.
        assert_eq!(grid.cap(NOW + 3_600).map(|c| c.0), Some(Watts(2_000_000.0)));
        grid.signal(GridSignal {
            v: 1,
            at: NOW,
            cap_kw: None,
            until: None,
        });
        assert_eq!(grid.cap(NOW).map(|c| c.0), Some(Watts(2_000_000.0)));
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
