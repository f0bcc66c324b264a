use proptest::prelude::*;

use super::*;
use crate::tariff::Tariff;

const T0: u64 = 1_767_225_600;

fn fixed(price: f64) -> Tariff {
    Tariff::Fixed {
        price: UsdPerKwh(price),
    }
}

/// Hashprices from T0, one every `step_s`.
fn series(prices: &[f64], step_s: u64) -> Vec<(u64, f64)> {
    prices
        .iter()
        .enumerate()
        .map(|(i, h)| (T0 + step_s * i as u64, *h))
        .collect()
}

fn scenario(machines: Vec<Machine>, market: Vec<(u64, f64)>, step_s: u64) -> Scenario {
    let end = market.last().map_or(T0, |m| m.0) + step_s;
    Scenario {
        start: market.first().map_or(T0, |m| m.0),
        end,
        step_s,
        market: market
            .into_iter()
            .map(|(at, h)| (at, UsdPerPhDay(h)))
            .collect(),
        tariff: fixed(0.06),
        power: Vec::new(),
        pool_fee: 0.02,
        site_cap: None,
        grid: Vec::new(),
        policy: Policy {
            band: 0.03,
            min_on_s: 600,
            min_off_s: 600,
            restore_cooldown_s: 600,
            ..Policy::default()
        },
        machines,
        ramp_s: 60,
    }
}

/// Every schedule of `scenario` that keeps its dwell rules (each machine on one of its options
/// per step), by brute force: the best profit, and the best that also fits every cap.
fn brute_force(scenario: &Scenario) -> (f64, f64) {
    let steps = scenario.steps();
    let options: Vec<Vec<Setting>> = scenario
        .machines
        .iter()
        .map(|m| {
            let (mut scratch, mut vertices) = (Vec::new(), Vec::new());
            crate::planner::hull(m, &mut scratch, &mut vertices);
            std::iter::once(Setting::Sleep)
                .chain(vertices.iter().skip(1).map(|v| {
                    if v.0 >= m.full.watts.0 {
                        Setting::Full
                    } else {
                        Setting::PowerTarget(Watts(v.0))
                    }
                }))
                .collect()
        })
        .collect();
    let per_step: usize = options.iter().map(Vec::len).product();
    let total = per_step.pow(steps.len() as u32);
    let dwell_steps = |s: u64| s.div_ceil(scenario.step_s) as usize;
    let on_dwell = dwell_steps(
        scenario
            .policy
            .min_on_s
            .max(scenario.policy.restore_cooldown_s),
    );
    let off_dwell = dwell_steps(scenario.policy.min_off_s);
    let (mut best, mut best_fitting) = (f64::MIN, f64::MIN);
    for code in 0..total {
        let mut rest = code;
        let schedule: Vec<Vec<Setting>> = steps
            .iter()
            .map(|_| {
                options
                    .iter()
                    .map(|opts| {
                        let choice = opts[rest % opts.len()];
                        rest /= opts.len();
                        choice
                    })
                    .collect()
            })
            .collect();
        // Dwell: a machine switches only after `on_dwell` steps on or `off_dwell` steps off
        // (it starts on, free to switch).
        let keeps_dwell = (0..scenario.machines.len()).all(|i| {
            let mut on = true;
            let mut since = usize::MAX / 2;
            schedule.iter().all(|settings| {
                let now_on = settings[i] != Setting::Sleep;
                if now_on != on {
                    let needed = if on { on_dwell } else { off_dwell };
                    if since < needed {
                        return false;
                    }
                    (on, since) = (now_on, 1);
                } else {
                    since += 1;
                }
                true
            })
        });
        if !keeps_dwell {
            continue;
        }
        let mut ledger = Ledger::new(scenario);
        let mut fits = true;
        for (step, settings) in steps.iter().zip(&schedule) {
            ledger.record(step, settings);
            let power = site_power(&scenario.machines, settings);
            fits &= step.cap.is_none_or(|c| power <= c.0 + 1e-9);
        }
        let profit = ledger.outcome("brute").profit_usd;
        best = best.max(profit);
        if fits {
            best_fitting = best_fitting.max(profit);
        }
    }
    (best, best_fitting)
}

