//! The backtest's cost: each strategy replayed over the shipped crash scenario (120 days of
//! 15-minute steps) for fleets of growing size, against a baseline measured in the same run —
//! *never* curtailing, which is the ledger alone (every strategy pays for it). Also prints the
//! economic comparison for the shipped 40-machine fleet, as `hashwarden backtest` does.
//!
//! `cargo bench -p hashwarden --bench backtest`

use std::path::Path;
use std::time::{Duration, Instant};

use hashwarden::backtest::{self, STRATEGIES, Scenario, fleet, scenario};

const RUNS: usize = 3;

/// The shipped scenario for `machines`; with `scaled_cap`, its demand-response cap set to 40 %
/// of their full power, so it binds whatever the fleet's size.
fn shipped(machines: Vec<hashwarden::planner::Machine>, scaled_cap: bool) -> Scenario {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/backtest");
    let (site, market, grid) = (
        dir.join("site.toml"),
        dir.join("market.csv"),
        dir.join("grid.csv"),
    );
    let files = scenario::Files {
        site: &site,
        market: &market,
        power: None,
        grid: Some(&grid),
    };
    let mut scenario = scenario::load(&files, machines, 900, 60).unwrap_or_else(|e| panic!("{e}"));
    if scaled_cap {
        let full: f64 = scenario.machines.iter().map(|m| m.full.watts.0).sum();
        for window in &mut scenario.grid {
            window.cap = hashwarden::units::Watts(full * 0.4);
        }
    }
    scenario
}

fn median(f: impl Fn()) -> Duration {
    let mut samples: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    samples.sort();
    samples[RUNS / 2]
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/backtest");
    let text = std::fs::read_to_string(dir.join("fleet.json")).unwrap_or_default();
    let machines = serde_json::from_str(&text).unwrap_or_else(|e| panic!("fleet.json: {e}"));
    let report = backtest::run(&shipped(machines, false));
    println!("The shipped crash scenario, 40 machines:\n");
    print!("{}", backtest::cli::table(&report));
    println!();
    println!("| machines | steps | strategy | time | × never (the ledger alone) |");
    println!("|---|---|---|---|---|");
    for count in [40, 400, 2_000] {
        let scenario = shipped(fleet::generate(count, 7), true);
        let steps = scenario.steps();
        let baseline = median(|| {
            std::hint::black_box(backtest::strategy(&scenario, &steps, "never"));
        });
        for name in STRATEGIES {
            let took = median(|| {
                std::hint::black_box(backtest::strategy(&scenario, &steps, name));
            });
            println!(
                "| {count} | {} | {name} | {:.1} ms | {:.1}× |",
                steps.len(),
                took.as_secs_f64() * 1e3,
                took.as_secs_f64() / baseline.as_secs_f64()
            );
        }
    }
}
