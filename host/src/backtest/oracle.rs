//! The perfect-foresight oracle: the best schedule there is under the planner's own dwell rules,
//! knowing every hashprice, power price and cap in advance.
//!
//! Without a cap the machines are independent, and each one's best schedule is a dynamic
//! programme over the steps: it is on (at the best of its measured points, which it may change
//! freely) or asleep, and it may switch only once it has been on for `min_on_s` (and the restore
//! cooldown) or off for `min_off_s`; a wake costs its ramp. That is exact: no schedule under those
//! rules earns more. A cap couples the machines at the steps it binds; there the oracle prices
//! each watt (a Lagrange multiplier per capped step, started by bisection where the machines fit
//! at that step alone, then corrected by subgradient steps), solves every machine alone at those
//! prices, and makes each candidate schedule fit the cap by sleeping the machines that earn least
//! per watt — keeping the best that fits. The cap then wins over dwell, as it does in the
//! planner.

use super::accounting::{Value, value};
use super::{Ledger, Outcome, Scenario, Step};
use crate::planner::Setting;
use crate::units::Watts;

/// Subgradient rounds when a cap binds, at most…
const ROUNDS: usize = 24;
/// …ending once this many in a row found nothing better.
const PATIENCE: usize = 6;

/// A machine's choices: asleep, or one of its hull's vertices.
#[derive(Debug, Clone)]
struct Options {
    /// (W, TH/s) of each vertex.
    points: Vec<(f64, f64)>,
}

/// Steps a machine must stay as it is after a switch, by what it switched to.
#[derive(Debug, Clone, Copy)]
struct Dwell {
    on: usize,
    off: usize,
}

impl Dwell {
    fn longest(&self) -> usize {
        self.on.max(self.off)
    }
}

/// The oracle's outcome over `steps`.
pub fn run(scenario: &Scenario, steps: &[Step]) -> Outcome {
    evaluate(scenario, steps, &schedule(scenario, steps))
}

/// A machine's best on-point at each step: (gain, vertex) staying on, and having just woken.
#[derive(Debug, Clone, Default)]
struct Gains {
    on: Vec<(f64, Option<usize>)>,
    wake: Vec<(f64, Option<usize>)>,
}

/// The best schedule it finds: each step's setting for every machine.
pub fn schedule(scenario: &Scenario, steps: &[Step]) -> Vec<Vec<Setting>> {
    let options: Vec<Options> = scenario
        .machines
        .iter()
        .map(|m| Options {
            points: super::hull_of(m).into_iter().skip(1).collect(),
        })
        .collect();
    let step_s = scenario.step_s.max(1);
    let steps_for = |s: u64| s.div_ceil(step_s) as usize;
    let dwell = Dwell {
        on: steps_for(
            scenario
                .policy
                .min_on_s
                .max(scenario.policy.restore_cooldown_s),
        ),
        off: steps_for(scenario.policy.min_off_s),
    };
    let capped: Vec<usize> = (0..steps.len())
        .filter(|&t| steps[t].cap.is_some())
        .collect();
    let mut prices = first_prices(scenario, steps, &capped, &options);
    // Gains at every step once; only the capped steps' are worked out again as their watts are
    // priced.
    let mut gains: Vec<Gains> = scenario
        .machines
        .iter()
        .zip(&options)
        .map(|(machine, opts)| {
            let point = |t, woke| best_point(scenario, &steps[t], machine, opts, 0.0, woke);
            Gains {
                on: (0..steps.len()).map(|t| point(t, false)).collect(),
                wake: (0..steps.len()).map(|t| point(t, true)).collect(),
            }
        })
        .collect();
    let mut table = Vec::new();
    let mut best: Option<(f64, Vec<Vec<Setting>>)> = None;
    let mut since_better = 0;
    let rounds = if capped.is_empty() { 1 } else { ROUNDS };
    for round in 0..rounds {
        for ((machine, opts), gains) in scenario.machines.iter().zip(&options).zip(&mut gains) {
            for &t in &capped {
                let point = |woke| best_point(scenario, &steps[t], machine, opts, prices[t], woke);
                gains.on[t] = point(false);
                gains.wake[t] = point(true);
            }
        }
        let mut schedule: Vec<Vec<Setting>> = (0..steps.len())
            .map(|_| Vec::with_capacity(options.len()))
            .collect();
        for ((machine, opts), gains) in scenario.machines.iter().zip(&options).zip(&gains) {
            let choices = best_schedule(machine, opts, gains, dwell, &mut table);
            for (t, choice) in choices.into_iter().enumerate() {
                schedule[t].push(choice);
            }
        }
        // How far over each capped step is, before the schedule is made to fit.
        let excess: Vec<(usize, f64)> = capped
            .iter()
            .filter_map(|&t| {
                let cap = steps[t].cap?.0;
                let power = super::site_power(&scenario.machines, &schedule[t]);
                Some((t, (power - cap) / cap.max(1.0)))
            })
            .collect();
        fit_under_caps(scenario, steps, &mut schedule);
        let profit = evaluate(scenario, steps, &schedule).profit_usd;
        if best.as_ref().is_none_or(|(p, _)| profit > *p + 1e-9) {
            best = Some((profit, schedule));
            since_better = 0;
        } else {
            since_better += 1;
            if since_better >= PATIENCE {
                break;
            }
        }
        // Watts at a step over its cap get dearer, under it cheaper (never below free).
        let size = 0.05 / (1.0 + round as f64 / 3.0);
        for (t, over) in excess {
            prices[t] = f64::max(0.0, prices[t] + size * over);
        }
    }
    best.map(|(_, s)| s).unwrap_or_default()
}

