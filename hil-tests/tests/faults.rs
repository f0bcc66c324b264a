//! Faults during operation, on a site the agent runs (issue #8): a chain that breaks, chips that
//! die, a noisy UART and a dead fan, each in its own `hashwarden-fw --sim` process, and a miner
//! that reports like any other but never acks a command. Each ends in the state
//! `docs/operations.md` ("When things break") documents, checked in the miners' own telemetry,
//! and the agent's audit log holds every command and every ack the broker carried.
//!
//! A killed agent and a restarted broker are `curtailment.rs`'s; the embedded broker with its
//! agent killed is `broker.rs`'s.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use hashwarden::store::AuditKind;
use testbed::site::{
    Bench, BrokerRecord, agent, asleep, grid_cap, measured_state, miner_config, mining,
    telemetry_until, unix_now,
};
use testbed::{Process, Watcher, binary};

const SITE: &str = "fault-site";
const SOON: Duration = Duration::from_secs(90);
/// Ten simulated seconds a second: a chip's silence window (25 nonces' worth, ~100 s of chip
/// time at the board's clock) passes in ten.
const SPEED: &str = "10";

/// (name, core mV, MHz, fault script in simulated seconds)
const MINERS: [(&str, u32, f64, &str); 5] = [
    ("healthy", 1400, 350.0, "[]"),
    (
        "chain-break",
        1350,
        300.0,
        r#"[{"at_s": 30, "faults": {"break_after": 3}}]"#,
    ),
    (
        "chip-death",
        1350,
        300.0,
        r#"[{"at_s": 30, "faults": {"unresponsive": [1, 2, 3]}}]"#,
    ),
    (
        "uart-noise",
        1300,
        250.0,
        r#"[{"at_s": 10, "faults": {"bit_flip_rate": 0.0005, "bad_crc_rate": 0.005, "drop_rate": 0.0005}}]"#,
    ),
    (
        "dead-fan",
        1300,
        250.0,
        r#"[{"at_s": 20, "faults": {"fan_failure": true}}]"#,
    ),
];

/// The miner that never acks. It draws what the healthy machine does at a third of its hash
/// rate, so the agent curtails it first.
const MUTE: &str = "never-acks";

fn fault_miner(dir: &std::path::Path, name: &str, config: &str, faults: &str) -> Process {
    let script = dir.join(format!("{name}-faults.json"));
    std::fs::write(&script, faults).expect("writes");
    let script = script.display().to_string();
    Process::start(
        &binary("hashwarden-fw"),
        &[
            "--sim",
            "--speed",
            SPEED,
            "--api-listen",
            "off",
            "--http-listen",
            "off",
            "--sim-faults",
            &script,
            "--config",
            config,
        ],
        dir.join(format!("{name}.log")),
    )
}

