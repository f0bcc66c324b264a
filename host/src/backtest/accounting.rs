//! What a schedule earns: each machine's hash rate and power at its setting, revenue at the
//! hashprice less the pool's cut, energy at the power price, overheads, and the ramp a wake
//! costs.

use super::{Outcome, Scenario, Step};
use crate::planner::{Machine, Setting, hull};

/// A machine's upper hull from the origin, as the optimiser plans with: (W, TH/s) vertices,
/// the origin first.
pub fn hull_of(machine: &Machine) -> Vec<(f64, f64)> {
    let (mut scratch, mut vertices) = (Vec::new(), Vec::new());
    hull(machine, &mut scratch, &mut vertices);
    vertices
}

/// The watts and TH/s a machine runs at under `setting`: a power target lands on its measured
/// curve (`vertices`, its hull, interpolated between points).
pub fn operating_point(machine: &Machine, vertices: &[(f64, f64)], setting: Setting) -> (f64, f64) {
    match setting {
        Setting::Sleep => (0.0, 0.0),
        Setting::Full => (machine.full.watts.0, machine.full.hashrate.0),
        Setting::PowerTarget(target) => {
            let watts = target.0.clamp(0.0, machine.full.watts.0);
            let hashrate = vertices
                .windows(2)
                .find(|pair| watts <= pair[1].0)
                .map_or_else(
                    || vertices.last().map_or(0.0, |v| v.1),
                    |pair| {
                        let ((w0, h0), (w1, h1)) = (pair[0], pair[1]);
                        h0 + (h1 - h0) * (watts - w0) / (w1 - w0).max(f64::EPSILON)
                    },
                );
            (watts, hashrate)
        }
    }
}

/// A strategy's running totals.
#[derive(Debug, Clone)]
pub struct Ledger<'a> {
    scenario: &'a Scenario,
    /// Each machine's hull, worked out once.
    hulls: Vec<Vec<(f64, f64)>>,
    running: Vec<bool>,
    profit: f64,
    revenue: f64,
    energy_kwh: f64,
    switches: u64,
}

impl<'a> Ledger<'a> {
    pub fn new(scenario: &'a Scenario) -> Self {
        Self {
            scenario,
            hulls: scenario.machines.iter().map(hull_of).collect(),
            running: scenario.machines.iter().map(Machine::running).collect(),
            profit: 0.0,
            revenue: 0.0,
            energy_kwh: 0.0,
            switches: 0,
        }
    }

    /// One step at `settings` (by machine).
    pub fn record(&mut self, step: &Step, settings: &[Setting]) {
        for (((machine, vertices), setting), running) in self
            .scenario
            .machines
            .iter()
            .zip(&self.hulls)
            .zip(settings)
            .zip(self.running.iter_mut())
        {
            let now_running = *setting != Setting::Sleep;
            let woke = now_running && !*running;
            if now_running != *running {
                self.switches += 1;
                *running = now_running;
            }
            let (watts, hashrate) = operating_point(machine, vertices, *setting);
            let value = value(self.scenario, step, machine, watts, hashrate, woke);
            self.profit += value.profit;
            self.revenue += value.revenue;
            self.energy_kwh += value.energy_kwh;
        }
    }

    pub fn outcome(&self, name: &'static str) -> Outcome {
        Outcome {
            name,
            profit_usd: self.profit,
            revenue_usd: self.revenue,
            energy_kwh: self.energy_kwh,
            switches: self.switches,
        }
    }
}

/// One machine's step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Value {
    pub profit: f64,
    pub revenue: f64,
    pub energy_kwh: f64,
}

/// What `machine` makes over `step` at `watts` and `hashrate`, having just woken or not.
pub fn value(
    scenario: &Scenario,
    step: &Step,
    machine: &Machine,
    watts: f64,
    hashrate: f64,
    woke: bool,
) -> Value {
    if watts <= 0.0 {
        return Value {
            profit: 0.0,
            revenue: 0.0,
            energy_kwh: 0.0,
        };
    }
    let seconds = step.seconds as f64;
    let earning = if woke {
        (seconds - scenario.ramp_s as f64).max(0.0)
    } else {
        seconds
    };
    let revenue =
        hashrate / 1000.0 * step.hashprice.0 * (1.0 - scenario.pool_fee) * earning / 86_400.0;
    let energy_kwh = watts / 1000.0 * seconds / 3600.0;
    let overhead = machine.overhead.0 * seconds / 86_400.0;
    Value {
        profit: revenue - energy_kwh * step.power_price.0 - overhead,
        revenue,
        energy_kwh,
    }
}
