//! A power target on a tuned chain goes to the tuned curve's best point within it (its voltage,
//! the clocks scaled), not to slower clocks at the tuned voltage: the hash rate the agent plans
//! with from the curve is the hash rate the chain gives. Two daemons on the same simulated
//! silicon, held at the same target after a restart: one knows its curve (a hash-rate tune at
//! the board's top voltage, as the tuner would store it), the other does not and has only the
//! power limiter at that voltage — the baseline, measured in the same run.

mod common;

use std::time::Duration;

use common::fleet::{Broker, Daemon, Host, Seen, config, scratch};
use fleet_proto::command::TuneMode;
use hashboard::board::BM1397_HASHBOARD_12 as BOARD;

const SPEED: f64 = 10.0;
const TOP_MV: u32 = 1500;
/// The share of the top point's power the chain is held at.
const TARGET_SHARE: f64 = 0.6;
/// The seed `hashwarden-fw --sim` gives chain 0 (its `--seed`, 1 by default).
const SEED: u64 = 1;

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
    // The profile a hash-rate tune at the board's top voltage leaves, the curve over its range.
    let silicon = hashwarden_fw::sim::Silicon {
        seed: SEED,
        joules_per_th: None,
    };
    let profile =
        hashwarden_fw::sim::surveyed_profile(&BOARD, silicon, 0, TOP_MV, TuneMode::Hashrate)
            .expect("surveyed");
    let top_w = profile.curve[0].power_w;
    let target_w = top_w * TARGET_SHARE;
    let tuned = serde_json::to_value(&profile).expect("encodes");

    let mut measured = Vec::new();
    for (name, profile) in [("curve", Some(tuned)), ("clock-only", None)] {
        data_dir(&dir, name, target_w, profile);
        // Ticket 16: sixteen times the nonces of the default, so a 5 s hash rate is a measurement
        // to a few percent, not to ten.
        let text = config(broker.port, &dir.join(name), "") + "[mining]\nticket_difficulty = 16\n";
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