/// Each capped step's price of a watt to start the rounds from: the least at which the machines,
/// each choosing its best point (or sleep) at that step alone, fit under the cap — found by
/// bisection, since what they want only falls as the price rises. The rounds then only correct
/// for what a step alone cannot see (dwell, ramps).
fn first_prices(
    scenario: &Scenario,
    steps: &[Step],
    capped: &[usize],
    options: &[Options],
) -> Vec<f64> {
    let mut prices = vec![0.0; steps.len()];
    for &t in capped {
        let step = &steps[t];
        let Some(cap) = step.cap else { continue };
        let wanted = |price: f64| -> f64 {
            scenario
                .machines
                .iter()
                .zip(options)
                .map(|(machine, opts)| {
                    let (gain, vertex) = best_point(scenario, step, machine, opts, price, false);
                    match vertex {
                        Some(i) if gain > 0.0 => opts.points[i].0,
                        _ => 0.0,
                    }
                })
                .sum()
        };
        if wanted(0.0) <= cap.0 {
            continue;
        }
        let (mut low, mut high) = (0.0, 1.0);
        while wanted(high) > cap.0 && high < 1e6 {
            (low, high) = (high, high * 2.0);
        }
        for _ in 0..40 {
            let middle = (low + high) / 2.0;
            if wanted(middle) > cap.0 {
                low = middle;
            } else {
                high = middle;
            }
        }
        prices[t] = high;
    }
    prices
}

/// The schedule's outcome, by the same ledger every strategy is counted with.
fn evaluate(scenario: &Scenario, steps: &[Step], schedule: &[Vec<Setting>]) -> Outcome {
    let mut ledger = Ledger::new(scenario);
    for (step, settings) in steps.iter().zip(schedule) {
        ledger.record(step, settings);
    }
    ledger.outcome("oracle")
}

/// The best of a machine's points at `step` — (gain, vertex) — with each watt charged `price`
/// $/kWh on top of its power price; having just woken, or not.
fn best_point(
    scenario: &Scenario,
    step: &Step,
    machine: &crate::planner::Machine,
    options: &Options,
    price: f64,
    woke: bool,
) -> (f64, Option<usize>) {
    let mut best = (f64::MIN, None);
    for (i, &(watts, hashrate)) in options.points.iter().enumerate() {
        let Value { profit, .. } = value(scenario, step, machine, watts, hashrate, woke);
        let gain = profit - price * watts / 1000.0 * step.seconds as f64 / 3600.0;
        if best.1.is_none() || gain > best.0 {
            best = (gain, Some(i));
        }
    }
    best
}

