//! The autotuner in the running daemon, commanded over a real broker: `set_mode efficiency`
//! tunes while the chain keeps mining and the daemon keeps answering, lands a measured curve in
//! the retained state, lowers the machine's J/TH, survives a restart as a short resume, and stops
//! for a sleep and starts again at wake.

mod common;

use std::time::Duration;

use common::fleet::{Broker, Daemon, Host, Seen, config, scratch};
use fleet_proto::Action;
use fleet_proto::command::TuneMode;

const SOON: Duration = Duration::from_secs(20);
/// A full sweep at the test's windows is ~800 chip seconds: under a minute at the test's speed,
/// with room for a loaded CI machine.
const A_TUNE: Duration = Duration::from_secs(150);
const SPEED: f64 = 40.0;

/// Four chips and short windows at ticket 1: every chip still returns ~200 nonces per window.
/// Mining at ticket 16 gives the 5 s hash-rate windows that J/TH is read from enough nonces
/// (hundreds, not tens) to tell stock from tuned.
const TUNER: &str = "[mining]\nticket_difficulty = 16\n\
                     [tuner]\nticket_difficulty = 1\nsearch_window_s = 3\nsettle_window_s = 12\n";

fn mode(seen: &Seen) -> String {
    seen.json()["mode"].as_str().unwrap_or("").to_string()
}

fn efficiency(seen: &Seen) -> Option<f64> {
    seen.json()["efficiency_j_per_th"].as_f64()
}

/// The mean J/TH of the next `n` mining telemetry messages.
async fn mean_efficiency(host: &mut Host, n: usize) -> f64 {
    let mut sum = 0.0;
    for _ in 0..n {
        let seen = host
            .wait_for("telemetry", SOON, |s| {
                mode(s) == "mining" && efficiency(s).is_some_and(|e| e > 0.0)
            })
            .await;
        sum += efficiency(&seen).unwrap_or(0.0);
    }
    sum / n as f64
}

