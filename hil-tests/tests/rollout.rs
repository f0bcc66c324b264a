//! A firmware rollout end to end (issue #7): `hashwarden flash` queues it, the agent serves the
//! image and commands four real miners, each under `hashwarden-fw supervise` on a simulated
//! board, on mosquitto. A build that dies at start is rolled back by the canary's own board, and
//! the rollout halts with nobody else touched; a good build then goes out canary first, in
//! waves, and every miner comes back reporting it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fleet_proto::image::Version;
use testbed::site::Bench;
use testbed::{Process, binary, release};

const SITE: &str = "tx-west";
const BOARD: &str = "bm1397-hashboard-12";
const MINERS: [&str; 4] = ["m1", "m2", "m3", "m4"];
const SOON: Duration = Duration::from_secs(45);

/// A signed image of `script` at `version`, written to `dir/name`.
fn image(dir: &Path, name: &str, script: &str, version: Version) -> String {
    let path = dir.join(name);
    std::fs::write(&path, release::image(script, version, BOARD)).expect("writes");
    path.display().to_string()
}

/// A miner trusting the agent's key and the release key, under a supervisor that gives a new
/// build 20 s and two starts to come up.
fn supervised_miner(dir: &Path, name: &str, port: u16, agent_key: &str) -> Process {
    let data = dir.join(format!("data-{name}"));
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[board]\nname = \"{BOARD}\"\n[daemon]\ndata_dir = \"{}\"\n\
             [mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\nsite = \"{SITE}\"\nminer = \"{name}\"\n\
             telemetry_interval_s = 0.5\n\
             [[mqtt.trusted_keys]]\nid = \"host-test\"\npublic_key = \"{agent_key}\"\n\
             [update]\nrelease_keys = [{{ id = \"{}\", public_key = \"{}\" }}]\n\
             health_deadline_s = 20\nmax_attempts = 2\n",
            data.display(),
            release::KEY_ID,
            release::public_key()
        ),
    )
    .expect("writes");
    Process::supervised_sim_miner(
        &config.display().to_string(),
        dir.join(format!("{name}.log")),
    )
}

fn boot(dir: &Path, miner: &str) -> serde_json::Value {
    std::fs::read(dir.join(format!("data-{miner}/firmware/boot.json")))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::json!({"active": null, "trial": null}))
}

/// `hashwarden flash` to every miner, followed to its end: its exit status and JSON report.
async fn flash(config: &str, image: &str, canary: &str) -> (bool, serde_json::Value) {
    let mut args: Vec<String> = [
        "flash",
        "--config",
        config,
        "--image",
        image,
        "--pubkey",
        &release::public_key(),
        "--canary",
        canary,
        "--batch",
        "2",
        "--max-offline",
        "2",
        "--deadline",
        "25s",
        "--settle",
        "3s",
        "--timeout",
        "3m",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(MINERS.iter().map(|m| m.to_string()));
    let output = tokio::task::spawn_blocking(move || {
        Command::new(binary("hashwarden"))
            .args(&args)
            .output()
            .expect("runs")
    })
    .await
    .expect("joins");
    let report = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    assert!(
        report.is_object(),
        "no report: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), report)
}

fn outcomes(report: &serde_json::Value) -> Vec<(String, String)> {
    report["miners"]
        .as_array()
        .map(|miners| {
            miners
                .iter()
                .map(|m| {
                    (
                        m["miner"].as_str().unwrap_or("").to_string(),
                        m["outcome"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_build_halts_at_the_canary_and_a_good_one_reaches_every_miner() {
    let Bench {
        dir,
        broker,
        key: agent_key_file,
        public_key: agent_key,
        mut watcher,
    } = Bench::start("rollout", SITE).await;
    let port = broker.port;
    let miners: Vec<Process> = MINERS
        .iter()
        .map(|name| supervised_miner(&dir, name, port, &agent_key))
        .collect();
    let mut factory = serde_json::Value::Null;
    for name in MINERS {
        factory = watcher
            .current(&format!("/{name}/state"), SOON, |s| {
                s.json()["firmware"].is_string()
            })
            .await
            .json()["firmware"]
            .clone();
    }
    // A market far above every breakeven: the plan leaves every miner mining throughout.
    let head = format!(
        "[site]\nname = \"{SITE}\"\n[tariff]\nkind = \"fixed\"\nprice = 0.05\n\
         [market]\nhashprice = 500.0\n"
    );
    let config = testbed::site::agent_config(&dir, &head, port, &agent_key_file).path;
    let agent = testbed::site::agent(&dir, &config);

    // A build that exits at once: the canary's supervisor gives it two starts and goes back to
    // the factory build; the rollout halts there.
    let bad = image(&dir, "bad.img", "#!/bin/sh\nexit 3\n", Version(0, 8, 0));
    let (succeeded, report) = flash(&config, &bad, "1").await;
    assert!(!succeeded, "{report}");
    assert_eq!(report["halted"], "a canary failed", "{report}");
    let result = outcomes(&report);
    assert_eq!(result[0], ("m1".into(), "failed".into()), "{report}");
    assert!(
        report["miners"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("rolled back")),
        "{report}"
    );
    for (miner, outcome) in &result[1..] {
        assert_eq!(outcome, "not_started", "{miner}: {report}");
        assert_eq!(
            boot(&dir, miner),
            serde_json::json!({"active": null, "trial": null}),
            "{miner} was touched"
        );
    }
    assert_eq!(
        boot(&dir, "m1"),
        serde_json::json!({"active": null, "trial": null}),
        "the canary went back to its factory build"
    );
    watcher
        .wait_for("/m1/telemetry", SOON, |s| {
            let t = s.json();
            t["firmware"] == factory && t["mode"] == "mining"
        })
        .await;

    // A good build: the canary, then waves of two; every miner reports it, committed.
    let version = Version(0, 9, 0);
    let script = release::script_running(&binary("hashwarden-fw"), version);
    let good = image(&dir, "good.img", &script, version);
    let (succeeded, report) = flash(&config, &good, "1").await;
    assert!(succeeded, "{report}");
    assert_eq!(report["tally"]["updated"], 4, "{report}");
    for name in MINERS {
        watcher
            .current(&format!("/{name}/state"), SOON, |s| {
                s.json()["firmware"] == "0.9.0"
            })
            .await;
        assert_eq!(boot(&dir, name)["trial"], serde_json::Value::Null);
        assert!(boot(&dir, name)["active"].is_string(), "{name} committed");
    }

    // Every step is in the audit log: `hashwarden explain` tells a miner's update story.
    let explained = Command::new(binary("hashwarden"))
        .args(["explain", "m3", "--config", &config, "--last", "100"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&explained.stdout);
    for step in [
        "Update {",
        "Applied: installed 0.9.0",
        "installed on trial",
        "running the new version",
        "updated",
    ] {
        assert!(text.contains(step), "{step:?} in:\n{text}");
    }
    let (status, summary) = agent.terminate();
    assert!(status.success(), "{summary}");
    drop(miners);
    let _ = std::fs::remove_dir_all(&dir);
}