/// A miner by its messages alone — status, retained state, telemetry twice a second — that
/// takes its commands and never answers one: a daemon wedged in its command handler, or a
/// vendor firmware behind a broken bridge.
async fn never_acking_miner(port: u16, watts: f64, ths: f64) -> tokio::task::JoinHandle<()> {
    let prefix = format!("hashwarden/v1/{SITE}/{MUTE}");
    let client = Watcher::connect(port, MUTE, &format!("{prefix}/cmd")).await;
    // It signs what it says, as any miner the agent listens to must.
    let device = fleet_proto::report::DeviceSigner::from_seed(&[0x4d; 32]);
    let signed = move |topic: &str, report: &serde_json::Value| {
        String::from_utf8(device.wire(topic, report).expect("encodes")).expect("text")
    };
    let example = |suffix: &str| -> serde_json::Value {
        let bytes = fleet_proto::examples::payload(suffix).expect("documented");
        serde_json::from_slice(&bytes).expect("parses")
    };
    let mut state = example("/state");
    state["at"] = unix_now().into();
    state["mode"] = "mining".into();
    state["power_target_w"] = serde_json::Value::Null;
    state["curve"] = serde_json::json!([]);
    state["nameplate"]["power_w"] = watts.into();
    state["nameplate"]["hashrate_ths"] = ths.into();
    client
        .publish(&format!("{prefix}/status"), "online", true)
        .await;
    let state_topic = format!("{prefix}/state");
    client
        .publish(&state_topic, &signed(&state_topic, &state), true)
        .await;
    let started = unix_now();
    tokio::spawn(async move {
        let mut telemetry = example("/telemetry");
        loop {
            let now = unix_now();
            telemetry["at"] = now.into();
            telemetry["uptime_s"] = (3_600 + now - started).into();
            telemetry["mode"] = "mining".into();
            telemetry["power_w"] = watts.into();
            telemetry["hashrate_ths"] = serde_json::json!({"s5": ths, "m1": ths, "m15": ths});
            let topic = format!("{prefix}/telemetry");
            client
                .publish(&topic, &signed(&topic, &telemetry), false)
                .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

fn chips_alive(t: &serde_json::Value) -> u64 {
    t["chains"].as_array().map_or(0, |chains| {
        chains
            .iter()
            .filter_map(|c| c["chips_alive"].as_u64())
            .sum()
    })
}

fn power(t: &serde_json::Value) -> f64 {
    t["power_w"].as_f64().unwrap_or(0.0)
}

/// `hashwarden curtail|resume MINERS --wait --json`: each miner's outcome.
async fn by_hand(verb: &str, miners: &[&str], config: &str) -> BTreeMap<String, String> {
    let mut args = vec![verb.to_string()];
    args.extend(miners.iter().map(|m| m.to_string()));
    args.extend(
        ["--wait", "--timeout", "90s", "--json", "--config", config]
            .iter()
            .map(|a| a.to_string()),
    );
    if verb == "curtail" {
        args.extend(["--for".to_string(), "10m".to_string()]);
    }
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(binary("hashwarden"))
            .args(&args)
            .output()
            .expect("runs")
    })
    .await
    .expect("joins");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{verb}: {e}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    report["miners"]
        .as_array()
        .expect("a row per miner")
        .iter()
        .map(|row| {
            (
                row["miner"].as_str().unwrap_or("").to_string(),
                row["outcome"]["result"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_ends_in_its_documented_state_and_the_audit_log_keeps_everything() {
    let Bench {
        dir,
        broker,
        key,
        public_key,
        mut watcher,
    } = Bench::start("faults", SITE).await;
    let port = broker.port;
    // What the broker carried, to hold the audit log against.
    let mut record = BrokerRecord::connect(port, SITE, "record").await;

    let mut processes = BTreeMap::new();
    for (name, core_mv, mhz, faults) in MINERS {
        let config = miner_config(&dir, SITE, name, port, &public_key, core_mv, mhz);
        processes.insert(name, fault_miner(&dir, name, &config, faults));
    }
    let mut nameplate_w = BTreeMap::new();
    for (name, ..) in MINERS {
        let state = measured_state(&mut watcher, name, SOON).await;
        nameplate_w.insert(name, state["nameplate"]["power_w"].as_f64().unwrap_or(0.0));
    }
    let healthy_w = nameplate_w["healthy"];
    let healthy_ths =
        measured_state(&mut watcher, "healthy", SOON).await["nameplate"]["hashrate_ths"]
            .as_f64()
            .unwrap_or(0.0);
    let mute = never_acking_miner(port, healthy_w, healthy_ths / 3.0).await;
    let mut names: Vec<&str> = MINERS.iter().map(|m| m.0).collect();
    names.push(MUTE);

    let head = format!(
        "[site]\nname = \"{SITE}\"\npool_fee = 0.0\n\
         [tariff]\nkind = \"fixed\"\nprice = 0.06\n\
         [policy]\nmode = \"threshold\"\nmin_on_s = 2\nmin_off_s = 2\n\
         restore_cooldown_s = 2\nbatch_size = 10\nbatch_interval_s = 1\n\
         [market]\nhashprice = 500.0\n"
    );
    let config = testbed::site::agent_config(&dir, &head, port, &key);
    // Quick to give up on a silent miner, slow to try it again: the test sees one verdict.
    let commands = "[agent.commands]\nack_timeout_s = 2\nbackoff_s = 1\nmax_attempts = 2\n\
                    verify_within_s = 30\nretry_after_s = 3600\n";
    let text = std::fs::read_to_string(&config.path).expect("reads");
    std::fs::write(&config.path, format!("{text}{commands}")).expect("writes");
    let agent = agent(&dir, &config.path);

    // Device faults, as each miner's telemetry tells them.
    let overheated = std::cell::Cell::new(false);
    telemetry_until(&mut watcher, &names, SOON, |latest| {
        overheated.set(overheated.get() || latest["dead-fan"]["mode"] == "overheated");
        overheated.get()
            && chips_alive(&latest["chain-break"]) == 4
            && chips_alive(&latest["chip-death"]) == 9
            && chips_alive(&latest["healthy"]) == 12
            && mining(&latest["chain-break"])
            && mining(&latest["chip-death"])
            && mining(&latest["uart-noise"])
    })
    .await;

    // A grid cap that needs the never-acking miner and half a machine more asleep. It ignores
    // its curtailment: the agent gives up on it, counts what it still draws, and sleeps another
    // machine in its place — the site gets under the cap by the miners' own telemetry. (The
    // plan counts each machine at its nameplate, the dead fan's too, whatever it draws between
    // thermal stops.)
    let site_w: f64 = nameplate_w.values().sum::<f64>() + healthy_w;
    let cap_w = site_w - 1.5 * healthy_w;
    grid_cap(&watcher, SITE, Some(cap_w)).await;
    let under = telemetry_until(&mut watcher, &names, SOON, |l| {
        let drawn: f64 = l.values().map(power).sum();
        let asleep_real = l.iter().filter(|(n, t)| *n != MUTE && asleep(t)).count();
        // 3 %: a running chip draws a little more as it warms than at its first reading.
        drawn <= cap_w * 1.03 && asleep_real >= 2
    })
    .await;
    assert!(
        mining(&under[MUTE]),
        "the mute miner obeyed after all: {}",
        under[MUTE]
    );

    // The cap lifted: every real machine mines again.
    grid_cap(&watcher, SITE, None).await;
    telemetry_until(&mut watcher, &names, SOON, |l| {
        ["healthy", "chain-break", "chip-death", "uart-noise"]
            .iter()
            .all(|n| mining(&l[*n]))
    })
    .await;

    // By hand: the damaged machines obey a curtailment like healthy ones. The noisy one wakes
    // too (its bring-up retried past lost answers). A chain that lost chips does not: bring-up
    // checks the full count, so the wake fails with it, and the machine stays asleep at 0 W —
    // not powered back up as if whole — until someone repairs it.
    let damaged = ["chain-break", "chip-death", "uart-noise"];
    let curtailed = by_hand("curtail", &damaged, &config.path).await;
    for name in damaged {
        assert_eq!(
            curtailed.get(name).map(String::as_str),
            Some("verified"),
            "{curtailed:?}"
        );
    }
    let resumed = by_hand("resume", &damaged, &config.path).await;
    assert_eq!(
        resumed.get("uart-noise").map(String::as_str),
        Some("verified"),
        "{resumed:?}"
    );
    for name in ["chain-break", "chip-death"] {
        assert_eq!(
            resumed.get(name).map(String::as_str),
            Some("failed"),
            "{resumed:?}"
        );
    }
    telemetry_until(&mut watcher, &names, SOON, |l| {
        asleep(&l["chain-break"]) && asleep(&l["chip-death"]) && mining(&l["uart-noise"])
    })
    .await;

    let (status, summary) = agent.terminate();
    assert!(status.success(), "{summary}");
    assert_eq!(summary["unresponsive"], 1, "only the mute miner: {summary}");
    assert_eq!(summary["failed"], 2, "the two broken wakes: {summary}");
    mute.abort();

    // The noisy UART was noticed and survived: its frames were thrown away, never its state.
    let noisy = processes.remove("uart-noise").expect("started");
    let (_, noisy_summary) = noisy.terminate();
    assert!(
        noisy_summary["uart_errors"].as_u64().unwrap_or(0) > 0,
        "{noisy_summary}"
    );
    let chain_break_log = processes["chain-break"].log_text();
    assert!(chain_break_log.contains("chip silent"), "{chain_break_log}");

    // Every command on the broker is in the audit log as sent, every ack as received.
    let audit = common::audit_log(&dir.join("agent.db"));
    let (commands, acks) = (record.commands(), record.acks());
    common::assert_audited(&audit, &commands, &acks);
    assert!(
        commands.len() >= 6 && acks.len() >= 6,
        "{} commands, {} acks",
        commands.len(),
        acks.len()
    );
    for name in ["chain-break", "chip-death"] {
        assert!(
            audit.iter().any(|e| e.miner == name
                && e.kind == AuditKind::Failed
                && e.detail.contains("answered")),
            "{name}: the failed wake and its reason are in the audit log"
        );
    }
    let mute_history: Vec<_> = audit.iter().filter(|e| e.miner == MUTE).collect();
    assert!(
        mute_history
            .iter()
            .any(|e| e.kind == AuditKind::Unresponsive),
        "{mute_history:?}"
    );
    assert!(
        !mute_history.iter().any(|e| e.kind == AuditKind::Ack),
        "{mute_history:?}"
    );
    drop(processes);
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
