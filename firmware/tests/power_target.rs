//! A power target on a tuned chain goes to the tuned curve's best point within it (its voltage,
//! the clocks scaled), not to slower clocks at the tuned voltage: the hash rate the agent plans
//! with from the curve is the hash rate the chain gives. Two daemons on the same simulated
//! silicon, held at the same target after a restart: one knows its curve (a hash-rate tune at
//! the board's top voltage, as the tuner would store it), the other does not and has only the
//! power limiter at that voltage — the baseline, measured in the same run.

mod common;

use std::time::Duration;

use bm13xx::ChipModel;
use common::fleet::{Broker, Daemon, Host, Seen, config, scratch};
use hashboard::board::BM1397_HASHBOARD_12 as BOARD;

const SPEED: f64 = 10.0;
const TOP_MV: u32 = 1500;
/// The share of the top point's power the chain is held at.
const TARGET_SHARE: f64 = 0.6;
/// The seed `hashwarden-fw --sim` gives chain 0 (its `--seed`, 1 by default).
const SEED: u64 = 1;

/// The curve a tune of the simulated chain measures — each voltage from 1.300 to 1.500 V, every
/// chip a little under its clean clock at 60 °C — and the per-chip clocks at the top.
fn tuned_profile() -> (Vec<serde_json::Value>, Vec<u32>) {
    let mut chain = chipsim::ChainConfig::new(ChipModel::Bm1397, BOARD.chips_per_chain, SEED);
    chain.voltage_domains = BOARD.voltage_domains;
    let sim = chipsim::ChainSim::new(chain).expect("valid");
    let cores = f64::from(ChipModel::Bm1397.hashing_small_cores());
    let clean_mhz = |silicon: &chipsim::physics::Silicon, volts: f64| {
        (silicon.max_stable_mhz(volts, 60.0) * 0.97).min(BOARD.max_frequency.mhz())
    };
    let curve = (0..=8)
        .rev()
        .map(|step| {
            let core_mv = 1300 + 25 * step;
            let volts = f64::from(core_mv) / 1000.0;
            let (hashrate, power) = sim.chips().iter().fold((0.0, 0.0), |(h, w), chip| {
                let mhz = clean_mhz(&chip.silicon, volts);
                (
                    h + mhz * 1e6 * cores / 1e12,
                    w + chip.silicon.power_w(mhz, volts, 60.0, true),
                )
            });
            serde_json::json!({"core_mv": core_mv, "hashrate_ths": hashrate, "power_w": power})
        })
        .collect();
    let clocks = sim
        .chips()
        .iter()
        .map(|chip| (clean_mhz(&chip.silicon, f64::from(TOP_MV) / 1000.0) * 1000.0) as u32)
        .collect();
    (curve, clocks)
}

/// A data directory whose state holds the machine at `target_w`, at the top voltage, with the
/// tuned profile when `tuned` is given.
fn data_dir(dir: &std::path::Path, name: &str, target_w: f64, tuned: Option<serde_json::Value>) {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).expect("data dir");
    let state = serde_json::json!({
        "v": 1,
        "intent": {"sleeping": null, "frequency_mhz": null, "core_mv": TOP_MV,
                   "power_target_w": target_w, "tune": null},
        "commands": [],
        "tuned": tuned.into_iter().collect::<Vec<_>>(),
    });
    std::fs::write(data.join("state.json"), state.to_string()).expect("writes");
}

fn number(seen: &Seen, path: &[&str]) -> f64 {
    let mut value = seen.json();
    for key in path {
        value = value[*key].clone();
    }
    value.as_f64().unwrap_or(0.0)
}

/// Held at the target (within 5 %) for a run of reports: the mean 5 s hash rate and power.
async fn held(host: &mut Host, target_w: f64) -> (f64, f64) {
    // Settled: 80 s of chip time for the limiter's steps, then only reports from after it.
    let settled = |s: &Seen| number(s, &["uptime_s"]) >= 8.0;
    host.wait_for("telemetry", Duration::from_secs(60), |s| {
        settled(s)
            && s.json()["mode"] == "power_target"
            && (number(s, &["power_w"]) / target_w - 1.0).abs() < 0.05
    })
    .await;
    let (mut hashrate, mut power) = (0.0, 0.0);
    const REPORTS: usize = 8;
    for _ in 0..REPORTS {
        let seen = host
            .wait_for("telemetry", Duration::from_secs(20), settled)
            .await;
        hashrate += number(&seen, &["hashrate_ths", "s5"]);
        power += number(&seen, &["power_w"]);
    }
    (hashrate / REPORTS as f64, power / REPORTS as f64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tuned_chain_meets_a_power_target_at_its_curves_best_point() {
    let dir = scratch("power-target");
    let broker = Broker::start(&dir);
    let mut host = Host::connect(broker.port, "power-host").await;
    let (curve, clocks) = tuned_profile();
    let top_w = curve[0]["power_w"].as_f64().expect("watts");
    let target_w = top_w * TARGET_SHARE;
    let tuned = serde_json::json!({
        "chain": 0, "mode": "hashrate", "chip": "bm1397", "core_mv": TOP_MV,
        "clocks_khz": clocks, "curve": curve, "at": 1_796_000_000u64,
    });

    let mut measured = Vec::new();
    for (name, profile) in [("curve", Some(tuned)), ("clock-only", None)] {
        data_dir(&dir, name, target_w, profile);
        let text = config(broker.port, &dir.join(name), "");
        let daemon = Daemon::start_at(&dir, &text, name, SPEED);
        measured.push(held(&mut host, target_w).await);
        let (status, _) = daemon.terminate();
        assert!(status.success());
    }
    let [(curve_ths, curve_w), (clock_ths, clock_w)] = measured[..] else {
        unreachable!("two runs");
    };
    let ratio = curve_ths / clock_ths;
    eprintln!(
        "held at {target_w:.1} W ({:.0} % of the top point): the curve's point {curve_ths:.3} TH/s \
         at {curve_w:.1} W; clock-only at {TOP_MV} mV {clock_ths:.3} TH/s at {clock_w:.1} W; {ratio:.2}×",
        TARGET_SHARE * 100.0
    );
    // chipsim's physics give ~1.25× at 60 %; slowing the clocks alone gives 1×.
    assert!(ratio > 1.1, "{ratio:.2}× the clock-only baseline");
    let _ = std::fs::remove_dir_all(&dir);
}
