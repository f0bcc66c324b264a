//! A site at scale (issue #8): fifty `hashwarden-fw --sim` processes and the agent on mosquitto,
//! curtailed and restored by price, by a grid signal and by hand — every change checked in the
//! miners' own telemetry, not in the agent's word.
//!
//! The miners are one model left at three settings by their operators: efficient (1.30 V,
//! 250 MHz), medium (1.40 V, 350 MHz) and hot (1.50 V, 425 MHz), so their breakevens fall in
//! three bands.

use std::collections::BTreeMap;
use std::time::Duration;

use testbed::site::{
    Bench, agent, agent_config, asleep, efficiency, grid_cap, market, measured_state, miner_config,
    mining, telemetry_until, unix_now,
};
use testbed::{Process, Watcher, binary};

const SITE: &str = "tx-site";
const POWER_PRICE: f64 = 0.06;
const SOON: Duration = Duration::from_secs(90);
/// (name prefix, count, core mV, MHz)
const GROUPS: [(&str, usize, u32, f64); 3] = [
    ("eff", 20, 1300, 250.0),
    ("med", 15, 1400, 350.0),
    ("hot", 15, 1500, 425.0),
];

fn breakeven(j_per_th: f64) -> f64 {
    j_per_th * 24.0 * POWER_PRICE
}

/// Every miner's latest telemetry, by name, once each has reported since `since` (unix s) in a
/// way `settled` accepts.
async fn settle(
    watcher: &mut Watcher,
    names: &[String],
    since: u64,
    within: Duration,
    settled: impl Fn(&str, &serde_json::Value) -> bool,
) -> BTreeMap<String, serde_json::Value> {
    telemetry_until(watcher, names, within, |latest| {
        latest
            .iter()
            .all(|(n, t)| t["at"].as_u64().unwrap_or(0) >= since && settled(n, t))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_miners_follow_the_price_the_grid_and_the_operator() {
    let Bench {
        dir,
        broker,
        key,
        public_key,
        mut watcher,
    } = Bench::start("site50", SITE).await;
    let port = broker.port;
    let mut names = Vec::new();
    let mut miners = Vec::new();
    for (prefix, count, core_mv, mhz) in GROUPS {
        for i in 0..count {
            let name = format!("{prefix}-{i:02}");
            let config = miner_config(&dir, SITE, &name, port, &public_key, core_mv, mhz);
            miners.push(Process::sim_miner(&config, dir.join(format!("{name}.log"))));
            names.push(name);
        }
    }
    assert!(names.len() >= 50);
    let mut efficiencies = BTreeMap::new();
    for name in &names {
        let state = measured_state(&mut watcher, name, SOON).await;
        efficiencies.insert(name.clone(), efficiency(&state));
    }
    let group_worst = |prefix: &str| {
        efficiencies
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(_, e)| *e)
            .fold(f64::MIN, f64::max)
    };
    let group_best = |prefix: &str| {
        efficiencies
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(_, e)| *e)
            .fold(f64::MAX, f64::min)
    };
    assert!(
        group_worst("med") * 1.08 < group_best("hot"),
        "the groups' efficiencies must not overlap: {efficiencies:?}"
    );

    let head = format!(
        "[site]\nname = \"{SITE}\"\npool_fee = 0.0\n\
         [tariff]\nkind = \"fixed\"\nprice = {POWER_PRICE}\n\
         [policy]\nmode = \"threshold\"\nband = 0.02\nmin_on_s = 2\nmin_off_s = 2\n\
         restore_cooldown_s = 2\nbatch_size = 10\nbatch_interval_s = 1\n"
    );
    let config = agent_config(&dir, &head, port, &key).path;
    let agent = agent(&dir, &config);
    let market_topic = format!("hashwarden/v1/{SITE}/market");

    // By price: between the medium and the hot machines' breakevens, exactly the hot ones sleep.
    let between = (breakeven(group_worst("med")) * breakeven(group_best("hot"))).sqrt();
    let at = unix_now();
    watcher
        .publish(&market_topic, &market(SITE, between, at), true)
        .await;
    settle(&mut watcher, &names, at + 1, SOON, |name, t| {
        if name.starts_with("hot") {
            asleep(t)
        } else {
            mining(t)
        }
    })
    .await;

    // Restored by price: every machine mines again.
    let at = unix_now();
    watcher
        .publish(
            &market_topic,
            &market(SITE, breakeven(group_worst("hot")) * 1.5, at),
            true,
        )
        .await;
    settle(&mut watcher, &names, at + 1, SOON, |_, t| mining(t)).await;

    // By the grid: a cap of 60 % of the site's power; the least efficient sleep first, and the
    // machines left running fit under it.
    let latest = settle(&mut watcher, &names, unix_now(), SOON, |_, t| mining(t)).await;
    let site_w: f64 = latest
        .values()
        .map(|t| t["power_w"].as_f64().unwrap_or(0.0))
        .sum();
    let cap_w = site_w * 0.6;
    let at = grid_cap(&watcher, SITE, Some(cap_w)).await;
    let under_cap = telemetry_until(&mut watcher, &names, SOON, |latest| {
        let reported = latest
            .values()
            .all(|t| t["at"].as_u64().unwrap_or(0) > at && (asleep(t) || mining(t)));
        let running: f64 = latest
            .values()
            .filter(|t| mining(t))
            .map(|t| t["power_w"].as_f64().unwrap_or(0.0))
            .sum();
        let sleepers = latest.values().filter(|t| asleep(t)).count();
        reported && running <= cap_w * 1.05 && sleepers > 0
    })
    .await;
    let slept: Vec<f64> = under_cap
        .iter()
        .filter(|(_, t)| asleep(t))
        .map(|(n, _)| efficiencies[n])
        .collect();
    let running: Vec<f64> = under_cap
        .iter()
        .filter(|(_, t)| mining(t))
        .map(|(n, _)| efficiencies[n])
        .collect();
    let best_slept = slept.iter().copied().fold(f64::MAX, f64::min);
    let worst_running = running.iter().copied().fold(f64::MIN, f64::max);
    assert!(
        best_slept >= worst_running * 0.97,
        "least efficient first: a {best_slept:.1} J/TH machine slept while a {worst_running:.1} J/TH one runs"
    );
    // The cap lifted: all back.
    let at = grid_cap(&watcher, SITE, None).await;
    settle(&mut watcher, &names, at + 1, SOON, |_, t| mining(t)).await;

    // By hand: two of the most efficient machines curtailed for ten minutes, followed to the end.
    let output = tokio::task::spawn_blocking({
        let config = config.clone();
        move || {
            std::process::Command::new(binary("hashwarden"))
                .args([
                    "curtail",
                    "eff-00",
                    "eff-01",
                    "--for",
                    "10m",
                    "--wait",
                    "--timeout",
                    "90s",
                    "--json",
                    "--config",
                    &config,
                ])
                .output()
                .expect("runs")
        }
    })
    .await
    .expect("joins");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let at = unix_now();
    settle(&mut watcher, &names, at, SOON, |name, t| {
        if name == "eff-00" || name == "eff-01" {
            asleep(t)
        } else {
            mining(t)
        }
    })
    .await;

    let (status, summary) = agent.terminate();
    assert!(status.success(), "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(summary["unresponsive"], 0, "{summary}");
    assert_eq!(summary["miners"], names.len(), "{summary}");
    drop(miners);
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