/// Two machines either side of the market: a 21.5 J/TH one and a 38 J/TH one, with two curve
/// points each (so three options and sleep).
fn pair() -> Vec<Machine> {
    let mut machines = vec![
        fleet::machine("efficient", 140.0, 21.5),
        fleet::machine("hot", 86.0, 38.0),
    ];
    for m in &mut machines {
        m.curve.truncate(2);
    }
    machines
}

#[test]
fn without_a_cap_the_oracle_is_the_best_schedule_there_is() {
    // Five-minute steps with ten-minute dwell: two steps before a machine may switch back. The
    // hashprice swings far across the hot machine's breakeven every step, and waking is free
    // (no ramp): without the dwell rules it would sleep and wake every step.
    let market = series(&[100.0, 20.0, 100.0, 20.0, 100.0], 300);
    let mut scenario = scenario(pair(), market, 300);
    scenario.ramp_s = 0;
    let (best, _) = brute_force(&scenario);
    let report = run(&scenario);
    let oracle = report.get("oracle").expect("oracle");
    assert!(
        (oracle.profit_usd - best).abs() < 1e-9,
        "oracle {} vs brute force {best}",
        oracle.profit_usd
    );
    // The naive threshold ignores dwell, so it is no schedule the oracle could have chosen.
    for other in report.strategies.iter().filter(|o| o.name != "naive") {
        assert!(other.profit_usd <= best + 1e-9, "{other:?} beats {best}");
    }
}

#[test]
fn under_a_cap_the_oracle_fits_and_comes_close_to_the_best_that_does() {
    let market = series(&[45.0, 50.0, 30.0, 55.0, 48.0], 300);
    let mut scenario = scenario(pair(), market, 300);
    // Room for the efficient machine at full, or both underclocked, for three steps.
    scenario.grid.push(CapWindow {
        from: T0 + 300,
        to: T0 + 1_200,
        cap: Watts(3_400.0),
    });
    let (_, best_fitting) = brute_force(&scenario);
    let steps = scenario.steps();
    let schedule = oracle::schedule(&scenario, &steps);
    for (step, settings) in steps.iter().zip(&schedule) {
        let power = site_power(&scenario.machines, settings);
        assert!(
            step.cap.is_none_or(|c| power <= c.0),
            "over the cap at {}",
            step.at
        );
    }
    let oracle = run(&scenario).get("oracle").expect("oracle").profit_usd;
    assert!(oracle <= best_fitting + 1e-9);
    assert!(
        oracle >= best_fitting - 0.01 * best_fitting.abs(),
        "oracle {oracle} vs best fitting {best_fitting}"
    );
}

#[test]
fn every_strategy_obeys_the_grid() {
    let machines = fleet::generate(30, 3);
    let full: f64 = machines.iter().map(|m| m.full.watts.0).sum();
    let market: Vec<(u64, f64)> = (0..48).map(|i| (T0 + 900 * i, 45.0)).collect();
    let mut scenario = scenario(machines, market, 900);
    let cap = Watts(full * 0.4);
    scenario.grid.push(CapWindow {
        from: T0 + 900 * 10,
        to: T0 + 900 * 20,
        cap,
    });
    let report = run(&scenario);
    let never = report.get("never").expect("never");
    // Never curtailing for price still sleeps for the grid: and wakes after.
    assert!(never.switches > 0);
    let uncapped_kwh = full / 1000.0 * 12.0;
    for o in &report.strategies {
        assert!(
            o.energy_kwh <= uncapped_kwh - (full - cap.0) / 1000.0 * 2.5 + 1e-6,
            "{} used {} kWh",
            o.name,
            o.energy_kwh
        );
    }
}

