//! The curtailment planner: pure and deterministic. From the fleet as the host knows it, the
//! market, the tariff and the site's cap, it decides each machine's setting — full power, a power
//! target, or asleep — with a reason a person can read, and when each change should go out
//! (staggered batches, least efficient first down, most efficient first up).
//!
//! Two modes ([`Mode`]): *threshold* sleeps the machines under water and wakes them when they are
//! above it again, with a hysteresis band around each machine's breakeven; *optimise* spends the
//! site's watts where they earn most, choosing a power target per machine from its measured
//! curve. Both honour minimum on/off dwell times, the cooldown after a restore, maintenance
//! exemptions and manual overrides — except that a site cap always wins: a contract limit or a
//! grid signal is never exceeded to save a dwell time or to keep a machine overridden to run.

mod batches;
mod machine;
mod optimise;
mod order;
mod threshold;

use serde::{Deserialize, Serialize};

use crate::units::{TerahashPerSecond, UsdPerKwh, UsdPerPhDay, Watts};

pub use machine::{Machine, Manual, Point};
pub use optimise::hull;

/// What a machine runs at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    Sleep,
    /// Its full (stock or tuned) operating point.
    Full,
    PowerTarget(Watts),
}

/// A setting in the operator's words: `sleep`, `full`, or the power target in watts.
impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Padded, so that tables can align it.
        match self {
            Setting::Sleep => f.pad("sleep"),
            Setting::Full => f.pad("full"),
            Setting::PowerTarget(w) => f.pad(&format!("{:.0} W", w.0)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Threshold,
    Optimise,
}

/// What the site does when the market data has expired (no plausible reading within its bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SafePolicy {
    /// Leave every machine as it is.
    Keep,
    RunAll,
    SleepAll,
}

/// How a site is run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    pub mode: Mode,
    /// Hysteresis: a running machine sleeps only when the hashprice is this fraction below its
    /// breakeven, and a sleeping one wakes only this far above it.
    pub band: f64,
    /// A machine is not switched again within these seconds of its last switch (a site cap
    /// overrides them).
    pub min_on_s: u64,
    pub min_off_s: u64,
    /// After a machine is restored it is not curtailed for price within this time.
    pub restore_cooldown_s: u64,
    /// Changes go out this many at a time, one batch per interval.
    pub batch_size: usize,
    pub batch_interval_s: u64,
    pub safe: SafePolicy,
    /// Optimise: a power target moves only when the move is at least this share of the
    /// machine's full power (no churn for a few watts).
    pub min_change: f64,
}

impl Default for Policy {
    fn default() -> Self {
        // The public fleet manager's curtailment practice (economics reference): OFF periods of
        // at least 10 minutes, a restore batch every 30 s, a 600 s cooldown.
        Self {
            mode: Mode::Threshold,
            band: 0.05,
            min_on_s: 600,
            min_off_s: 600,
            restore_cooldown_s: 600,
            batch_size: 50,
            batch_interval_s: 30,
            safe: SafePolicy::Keep,
            min_change: 0.05,
        }
    }
}

/// The market and the site's costs at the moment of planning.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Economics {
    pub hashprice: UsdPerPhDay,
    pub power_price: UsdPerKwh,
    /// The pool's cut, as a fraction.
    pub pool_fee: f64,
}

/// Everything a plan is made from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Unix seconds.
    pub now: u64,
    /// `None` when the market data has expired: the safe policy applies.
    pub economics: Option<Economics>,
    /// The site's power cap (contract or grid), if any.
    pub cap: Option<Watts>,
    pub policy: &'a Policy,
    pub machines: &'a [Machine],
}

/// Why a machine gets its setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum Reason {
    Offline,
    Exempt,
    Manual {
        until: u64,
    },
    MarketExpired {
        policy: SafePolicy,
    },
    /// Under water past the band.
    UnderWater {
        hashprice: UsdPerPhDay,
        breakeven: UsdPerPhDay,
    },
    /// Above water past the band.
    AboveWater {
        hashprice: UsdPerPhDay,
        breakeven: UsdPerPhDay,
    },
    /// Inside the band: no reason to switch.
    InsideBand {
        hashprice: UsdPerPhDay,
        breakeven: UsdPerPhDay,
    },
    /// Would switch, but switched too recently.
    Dwell {
        remaining_s: u64,
    },
    /// Restored too recently to be curtailed for price.
    Cooldown {
        remaining_s: u64,
    },
    /// Slept to bring the site under its cap, least efficient first.
    OverCap {
        cap: Watts,
    },
    /// Would wake, but the cap has no room.
    NoRoomUnderCap {
        cap: Watts,
    },
    /// Overridden by hand to run, but the site is over its cap with everything else asleep: a
    /// cap is a contract, an override an operator's preference.
    CapBeatsManual {
        cap: Watts,
        until: u64,
    },
    /// Optimise: the watts its curve earns most with, or asleep when no watt earns.
    Optimised {
        watts: Watts,
        hashrate: TerahashPerSecond,
    },
    Unprofitable {
        hashprice: UsdPerPhDay,
        breakeven: UsdPerPhDay,
    },
    /// Optimise: within the no-churn margin of what it runs at.
    SmallChange,
    /// Its last change failed or went unanswered: left as it runs, planned around, retried then.
    Unheeded {
        until: u64,
    },
}

