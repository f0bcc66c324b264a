//! Planner time for a fleet of 100,000 machines (issue #6: under 100 ms), against a baseline
//! measured in the same run: sorting the fleet by efficiency, the least any ordered plan costs.
//!
//! `cargo bench -p hashwarden --bench planner`

use std::hint::black_box;
use std::time::{Duration, Instant};

use hashwarden::planner::{Economics, Inputs, Machine, Mode, Point, Policy, Setting, plan};
use hashwarden::units::{TerahashPerSecond, UsdPerDay, UsdPerKwh, UsdPerPhDay, Watts};

const MACHINES: usize = 100_000;
const RUNS: usize = 7;
const NOW: u64 = 1_771_900_000;

/// A seeded S19-class fleet, 17–38 J/TH, half with a measured curve, some asleep, some just
/// switched, a few offline or in maintenance.
fn fleet() -> Vec<Machine> {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..MACHINES)
        .map(|i| {
            let jth = 17.0 + 21.0 * next();
            let ths = 90.0 + 110.0 * next();
            let full = Point {
                watts: Watts(jth * ths),
                hashrate: TerahashPerSecond(ths),
            };
            let curve = if i % 2 == 0 {
                [0.45, 0.6, 0.75, 0.9]
                    .iter()
                    .map(|&f| Point {
                        watts: Watts(full.watts.0 * f),
                        hashrate: TerahashPerSecond(ths * f64::powf(f, 0.7)),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Machine {
                id: format!("site-a/r{:03}/m{:05}", i / 100, i),
                online: i % 97 != 0,
                setting: if next() < 0.3 {
                    Setting::Sleep
                } else {
                    Setting::Full
                },
                full,
                curve,
                live: None,
                last_switch_at: Some(NOW - (next() * 3_000.0) as u64),
                last_wake_at: Some(NOW - 3_600),
                exempt: i % 211 == 0,
                manual: None,
                unheeded_until: None,
                overhead: UsdPerDay(0.0),
            }
        })
        .collect()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time(mut f: impl FnMut()) -> Duration {
    median(
        (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect(),
    )
}

/// Resident memory of this process, bytes (`/proc/self/statm`, pages of 4 KiB).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Memory per managed miner: the fleet view holding each miner's retained state and latest
/// telemetry (the documented example messages) plus an executor op, against the bytes of those
/// two messages on the wire.
fn memory_per_miner() {
    use hashwarden::executor::{Executor, ExecutorConfig};
    use hashwarden::fleet::FleetView;
    const MINERS: usize = 50_000;
    let example = |end: &str| {
        fleet_proto::examples::all()
            .into_iter()
            .find(|e| e.topic.ends_with(end))
            .map(|e| e.json.into_bytes())
            .unwrap_or_default()
    };
    let (state, telemetry) = (example("/state"), example("/telemetry"));
    let wire = state.len() + telemetry.len();
    let before = rss_bytes();
    let mut fleet = FleetView::default();
    let site = fleet_proto::Name::new("tx-west").unwrap_or_else(|_| unreachable!());
    let mut executor = Executor::new(site, ExecutorConfig::default(), 1);
    for i in 0..MINERS {
        let id = format!("site-a-r{:03}-m{:05}", i / 100, i);
        let _ = fleet.ingest(&id, fleet_proto::Kind::Status, b"online", NOW);
        let _ = fleet.ingest(&id, fleet_proto::Kind::State, &state, NOW);
        let _ = fleet.ingest(&id, fleet_proto::Kind::Telemetry, &telemetry, NOW);
        executor.want(
            &id,
            Setting::Full,
            Setting::Sleep,
            NOW,
            Some(Watts(3_000.0)),
            Watts(3_031.0),
        );
    }
    let per_miner = (rss_bytes().saturating_sub(before)) as f64 / MINERS as f64;
    black_box((&fleet, &executor));
    println!();
    println!(
        "| managed miners | host memory per miner | state + telemetry on the wire | × wire | target < 4 KB |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| {MINERS} | {:.0} B | {wire} B | {:.1}× | {} |",
        per_miner,
        per_miner / wire as f64,
        if per_miner < 4096.0 { "met" } else { "MISSED" }
    );
}

fn main() {
    memory_per_miner();
    let machines = fleet();
    let economics = Economics {
        hashprice: UsdPerPhDay(29.0),
        power_price: UsdPerKwh(0.06),
        pool_fee: 0.02,
    };
    let total: f64 = machines.iter().map(|m| m.full.watts.0).sum();
    let baseline = time(|| {
        let mut efficiencies: Vec<(f64, usize)> = machines
            .iter()
            .enumerate()
            .map(|(i, m)| (m.efficiency().0, i))
            .collect();
        efficiencies.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        black_box(efficiencies);
    });
    println!("{MACHINES} machines, median of {RUNS} runs");
    println!(
        "baseline (sort the fleet by efficiency): {:.1} ms",
        baseline.as_secs_f64() * 1e3
    );
    println!();
    println!("| mode | cap | plan time | × baseline | changes | target |");
    println!("|---|---|---|---|---|---|");
    for mode in [Mode::Threshold, Mode::Optimise] {
        for cap in [None, Some(Watts(total * 0.1))] {
            let policy = Policy {
                mode,
                ..Policy::default()
            };
            let mut changes = 0;
            let took = time(|| {
                let plan = plan(&Inputs {
                    now: NOW,
                    economics: Some(economics),
                    cap,
                    policy: &policy,
                    machines: &machines,
                });
                changes = plan.changes().count();
                black_box(plan);
            });
            println!(
                "| {mode:?} | {} | {:.1} ms | {:.1}× | {changes} | {} |",
                cap.map_or("none".into(), |c| format!("{:.0} MW", c.0 / 1e6)),
                took.as_secs_f64() * 1e3,
                took.as_secs_f64() / baseline.as_secs_f64(),
                if took < Duration::from_millis(100) {
                    "< 100 ms: met"
                } else {
                    "< 100 ms: MISSED"
                },
            );
        }
    }
}
