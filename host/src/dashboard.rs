//! What the dashboard shows, as one JSON document the agent refreshes every round: the fleet
//! table, the changes under way, and a history of the hashprice against the fleet's breakeven
//! distribution and of what was curtailed. Pure: the agent hands in its plan and its ops.

use std::collections::VecDeque;

use serde::Serialize;

use crate::planner::{Plan, Setting};
use crate::store::FleetRow;

/// Points of history kept: at one every few seconds, the last hour or so of a live site, and the
/// whole of a fast-forwarded demo.
pub const HISTORY: usize = 1_440;

/// One moment of the site, for the charts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Moment {
    pub at: u64,
    pub hashprice: Option<f64>,
    /// The fleet's breakevens at this moment's power price: 10th, 50th and 90th percentiles.
    pub breakeven_p10: Option<f64>,
    pub breakeven_p50: Option<f64>,
    pub breakeven_p90: Option<f64>,
    /// Machines planned asleep, and the site's planned power.
    pub curtailed: usize,
    pub power_w: f64,
}

/// A change under way, for the pending-commands panel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pending {
    pub miner: String,
    pub want: Setting,
    pub phase: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct View {
    pub site: String,
    pub at: u64,
    pub hashprice: Option<f64>,
    pub power_price: Option<f64>,
    pub cap_w: Option<f64>,
    pub fleet: Vec<FleetRow>,
    pub pending: Vec<Pending>,
    pub history: Vec<Moment>,
}

/// The `q`-quantile of sorted `values` (nearest rank), `None` when there are none.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted.get(rank).copied()
}

/// The moment a plan describes.
pub fn moment(plan: &Plan) -> Moment {
    let mut breakevens: Vec<f64> = plan
        .decisions
        .iter()
        .filter_map(|d| d.breakeven.map(|b| b.0))
        .filter(|b| b.is_finite())
        .collect();
    breakevens.sort_by(f64::total_cmp);
    Moment {
        at: plan.at,
        hashprice: plan.hashprice.map(|h| h.0),
        breakeven_p10: quantile(&breakevens, 0.1),
        breakeven_p50: quantile(&breakevens, 0.5),
        breakeven_p90: quantile(&breakevens, 0.9),
        curtailed: plan
            .decisions
            .iter()
            .filter(|d| d.to == Setting::Sleep)
            .count(),
        power_w: plan.power.0,
    }
}

/// The history the charts draw: one moment per `every_s` at most, the last [`HISTORY`] of them.
#[derive(Debug, Clone, Default)]
pub struct History {
    moments: VecDeque<Moment>,
}

impl History {
    pub fn record(&mut self, moment: Moment, every_s: u64) {
        if let Some(last) = self.moments.back_mut()
            && moment.at < last.at + every_s
        {
            // Within the interval the newest reading stands for it.
            *last = Moment {
                at: last.at,
                ..moment
            };
            return;
        }
        if self.moments.len() == HISTORY {
            self.moments.pop_front();
        }
        self.moments.push_back(moment);
    }

    pub fn moments(&self) -> Vec<Moment> {
        self.moments.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::{Decision, Mode, Reason};
    use crate::units::{UsdPerPhDay, Watts};

    fn decision(id: &str, to: Setting, breakeven: Option<f64>) -> Decision {
        Decision {
            id: id.into(),
            from: Setting::Full,
            to,
            reason: Reason::SmallChange,
            at: 0,
            breakeven: breakeven.map(UsdPerPhDay),
        }
    }

    #[test]
    fn a_moment_is_the_plans_breakeven_spread_and_what_it_curtails() {
        let decisions: Vec<Decision> = (0..10)
            .map(|i| {
                let to = if i >= 7 {
                    Setting::Sleep
                } else {
                    Setting::Full
                };
                decision(&format!("m{i}"), to, Some(20.0 + i as f64))
            })
            .chain([decision("offline", Setting::Full, None)])
            .collect();
        let plan = Plan {
            at: 1_000,
            mode: Mode::Threshold,
            hashprice: Some(UsdPerPhDay(27.58)),
            cap: None,
            power: Watts(21_000.0),
            decisions,
        };
        let m = moment(&plan);
        assert_eq!(m.hashprice, Some(27.58));
        assert_eq!(
            (m.breakeven_p10, m.breakeven_p50, m.breakeven_p90),
            (Some(21.0), Some(25.0), Some(28.0))
        );
        assert_eq!(m.curtailed, 3);
        assert_eq!(m.power_w, 21_000.0);
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn history_keeps_one_moment_per_interval_and_a_bounded_length() {
        let at = |t: u64, curtailed: usize| Moment {
            at: t,
            hashprice: Some(30.0),
            breakeven_p10: None,
            breakeven_p50: None,
            breakeven_p90: None,
            curtailed,
            power_w: 0.0,
        };
        let mut history = History::default();
        history.record(at(100, 1), 5);
        history.record(at(102, 2), 5);
        history.record(at(105, 3), 5);
        let kept = history.moments();
        assert_eq!(kept.len(), 2);
        assert_eq!(
            (kept[0].at, kept[0].curtailed),
            (100, 2),
            "the newest within the interval"
        );
        for t in 0..(HISTORY as u64 + 10) {
            history.record(at(200 + 5 * t, 0), 5);
        }
        assert_eq!(history.moments().len(), HISTORY);
    }
}
