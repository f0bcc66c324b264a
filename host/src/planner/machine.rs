//! A machine as the planner sees it: what it runs at, what it can do (its full point and its
//! measured curve), and its switching history.

use serde::{Deserialize, Serialize};

use super::{Economics, Policy, Setting};
use crate::units::{JoulesPerTh, TerahashPerSecond, UsdPerDay, UsdPerPhDay, Watts};

/// One operating point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub watts: Watts,
    pub hashrate: TerahashPerSecond,
}

/// An operator's override, until a unix time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Manual {
    pub setting: Setting,
    pub until: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    pub id: String,
    pub online: bool,
    /// What it runs at now.
    pub setting: Setting,
    /// Its full operating point (nameplate, or its tuned point).
    pub full: Point,
    /// Points its tuner measured (any order); empty when it has none.
    #[serde(default)]
    pub curve: Vec<Point>,
    /// What telemetry says it does now.
    #[serde(default)]
    pub live: Option<Point>,
    /// Unix time of its last sleep or wake.
    #[serde(default)]
    pub last_switch_at: Option<u64>,
    /// Unix time of its last wake.
    #[serde(default)]
    pub last_wake_at: Option<u64>,
    /// In maintenance: never switched by the planner.
    #[serde(default)]
    pub exempt: bool,
    #[serde(default)]
    pub manual: Option<Manual>,
    /// Its last change failed or went unanswered: until this unix time the planner leaves it
    /// as it runs (and counts what it draws there) and plans the rest of the site around it.
    #[serde(default)]
    pub unheeded_until: Option<u64>,
    /// Costs of running it besides power (hosting, maintenance), per day.
    #[serde(default)]
    pub overhead: UsdPerDay,
}

impl Machine {
    /// A machine at `full` with its measured `curve`, as a fresh site sees it: online, running
    /// at full, no history, no override, nothing besides power to pay.
    pub fn new(id: &str, full: Point, curve: Vec<Point>) -> Self {
        Self {
            id: id.to_string(),
            online: true,
            setting: Setting::Full,
            full,
            curve,
            live: None,
            last_switch_at: None,
            last_wake_at: None,
            exempt: false,
            manual: None,
            unheeded_until: None,
            overhead: UsdPerDay(0.0),
        }
    }

    pub fn running(&self) -> bool {
        self.setting != Setting::Sleep
    }

    /// Its efficiency at full power: live when it is running at full and telemetry has it
    /// (silicon ages, rooms heat), else its full point's.
    pub fn efficiency(&self) -> JoulesPerTh {
        let live = self
            .live
            .filter(|_| self.setting == Setting::Full)
            .and_then(|p| JoulesPerTh::of(p.watts, p.hashrate));
        live.or_else(|| JoulesPerTh::of(self.full.watts, self.full.hashrate))
            .unwrap_or(JoulesPerTh(f64::INFINITY))
    }

    /// The hashprice at which it earns exactly its costs, running at full.
    pub fn breakeven(&self, economics: &Economics) -> UsdPerPhDay {
        let power = self.efficiency().cost_per_ph_day(economics.power_price).0;
        let petahashes = self.full.hashrate.petahashes();
        let overhead = if petahashes > 0.0 {
            self.overhead.0 / petahashes
        } else {
            f64::INFINITY
        };
        UsdPerPhDay((power + overhead) / (1.0 - economics.pool_fee).max(f64::EPSILON))
    }

    /// The watts it draws at `setting`, as the planner counts them against a cap.
    pub fn power_at(&self, setting: Setting) -> Watts {
        match setting {
            Setting::Sleep => Watts(0.0),
            Setting::Full => self.full.watts,
            Setting::PowerTarget(watts) => Watts(watts.0.min(self.full.watts.0)),
        }
    }

    /// Seconds before it may be switched on or off again, if it is inside its dwell time.
    pub fn dwell_remaining(&self, now: u64, policy: &Policy) -> Option<u64> {
        let dwell = if self.running() {
            policy.min_on_s
        } else {
            policy.min_off_s
        };
        remaining(self.last_switch_at, dwell, now)
    }

    /// Seconds before a restored machine may be curtailed for price again.
    pub fn cooldown_remaining(&self, now: u64, policy: &Policy) -> Option<u64> {
        remaining(self.last_wake_at, policy.restore_cooldown_s, now)
    }

    /// An override still in force.
    pub fn manual_at(&self, now: u64) -> Option<Manual> {
        self.manual.filter(|m| m.until > now)
    }
}

fn remaining(since: Option<u64>, length: u64, now: u64) -> Option<u64> {
    let end = since?.saturating_add(length);
    (end > now).then(|| end - now)
}