/// The chip seconds each finished tune in `log` measured for.
fn measured_s(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|line| line.split("measured_s=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

fn config_text(port: u16, dir: &std::path::Path) -> String {
    let mut text = config(port, &dir.join("data"), "");
    text = text.replace(
        "name = \"bm1397-hashboard-12\"\n",
        "name = \"bm1397-hashboard-12\"\nchips_per_chain = 4\n",
    );
    text.push_str(TUNER);
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn efficiency_mode_tunes_while_mining_and_resumes_after_a_restart() {
    let dir = scratch("tune");
    let broker = Broker::start(&dir);
    let mut host = Host::connect(broker.port, "tune-host").await;
    let config_text = config_text(broker.port, &dir);
    let daemon = Daemon::start_at(&dir, &config_text, "first", SPEED);

    let untuned = host
        .wait_for("state", SOON, |s| s.json()["mode"] == "mining")
        .await
        .json();
    assert_eq!(untuned["curve"], serde_json::json!([]));
    assert!(untuned["tune"].is_null());
    // Settled at the board's default clock first, with a full 5 s hash-rate window.
    host.wait_miner_seconds(6).await;
    let stock_jth = mean_efficiency(&mut host, 6).await;

    let mode_efficiency = Action::SetMode {
        mode: TuneMode::Efficiency,
    };
    host.send(host.sign(&host.command(mode_efficiency.clone(), 1)))
        .await;
    let ack = host.final_ack("cmd-000001").await;
    assert_eq!(ack["status"], "applied", "{ack}");
    assert!(
        ack["reason"].as_str().unwrap_or("").contains("tuning"),
        "{ack}"
    );

    // While it measures the chain mines on, the daemon reports `tuning`, and it answers.
    host.wait_for("telemetry", SOON, |s| {
        mode(s) == "tuning" && s.json()["hashrate_ths"]["s5"].as_f64().unwrap_or(0.0) > 0.0
    })
    .await;
    host.send(host.sign(&host.command(Action::Identify, 2)))
        .await;
    assert_eq!(host.final_ack("cmd-000002").await["status"], "applied");

    let tuned = host
        .wait_for("state", A_TUNE, |s| {
            let state = s.json();
            state["mode"] == "mining" && !state["curve"].as_array().is_none_or(|c| c.is_empty())
        })
        .await
        .json();
    assert_eq!(tuned["tune"], "efficiency");
    let curve = tuned["curve"].as_array().cloned().unwrap_or_default();
    assert!(curve.len() >= 3, "a sweep over voltages: {curve:?}");
    let voltages: Vec<u64> = curve
        .iter()
        .map(|p| p["core_mv"].as_u64().unwrap_or(0))
        .collect();
    assert!(
        voltages.windows(2).all(|w| w[0] > w[1]),
        "highest voltage first: {voltages:?}"
    );
    for point in &curve {
        assert!(
            point["hashrate_ths"].as_f64().unwrap_or(0.0) > 0.0,
            "{point}"
        );
        assert!(point["power_w"].as_f64().unwrap_or(0.0) > 0.0, "{point}");
    }

    // Let the 5 s hash-rate window fill at the tuned point, then compare with stock.
    host.wait_miner_seconds(6).await;
    let tuned_jth = mean_efficiency(&mut host, 6).await;
    assert!(
        tuned_jth < stock_jth * 0.85,
        "tuned {tuned_jth:.1} J/TH vs stock {stock_jth:.1} J/TH"
    );

    // The same mode again changes nothing: no second tune.
    host.send(host.sign(&host.command(mode_efficiency.clone(), 3)))
        .await;
    let again = host.final_ack("cmd-000003").await;
    assert_eq!(again["status"], "applied");
    assert!(
        again["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("already"),
        "{again}"
    );
    let (status, _) = daemon.terminate();
    assert!(status.success());
    assert_eq!(
        std::fs::read_to_string(dir.join("daemon-first.log"))
            .unwrap_or_default()
            .matches("hashwarden_fw::unit::tune: tuning ")
            .count(),
        1,
        "one tune for two identical commands"
    );

    // Restarted: the stored profile is resumed (one short check), not swept again, and the
    // retained state carries the curve from before.
    let daemon = Daemon::start_at(&dir, &config_text, "second", SPEED);
    let resumed_at = std::time::Instant::now();
    host.wait_for("state", SOON, |s| s.json()["mode"] == "tuning")
        .await;
    host.wait_for("state", A_TUNE, |s| {
        let state = s.json();
        state["mode"] == "mining" && state["curve"].as_array() == Some(&curve)
    })
    .await;
    let resumed_s = resumed_at.elapsed().as_secs_f64();
    let log = daemon.log_text();
    assert!(log.contains("from_stored=true"), "{log}");
    // The 5 s hash-rate window then holds only the resumed settings.
    host.wait_miner_seconds(6).await;
    let resumed_jth = mean_efficiency(&mut host, 6).await;
    let sweep_s =
        measured_s(&std::fs::read_to_string(dir.join("daemon-first.log")).unwrap_or_default());
    let resume_s = measured_s(&log);
    eprintln!(
        "sweep: {stock_jth:.1} -> {tuned_jth:.1} J/TH ({:.3} of stock) in {sweep_s:?} chip s; \
         resume: {resumed_jth:.1} J/TH in {resume_s:?} chip s ({resumed_s:.1} s wall)",
        tuned_jth / stock_jth
    );
    assert!(
        matches!((sweep_s.as_slice(), resume_s.as_slice()), ([sweep], [resume]) if resume * 10 <= *sweep),
        "a resume is a fraction of a sweep: {resume_s:?} vs {sweep_s:?}"
    );
    assert!(
        resumed_jth < stock_jth * 0.85,
        "resumed {resumed_jth:.1} J/TH vs stock {stock_jth:.1}"
    );

    // Hash-rate mode, stopped by a sleep, starts again at wake and finishes.
    host.send(host.sign(&host.command(
        Action::SetMode {
            mode: TuneMode::Hashrate,
        },
        4,
    )))
    .await;
    assert_eq!(host.final_ack("cmd-000004").await["status"], "applied");
    host.wait_for("telemetry", SOON, |s| mode(s) == "tuning")
        .await;
    host.send(host.sign(&host.command(Action::Sleep, 5))).await;
    assert_eq!(host.final_ack("cmd-000005").await["status"], "applied");
    host.wait_for("telemetry", SOON, |s| mode(s) == "sleeping")
        .await;
    assert!(daemon.log_text().contains("tuning stopped"));
    host.send(host.sign(&host.command(Action::Wake, 6))).await;
    assert_eq!(host.final_ack("cmd-000006").await["status"], "applied");
    host.wait_for("telemetry", SOON, |s| mode(s) == "tuning")
        .await;
    let fast = host
        .wait_for("state", A_TUNE, |s| {
            let state = s.json();
            state["mode"] == "mining" && state["tune"] == "hashrate"
        })
        .await
        .json();
    let top = fast["curve"][0]["hashrate_ths"].as_f64().unwrap_or(0.0);
    let efficient_top = curve
        .iter()
        .filter_map(|p| p["hashrate_ths"].as_f64())
        .fold(0.0, f64::max);
    assert!(
        top > 0.0 && (top / efficient_top - 1.0).abs() < 0.15,
        "hash-rate mode runs the highest voltage's point: {top} vs {efficient_top} TH/s"
    );
    let (status, _) = daemon.terminate();
    assert!(status.success());
}

/// A data directory holding a machine left in efficiency mode with a tuned 4-chip chain.
fn tuned_machine(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = scratch(name);
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("creates");
    let state = serde_json::json!({
        "v": 1,
        "intent": {"sleeping": null, "frequency_mhz": null, "core_mv": null, "tune": "efficiency"},
        "commands": [],
        "tuned": [{
            "chain": 0, "mode": "efficiency", "chip": "bm1397", "core_mv": 1100,
            "clocks_khz": [150000, 137500, 162500, 150000],
            "curve": [{"core_mv": 1100, "hashrate_ths": 0.4, "power_w": 13.0}],
            "at": 1795334071u64
        }]
    });
    std::fs::write(data.join("state.json"), state.to_string()).expect("writes");
    let config = dir.join("hw.toml");
    std::fs::write(
        &config,
        format!(
            "[board]\nname = \"bm1397-hashboard-12\"\nchips_per_chain = 4\n\
             [daemon]\ndata_dir = \"{}\"\n[api]\ntoken = \"0123456789abcdef0123\"\n{TUNER}",
            data.display()
        ),
    )
    .expect("writes");
    // It holds the API token: private, or the daemon refuses it.
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    (dir, config)
}

/// A tuned chain is checked for drift: two chips whose heat sinks come loose run far hotter (and
/// err for it), and it is tuned again; the same run without the fault is not.
#[test]
fn a_tuned_chain_that_drifts_is_tuned_again() {
    let run = |name: &str, faults: Option<&str>| {
        let (dir, config) = tuned_machine(name);
        let mut args = vec![
            "--sim".to_string(),
            "--config".into(),
            config.display().to_string(),
            // Chip time, not wall time: on a loaded machine the simulator falls behind its
            // speed, and a wall-clock run could end before the fault (at 400 s) or the drift
            // checks (every 300 s) came round. The wall cap only bounds a hang.
            "--sim-duration".into(),
            "1200".into(),
            "--duration".into(),
            "180".into(),
            "--speed".into(),
            "60".into(),
            "--api-listen".into(),
            "off".into(),
            "--http-listen".into(),
            "off".into(),
        ];
        if let Some(script) = faults {
            let path = dir.join("faults.json");
            std::fs::write(&path, script).expect("writes");
            args.extend(["--sim-faults".into(), path.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = common::daemon(&args);
        assert!(output.status.success(), "{}", common::stderr(&output));
        let ran_s = common::number(&common::summary(&output), "chip_s");
        assert!(
            ran_s >= 1200.0,
            "ran {ran_s} chip seconds, not the whole span"
        );
        common::stderr(&output)
    };
    let (hot, calm) = std::thread::scope(|s| {
        let hot = s.spawn(|| {
            run(
                "drift-hot",
                Some(r#"[{"at_s": 400, "faults": {"thermal_runaway": [1, 2]}}]"#),
            )
        });
        let calm = s.spawn(|| run("drift-calm", None));
        (hot.join().expect("runs"), calm.join().expect("runs"))
    });
    // Hotter than it settled at, and erring for it: either reason is the drift.
    assert!(hot.contains("has drifted"), "{hot}");
    assert!(!calm.contains("has drifted"), "{calm}");
}
