//! The planner replayed over a market, a tariff and a grid's caps for a fleet, against the
//! strategies an operator could run instead: *never* curtail, a *naive* threshold (sleep whenever
//! the hashprice is under a machine's breakeven, no hysteresis or dwell), hashwarden's
//! *threshold* and *optimise* modes (the real `planner::plan`, fed back its own decisions), and
//! the perfect-foresight *oracle* (`oracle.rs`): the best schedule under the same dwell
//! constraints, knowing every price in advance.
//!
//! Every strategy obeys the grid (a cap in force sleeps the least efficient machines first): the
//! grid is not optional, only the response to price is. Time moves in steps; a setting holds for
//! its step. A machine that wakes earns nothing for its first `ramp_s` while drawing power — the
//! price of switching, which is what flapping costs.

mod accounting;
pub mod cli;
pub mod fleet;
pub mod oracle;
pub mod scenario;

use serde::Serialize;

use crate::planner::{Economics, Inputs, Machine, Mode, Policy, Setting, plan};
use crate::tariff::Tariff;
use crate::units::{UsdPerKwh, UsdPerPhDay, Watts};

pub use accounting::{Ledger, hull_of, operating_point};

/// A cap the grid imposes for a while (a demand-response event, a 4CP peak).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CapWindow {
    pub from: u64,
    pub to: u64,
    pub cap: Watts,
}

/// Everything a backtest runs on.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub start: u64,
    pub end: u64,
    pub step_s: u64,
    /// Hashprice readings, oldest first; each holds until the next.
    pub market: Vec<(u64, UsdPerPhDay)>,
    pub tariff: Tariff,
    /// Real-time power prices over the tariff, oldest first; each holds until the next.
    pub power: Vec<(u64, UsdPerKwh)>,
    pub pool_fee: f64,
    /// The site's contract limit, always in force.
    pub site_cap: Option<Watts>,
    pub grid: Vec<CapWindow>,
    pub policy: Policy,
    pub machines: Vec<Machine>,
    /// Seconds after a wake that earn nothing.
    pub ramp_s: u64,
}

/// What one step looks like to every strategy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub at: u64,
    pub seconds: u64,
    pub hashprice: UsdPerPhDay,
    pub power_price: UsdPerKwh,
    pub cap: Option<Watts>,
}

/// How a strategy did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub name: &'static str,
    pub profit_usd: f64,
    pub revenue_usd: f64,
    pub energy_kwh: f64,
    /// Sleeps and wakes, over every machine.
    pub switches: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub strategies: Vec<Outcome>,
    pub steps: usize,
    pub machines: usize,
}

impl Report {
    pub fn get(&self, name: &str) -> Option<&Outcome> {
        self.strategies.iter().find(|o| o.name == name)
    }
}

impl Scenario {
    /// The steps from start to end, each with the prices and the cap in force at its start.
    pub fn steps(&self) -> Vec<Step> {
        let mut steps = Vec::new();
        let step_s = self.step_s.max(1);
        let mut at = self.start;
        while at < self.end {
            let seconds = step_s.min(self.end - at);
            let Some(hashprice) = latest(&self.market, at) else {
                at += seconds;
                continue;
            };
            let power_price = latest(&self.power, at).unwrap_or_else(|| self.tariff.price_at(at));
            let grid = self
                .grid
                .iter()
                .filter(|w| w.from <= at && at < w.to)
                .map(|w| w.cap.0)
                .fold(None, |cap: Option<f64>, w| {
                    Some(cap.map_or(w, |c| c.min(w)))
                });
            let cap = match (self.site_cap.map(|c| c.0), grid) {
                (Some(a), Some(b)) => Some(Watts(a.min(b))),
                (a, b) => a.or(b).map(Watts),
            };
            steps.push(Step {
                at,
                seconds,
                hashprice,
                power_price,
                cap,
            });
            at += seconds;
        }
        steps
    }

    fn economics(&self, step: &Step) -> Economics {
        Economics {
            hashprice: step.hashprice,
            power_price: step.power_price,
            pool_fee: self.pool_fee,
        }
    }
}

/// The value in force at `at`: the last reading at or before it.
fn latest<T: Copy>(series: &[(u64, T)], at: u64) -> Option<T> {
    let after = series.partition_point(|(t, _)| *t <= at);
    after.checked_sub(1).map(|i| series[i].1)
}