#[test]
fn a_price_that_wobbles_around_a_breakeven_flaps_the_naive_threshold_and_not_hashwarden() {
    // One aged S19 (38 J/TH: $55.9 breakeven at 6 ¢ with a 2 % pool fee) and a price wobbling
    // ±1 % around it, every 15 minutes for a day.
    let machines = vec![fleet::machine("aged", 86.0, 38.0)];
    let breakeven = 38.0 * 24.0 * 0.06 / 0.98;
    let market: Vec<(u64, f64)> = (0..96)
        .map(|i| {
            let wobble = if i % 2 == 0 { 1.01 } else { 0.99 };
            (T0 + 900 * i, breakeven * wobble)
        })
        .collect();
    let report = run(&scenario(machines, market, 900));
    let naive = report.get("naive").expect("naive");
    let threshold = report.get("threshold").expect("threshold");
    assert!(naive.switches >= 90, "{naive:?}");
    assert_eq!(threshold.switches, 0, "inside the band: {threshold:?}");
    // Each wake costs a minute of hashing: the flapping loses money the band keeps.
    assert!(threshold.profit_usd > naive.profit_usd);
}

#[test]
fn a_backtest_is_the_same_every_time() {
    let market: Vec<(u64, f64)> = (0..200)
        .map(|i| (T0 + 900 * i, 30.0 + (i % 17) as f64))
        .collect();
    let scenario = scenario(fleet::generate(25, 9), market, 900);
    assert_eq!(run(&scenario), run(&scenario));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Without a cap nothing beats the oracle under the same dwell rules: not never curtailing,
    /// nor the planner in either mode (the naive threshold ignores dwell, so it is left out).
    #[test]
    fn nothing_that_keeps_the_dwell_rules_beats_the_oracle(
        prices in proptest::collection::vec(15.0f64..70.0, 4..40),
        count in 1usize..8,
        seed in 0u64..1000,
        step in prop_oneof![Just(300u64), Just(900), Just(3600)],
    ) {
        let market = series(&prices, step);
        let report = run(&scenario(fleet::generate(count, seed), market, step));
        let oracle = report.get("oracle").expect("oracle").profit_usd;
        for name in ["never", "threshold", "optimise"] {
            let other = report.get(name).expect("there").profit_usd;
            prop_assert!(other <= oracle + 1e-6 * oracle.abs().max(1.0), "{name} {other} > oracle {oracle}");
        }
    }
}

fn shipped(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/backtest")
        .join(name)
}

/// The shipped fleet is the generator's 40 machines for seed 7 (`BLESS=1` writes it again).
#[test]
fn the_shipped_fleet_is_the_generators() {
    let generated = fleet::generate(40, 7);
    let path = shipped("fleet.json");
    if std::env::var_os("BLESS").is_some() {
        let text = serde_json::to_string_pretty(&generated).expect("encodes");
        std::fs::write(&path, text + "\n").expect("writes");
    }
    let text = std::fs::read_to_string(&path).expect("shipped");
    let shipped: Vec<Machine> = serde_json::from_str(&text).expect("parses");
    assert_eq!(shipped, generated);
}

/// The bar on the shipped crash scenario: optimise within 2 % of perfect foresight, and
/// ahead of the naive threshold with fewer switches.
#[test]
fn on_the_shipped_crash_optimise_is_near_the_oracle_and_beats_naive_with_fewer_switches() {
    let text = std::fs::read_to_string(shipped("fleet.json")).expect("shipped");
    let machines: Vec<Machine> = serde_json::from_str(&text).expect("parses");
    let (site, market, grid) = (
        shipped("site.toml"),
        shipped("market.csv"),
        shipped("grid.csv"),
    );
    let files = scenario::Files {
        site: &site,
        market: &market,
        power: None,
        grid: Some(&grid),
    };
    let scenario = scenario::load(&files, machines, 900, 60).expect("loads");
    let report = run(&scenario);
    let get = |name| report.get(name).expect("there").clone();
    let (never, naive, threshold, optimise, oracle) = (
        get("never"),
        get("naive"),
        get("threshold"),
        get("optimise"),
        get("oracle"),
    );
    assert!(
        optimise.profit_usd >= 0.98 * oracle.profit_usd,
        "optimise {} vs oracle {}",
        optimise.profit_usd,
        oracle.profit_usd
    );
    assert!(optimise.profit_usd > naive.profit_usd);
    assert!(optimise.switches < naive.switches);
    assert!(threshold.switches < naive.switches);
    // Curtailing pays through the crash.
    assert!(threshold.profit_usd > never.profit_usd);
    assert!(oracle.profit_usd >= optimise.profit_usd);
}