/// One machine's best settings, step by step, for its `gains`. `table` is scratch, reused
/// across machines and rounds.
fn best_schedule(
    machine: &crate::planner::Machine,
    options: &Options,
    gains: &Gains,
    dwell: Dwell,
    table: &mut Vec<f64>,
) -> Vec<Setting> {
    let longest = dwell.longest();
    let states = longest + 1;
    let steps = gains.on.len();
    // future(t, on, k): the most the machine can still make from step t on, in state (on, k):
    // on or off, k steps since its last switch (capped at the longest dwell).
    table.clear();
    table.resize((steps + 1) * 2 * states, 0.0);
    let at = |t: usize, on: bool, k: usize| (t * 2 + usize::from(on)) * states + k;
    let next = |k: usize| (k + 1).min(longest);
    let gain = |g: &(f64, Option<usize>)| if g.1.is_some() { g.0 } else { f64::MIN / 4.0 };
    for t in (0..steps).rev() {
        for k in 0..states {
            let stay_on = gain(&gains.on[t]) + table[at(t + 1, true, next(k))];
            let off = table[at(t + 1, false, next(0))];
            table[at(t, true, k)] = if k >= dwell.on {
                stay_on.max(off)
            } else {
                stay_on
            };
            let stay_off = table[at(t + 1, false, next(k))];
            let wake = gain(&gains.wake[t]) + table[at(t + 1, true, next(0))];
            table[at(t, false, k)] = if k >= dwell.off {
                stay_off.max(wake)
            } else {
                stay_off
            };
        }
    }
    // Forward, taking the choice that achieves each value; ties keep the machine as it is.
    let setting_of = |vertex: Option<usize>| match vertex {
        Some(i) if options.points[i].0 >= machine.full.watts.0 => Setting::Full,
        Some(i) => Setting::PowerTarget(Watts(options.points[i].0)),
        None => Setting::Sleep,
    };
    let mut settings = Vec::with_capacity(steps);
    let (mut on, mut k) = (machine.running(), longest);
    for t in 0..steps {
        if on {
            let stay_on = gain(&gains.on[t]) + table[at(t + 1, true, next(k))];
            let off = table[at(t + 1, false, next(0))];
            if k >= dwell.on && off > stay_on {
                (on, k) = (false, next(0));
                settings.push(Setting::Sleep);
            } else {
                k = next(k);
                settings.push(setting_of(gains.on[t].1));
            }
        } else {
            let stay_off = table[at(t + 1, false, next(k))];
            let wake = gain(&gains.wake[t]) + table[at(t + 1, true, next(0))];
            if k >= dwell.off && wake > stay_off {
                (on, k) = (true, next(0));
                settings.push(setting_of(gains.wake[t].1));
            } else {
                k = next(k);
                settings.push(Setting::Sleep);
            }
        }
    }
    settings
}

/// Makes every capped step fit: the running machines that earn least per watt at that step
/// sleep first.
fn fit_under_caps(scenario: &Scenario, steps: &[Step], schedule: &mut [Vec<Setting>]) {
    for (step, settings) in steps.iter().zip(schedule.iter_mut()) {
        let Some(cap) = step.cap else { continue };
        let machines = &scenario.machines;
        if super::site_power(machines, settings) <= cap.0 {
            continue;
        }
        let mut order: Vec<(f64, usize)> = machines
            .iter()
            .zip(settings.iter())
            .enumerate()
            .filter(|(_, (_, s))| **s != Setting::Sleep)
            .map(|(i, (m, s))| {
                let (watts, hashrate) = super::operating_point(m, &super::hull_of(m), *s);
                let earned = value(scenario, step, m, watts, hashrate, false).profit;
                (earned / watts.max(f64::EPSILON), i)
            })
            .collect();
        order.sort_by(|a, b| a.0.total_cmp(&b.0));
        super::sleep_until_under(machines, order.into_iter().map(|(_, i)| i), settings, cap);
    }
}
