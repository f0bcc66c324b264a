//! The fleet on Prometheus `/metrics`: the market, the breakeven distribution, what the plan
//! curtails, and how fast miners answer commands.

use std::collections::VecDeque;

use cli_common::prometheus::Exposition;

use crate::planner::{Plan, Setting};

/// How many command round trips the latency histogram remembers.
const LATENCIES: usize = 10_000;
/// Breakevens, $/PH/day.
const BREAKEVEN_BUCKETS: [f64; 10] = [20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 60.0, 80.0, 100.0];
/// Publish → final ack, seconds.
const LATENCY_BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

/// What the agent counts over its run: one set, which the end-of-run summary and `/metrics`
/// both read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub plans: u64,
    pub commands_sent: u64,
    pub verified: u64,
    pub failed: u64,
    pub unresponsive: u64,
    pub refused_messages: u64,
}

#[derive(Debug, Default, Clone)]
pub struct FleetMetrics {
    pub hashprice: Option<f64>,
    pub power_price: Option<f64>,
    pub cap_w: Option<f64>,
    pub planned_power_w: f64,
    /// Full power of the machines the plan sleeps or holds below full, less what they draw.
    pub curtailed_power_w: f64,
    pub targets: [(&'static str, usize); 3],
    pub online: usize,
    pub machines: usize,
    /// Miners heard of but not listened to: not enrolled (`hashwarden enrolment`).
    pub unenrolled: usize,
    pub breakevens: Vec<f64>,
    latencies: VecDeque<f64>,
}

impl FleetMetrics {
    /// What `plan` (made for `machines`) shows.
    pub fn plan(
        &mut self,
        plan: &Plan,
        machines: &[crate::planner::Machine],
        power_price: Option<f64>,
    ) {
        self.hashprice = plan.hashprice.map(|h| h.0);
        self.power_price = power_price;
        self.cap_w = plan.cap.map(|c| c.0);
        self.planned_power_w = plan.power.0;
        self.machines = machines.len();
        self.online = machines.iter().filter(|m| m.online).count();
        let mut targets = [("full", 0), ("power_target", 0), ("sleep", 0)];
        self.curtailed_power_w = 0.0;
        for (machine, decision) in machines.iter().zip(&plan.decisions) {
            let slot = match decision.to {
                Setting::Full => 0,
                Setting::PowerTarget(_) => 1,
                Setting::Sleep => 2,
            };
            targets[slot].1 += 1;
            self.curtailed_power_w += machine.full.watts.0 - machine.power_at(decision.to).0;
        }
        self.targets = targets;
        self.breakevens = plan
            .decisions
            .iter()
            .filter_map(|d| d.breakeven.map(|b| b.0))
            .filter(|b| b.is_finite())
            .collect();
    }

    /// A command's publish-to-final-ack time.
    pub fn latency(&mut self, seconds: f64) {
        if self.latencies.len() == LATENCIES {
            self.latencies.pop_front();
        }
        self.latencies.push_back(seconds);
    }

    pub fn render(&self, counters: &Counters) -> String {
        let mut out = Exposition::new();
        let gauge = |out: &mut Exposition, name: &str, help: &str, value: Option<f64>| {
            out.family(name, "gauge", help);
            if let Some(value) = value {
                out.sample(name, "", value);
            }
        };
        gauge(
            &mut out,
            "hashwarden_hashprice_usd_per_ph_day",
            "The hashprice the last plan used (absent when market data has expired).",
            self.hashprice,
        );
        gauge(
            &mut out,
            "hashwarden_power_price_usd_per_kwh",
            "The site's power price now.",
            self.power_price,
        );
        gauge(
            &mut out,
            "hashwarden_site_cap_watts",
            "The site's power cap in force.",
            self.cap_w,
        );
        gauge(
            &mut out,
            "hashwarden_planned_power_watts",
            "The site's power once the plan is carried out.",
            Some(self.planned_power_w),
        );
        gauge(
            &mut out,
            "hashwarden_curtailed_power_watts",
            "Full power the plan does not spend: machines asleep or below full.",
            Some(self.curtailed_power_w),
        );
        out.family(
            "hashwarden_machines",
            "gauge",
            "Machines by the setting the plan gives them.",
        );
        for (target, count) in self.targets {
            out.sample(
                "hashwarden_machines",
                &format!("{{target=\"{target}\"}}"),
                count as f64,
            );
        }
        out.one(
            "hashwarden_machines_online",
            "gauge",
            "Machines reporting now.",
            self.online as f64,
        );
        out.one(
            "hashwarden_miners_unenrolled",
            "gauge",
            "Miners heard of but not listened to: their device keys are not enrolled.",
            self.unenrolled as f64,
        );
        let no_breakevens: [f64; 0] = [];
        out.histogram(
            "hashwarden_breakeven_usd_per_ph_day",
            "Each machine's breakeven hashprice at the current power price.",
            &BREAKEVEN_BUCKETS,
            if self.breakevens.is_empty() {
                &no_breakevens
            } else {
                &self.breakevens
            },
        );
        for (name, help, value) in [
            (
                "hashwarden_commands_sent_total",
                "Signed commands published.",
                counters.commands_sent,
            ),
            (
                "hashwarden_changes_verified_total",
                "Changes the miners' telemetry confirmed.",
                counters.verified,
            ),
            (
                "hashwarden_changes_failed_total",
                "Changes refused, failed or not shown by telemetry.",
                counters.failed,
            ),
            (
                "hashwarden_miners_unresponsive_total",
                "Changes with no final ack after every attempt.",
                counters.unresponsive,
            ),
            (
                "hashwarden_messages_refused_total",
                "Incoming messages refused (unsigned or wrongly signed, from miners not enrolled, malformed, implausible).",
                counters.refused_messages,
            ),
        ] {
            out.one(name, "counter", help, value as f64);
        }
        let latencies: Vec<f64> = self.latencies.iter().copied().collect();
        out.histogram(
            "hashwarden_command_latency_seconds",
            "From publishing a command to its final ack.",
            &LATENCY_BUCKETS,
            &latencies,
        );
        out.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::{Economics, Inputs, Machine, Point, Policy, plan};
    use crate::units::{TerahashPerSecond, UsdPerKwh, UsdPerPhDay, Watts};

    fn machine(id: &str, jth: f64) -> Machine {
        let full = Point {
            watts: Watts(jth * 100.0),
            hashrate: TerahashPerSecond(100.0),
        };
        Machine::new(id, full, Vec::new())
    }

    #[test]
    fn the_plan_and_the_latencies_show_as_metrics() {
        let machines = [machine("a", 17.0), machine("b", 38.0)];
        let plan = plan(&Inputs {
            now: 1_000,
            economics: Some(Economics {
                hashprice: UsdPerPhDay(29.0),
                power_price: UsdPerKwh(0.06),
                pool_fee: 0.0,
            }),
            cap: None,
            policy: &Policy::default(),
            machines: &machines,
        });
        let mut metrics = FleetMetrics::default();
        metrics.plan(&plan, &machines, Some(0.06));
        metrics.latency(0.04);
        metrics.latency(1.5);
        let counters = Counters {
            commands_sent: 2,
            ..Counters::default()
        };
        let text = metrics.render(&counters);
        for line in [
            "hashwarden_hashprice_usd_per_ph_day 29",
            // The 38 J/TH machine sleeps: 3800 W not spent.
            "hashwarden_curtailed_power_watts 3800",
            "hashwarden_machines{target=\"sleep\"} 1",
            "hashwarden_machines{target=\"full\"} 1",
            // Breakevens 24.48 and 54.72 $/PH/day.
            "hashwarden_breakeven_usd_per_ph_day_bucket{le=\"25\"} 1",
            "hashwarden_breakeven_usd_per_ph_day_bucket{le=\"60\"} 2",
            "hashwarden_command_latency_seconds_bucket{le=\"0.05\"} 1",
            "hashwarden_command_latency_seconds_count 2",
            "hashwarden_commands_sent_total 2",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // No cap: the gauge is absent, not zero.
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("hashwarden_site_cap_watts "))
        );
    }
}