impl core::fmt::Display for Reason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Reason::Offline => write!(f, "offline: gets its target when it returns"),
            Reason::Exempt => write!(f, "exempt (maintenance): left as it is"),
            Reason::Manual { until } => write!(f, "manual override until {until}"),
            Reason::MarketExpired { policy } => {
                write!(f, "no current market data: safe policy {policy:?}")
            }
            Reason::UnderWater {
                hashprice,
                breakeven,
            } => write!(
                f,
                "under water: hashprice {hashprice} < breakeven {breakeven}"
            ),
            Reason::AboveWater {
                hashprice,
                breakeven,
            } => write!(
                f,
                "profitable: hashprice {hashprice} > breakeven {breakeven}"
            ),
            Reason::InsideBand {
                hashprice,
                breakeven,
            } => write!(
                f,
                "inside the hysteresis band: hashprice {hashprice}, breakeven {breakeven}"
            ),
            Reason::Dwell { remaining_s } => {
                write!(f, "switched recently: may switch again in {remaining_s} s")
            }
            Reason::Cooldown { remaining_s } => {
                write!(f, "restored recently: cooldown ends in {remaining_s} s")
            }
            Reason::OverCap { cap } => {
                write!(f, "site over its cap of {cap}: least efficient first")
            }
            Reason::NoRoomUnderCap { cap } => write!(f, "no room under the site cap of {cap}"),
            Reason::CapBeatsManual { cap, until } => write!(
                f,
                "the site cap of {cap} beats the manual override until {until}"
            ),
            Reason::Optimised { watts, hashrate } => {
                write!(f, "optimised: {watts} for {hashrate}")
            }
            Reason::Unprofitable {
                hashprice,
                breakeven,
            } => write!(
                f,
                "no operating point earns: hashprice {hashprice}, breakeven at full power {breakeven}"
            ),
            Reason::SmallChange => write!(f, "within the no-churn margin: left as it is"),
            Reason::Unheeded { until } => write!(
                f,
                "its last change was not carried out: planned around as it runs, retried at {until}"
            ),
        }
    }
}

/// One machine's part of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub id: String,
    pub from: Setting,
    pub to: Setting,
    pub reason: Reason,
    /// When the change should go out (unix s): staggered batches.
    pub at: u64,
    /// Its breakeven hashprice at the current power price (and its efficiency).
    pub breakeven: Option<UsdPerPhDay>,
}

impl Decision {
    pub fn changes(&self) -> bool {
        self.from != self.to
    }
}

/// A plan: every machine's decision, in the machines' order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub at: u64,
    pub mode: Mode,
    pub hashprice: Option<UsdPerPhDay>,
    pub cap: Option<Watts>,
    /// The site's power once every change is made (online machines).
    pub power: Watts,
    pub decisions: Vec<Decision>,
}

impl Plan {
    pub fn changes(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| d.changes())
    }
}

/// The plan for `inputs`.
pub fn plan(inputs: &Inputs<'_>) -> Plan {
    let order = order::EfficiencyOrder::new(inputs.machines);
    let mut decisions = match (inputs.policy.mode, inputs.economics) {
        (_, None) => threshold::safe_policy(inputs, &order),
        (Mode::Threshold, Some(economics)) => threshold::plan(inputs, &order, &economics),
        (Mode::Optimise, Some(economics)) => optimise::plan(inputs, &order, &economics),
    };
    threshold::cap_beats_manual(inputs, &order, &mut decisions);
    batches::stagger(inputs, &order, &mut decisions);
    let power = threshold::planned_power(inputs.machines, &decisions);
    Plan {
        at: inputs.now,
        mode: inputs.policy.mode,
        hashprice: inputs.economics.map(|e| e.hashprice),
        cap: inputs.cap,
        power,
        decisions,
    }
}

#[cfg(test)]
mod tests;