/// The strategies a backtest compares, in the report's order.
pub const STRATEGIES: [&str; 5] = ["never", "naive", "threshold", "optimise", "oracle"];

/// Runs every strategy over `scenario`.
pub fn run(scenario: &Scenario) -> Report {
    let steps = scenario.steps();
    Report {
        strategies: STRATEGIES
            .iter()
            .filter_map(|name| strategy(scenario, &steps, name))
            .collect(),
        steps: steps.len(),
        machines: scenario.machines.len(),
    }
}

/// One strategy (of [`STRATEGIES`]) over `steps`; `None` for a name that is none of them.
pub fn strategy(scenario: &Scenario, steps: &[Step], name: &str) -> Option<Outcome> {
    Some(match name {
        "never" => replay(scenario, steps, "never", |_, _, _| Setting::Full),
        "naive" => replay(scenario, steps, "naive", |machine, economics, _| {
            if economics.hashprice.0 >= machine.breakeven(economics).0 {
                Setting::Full
            } else {
                Setting::Sleep
            }
        }),
        "threshold" => planned(scenario, steps, "threshold", Mode::Threshold),
        "optimise" => planned(scenario, steps, "optimise", Mode::Optimise),
        "oracle" => oracle::run(scenario, steps),
        _ => return None,
    })
}

/// A strategy that decides each machine alone from the step's economics; the cap is then
/// enforced least efficient first.
fn replay(
    scenario: &Scenario,
    steps: &[Step],
    name: &'static str,
    decide: impl Fn(&Machine, &Economics, &Step) -> Setting,
) -> Outcome {
    let mut ledger = Ledger::new(scenario);
    let order = efficiency_order(&scenario.machines);
    for step in steps {
        let economics = scenario.economics(step);
        let mut settings: Vec<Setting> = scenario
            .machines
            .iter()
            .map(|m| decide(m, &economics, step))
            .collect();
        if let Some(cap) = step.cap {
            sleep_until_under(
                &scenario.machines,
                order.iter().copied(),
                &mut settings,
                cap,
            );
        }
        ledger.record(step, &settings);
    }
    ledger.outcome(name)
}

/// Machines' indices, least efficient first.
fn efficiency_order(machines: &[Machine]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..machines.len()).collect();
    order.sort_by(|&a, &b| {
        machines[b]
            .efficiency()
            .0
            .total_cmp(&machines[a].efficiency().0)
    });
    order
}

/// The site's power, W, with each machine at its setting (as the planner counts it against a
/// cap).
pub fn site_power(machines: &[Machine], settings: &[Setting]) -> f64 {
    machines
        .iter()
        .zip(settings)
        .map(|(m, s)| m.power_at(*s).0)
        .sum()
}

/// Sleeps machines in `order` until the site is under `cap`: how every strategy, the oracle's
/// candidates included, obeys the grid (each brings its own order).
fn sleep_until_under(
    machines: &[Machine],
    order: impl IntoIterator<Item = usize>,
    settings: &mut [Setting],
    cap: Watts,
) {
    let mut power = site_power(machines, settings);
    for i in order {
        if power <= cap.0 {
            break;
        }
        power -= machines[i].power_at(settings[i]).0;
        settings[i] = Setting::Sleep;
    }
}

/// hashwarden's planner in `mode`, each step's plan applied at once and fed back as the fleet's
/// state (settings, last switch, last wake) for the next.
fn planned(scenario: &Scenario, steps: &[Step], name: &'static str, mode: Mode) -> Outcome {
    let policy = Policy {
        mode,
        ..scenario.policy
    };
    let mut machines = scenario.machines.clone();
    let mut ledger = Ledger::new(scenario);
    for step in steps {
        let economics = scenario.economics(step);
        let plan = plan(&Inputs {
            now: step.at,
            economics: Some(economics),
            cap: step.cap,
            policy: &policy,
            machines: &machines,
        });
        for (machine, decision) in machines.iter_mut().zip(&plan.decisions) {
            let was_running = machine.running();
            machine.setting = decision.to;
            if machine.running() != was_running {
                machine.last_switch_at = Some(step.at);
                if machine.running() {
                    machine.last_wake_at = Some(step.at);
                }
            }
        }
        let settings: Vec<Setting> = machines.iter().map(|m| m.setting).collect();
        ledger.record(step, &settings);
    }
    ledger.outcome(name)
}

#[cfg(test)]
mod tests;
