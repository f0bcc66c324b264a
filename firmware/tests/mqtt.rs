//! The daemon on a real broker (mosquitto): telemetry, retained state and status with its last
//! will, signed commands with their acks, every refusal, durable sleep across a restart, the
//! host-silence failsafe and the SIGTERM ramp-down.

mod common;

use std::time::Duration;

use common::fleet::{Broker, Daemon, Host, agent_topic, config, scratch};
use fleet_proto::Action;

const SOON: Duration = Duration::from_secs(20);

fn mode(seen: &common::fleet::Seen) -> String {
    seen.json()["mode"].as_str().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleep_survives_a_restart_and_every_bad_command_is_refused() {
    let dir = scratch("sleep");
    let broker = Broker::start(&dir);
    let mut host = Host::connect(broker.port, "test-host").await;
    let config_text = config(broker.port, &dir.join("data"), "");
    let daemon = Daemon::start(&dir, &config_text, "first");

    // Online, retained; mining with a hash rate.
    let status = host
        .wait_for("status", SOON, |s| s.text() == "online")
        .await;
    assert!(status.retain || status.text() == "online");
    host.wait_for("telemetry", SOON, |s| {
        mode(s) == "mining" && s.json()["hashrate_ths"]["s5"].as_f64().unwrap_or(0.0) > 0.0
    })
    .await;

    // Refusals, each with its reason, none changing anything.
    let unsigned = serde_json::to_vec(&host.command(Action::Sleep, 5)).expect("encodes");
    let mut forged: serde_json::Value =
        serde_json::from_slice(&host.sign(&host.command(Action::Sleep, 6))).expect("json");
    let sig = forged["sig"].as_str().expect("sig").to_string();
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    forged["sig"] = format!("{flipped}{}", &sig[1..]).into();
    let mut expired = host.command(Action::Sleep, 7);
    expired.issued_at -= 120;
    expired.expires_at = expired.issued_at + 60;
    let mut foreign = host.command(Action::Sleep, 8);
    foreign.miner = fleet_proto::Name::new("another-miner").expect("valid");
    // What fails its signature is answered without its id (nothing unverified is echoed: a
    // forged command must not fail the agent's real one of that id); the rest name it.
    for (payload, reason) in [
        (unsigned, "unsigned command"),
        (
            serde_json::to_vec(&forged).expect("encodes"),
            "bad signature",
        ),
    ] {
        host.send(payload).await;
        let ack = host
            .wait_for("ack", SOON, |s| {
                s.json()["reason"].as_str().unwrap_or("").contains(reason)
            })
            .await
            .json();
        assert_eq!(ack["status"], "rejected", "{ack}");
        assert!(ack["id"].is_null(), "{ack}");
    }
    let cases: [(&str, Vec<u8>, &str); 2] = [
        ("cmd-000007", host.sign(&expired), "expired at"),
        ("cmd-000008", host.sign(&foreign), "not this one"),
    ];
    for (id, payload, reason) in cases {
        host.send(payload).await;
        let ack = host.final_ack(id).await;
        assert_eq!(ack["status"], "rejected", "{id}: {ack}");
        assert!(
            ack["reason"].as_str().unwrap_or("").contains(reason),
            "{id}: {ack}"
        );
    }
    host.send(b"\x00garbage{".to_vec()).await;
    let garbage = host
        .wait_for("ack", SOON, |s| s.json()["id"].is_null())
        .await
        .json();
    assert_eq!(garbage["status"], "rejected");
    assert!(
        garbage["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("malformed")
    );
    host.wait_for("telemetry", SOON, |s| mode(s) == "mining")
        .await;

    // A signed sleep: accepted, then applied; the chains go idle and the state says durable.
    let sleep = host.sign(&host.command(Action::Sleep, 10));
    host.send(sleep.clone()).await;
    host.wait_for("ack", SOON, |s| {
        s.json()["id"] == "cmd-000010" && s.json()["status"] == "accepted"
    })
    .await;
    let applied = host.final_ack("cmd-000010").await;
    assert_eq!(applied["status"], "applied", "{applied}");
    // The state follows the applied ack, before the next telemetry.
    let state = host.wait_for("state", SOON, |_| true).await;
    assert!(state.retain || state.json()["durable_sleep"] == true);
    assert_eq!(state.json()["durable_sleep"], true, "{:?}", state.text());
    let asleep = host
        .wait_for("telemetry", SOON, |s| mode(s) == "sleeping")
        .await
        .json();
    assert_eq!(asleep["power_w"], 0.0);
    assert_eq!(asleep["chains"][0]["chips_alive"], 0);
    // The same command again (a redelivery): nothing new.
    host.send(sleep.clone()).await;
    assert_eq!(host.final_ack("cmd-000010").await["status"], "duplicate");

    // A clean stop: ramped down, `offline` said, exit 0.
    let (status, summary) = daemon.terminate();
    assert!(status.success(), "{status:?}");
    assert_eq!(summary["sim"]["final_power_w"], 0.0, "{summary}");
    host.wait_for("status", SOON, |s| s.text() == "offline")
        .await;

    // Restarted: still asleep, with the chain never powered.
    let daemon = Daemon::start(&dir, &config_text, "second");
    host.wait_for("status", SOON, |s| s.text() == "online")
        .await;
    let after = host
        .wait_for("telemetry", SOON, |s| s.json()["uptime_s"].is_u64())
        .await
        .json();
    assert_eq!(after["mode"], "sleeping", "{after}");
    assert_eq!(after["power_w"], 0.0);
    // The old command is still recognised after the restart.
    host.send(sleep.clone()).await;
    assert_eq!(host.final_ack("cmd-000010").await["status"], "duplicate");

    // Woken: mining again.
    host.send(host.sign(&host.command(Action::Wake, 11))).await;
    assert_eq!(host.final_ack("cmd-000011").await["status"], "applied");
    host.wait_for("telemetry", SOON, |s| {
        mode(s) == "mining" && s.json()["hashrate_ths"]["s5"].as_f64().unwrap_or(0.0) > 0.0
    })
    .await;
    // The old sleep replayed now is refused as a replay, and the miner keeps mining.
    host.send(sleep).await;
    let replay = host.final_ack("cmd-000010").await;
    assert_eq!(replay["status"], "rejected");
    assert!(
        replay["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("replayed")
    );
    host.wait_for("telemetry", SOON, |s| mode(s) == "mining")
        .await;
    let (status, _) = daemon.terminate();
    assert!(status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expert_settings_are_clamped_and_a_power_target_is_held() {
    let dir = scratch("expert");
    let broker = Broker::start(&dir);
    let mut host = Host::connect(broker.port, "test-host").await;
    let daemon = Daemon::start(&dir, &config(broker.port, &dir.join("data"), ""), "only");
    host.wait_for("telemetry", SOON, |s| mode(s) == "mining")
        .await;
    host.send(host.sign(&host.command(Action::SetFrequency { mhz: 900.0 }, 1)))
        .await;
    let ack = host.final_ack("cmd-000001").await;
    assert_eq!(ack["status"], "applied", "{ack}");
    assert!(
        ack["reason"]
            .as_str()
            .unwrap_or("")
            .contains("clamped 900 MHz to the board's limit 650 MHz"),
        "{ack}"
    );
    // A power target: the clock follows until the measured power is within a few percent.
    host.send(host.sign(&host.command(Action::SetPowerTarget { watts: 100.0 }, 2)))
        .await;
    let ack = host.final_ack("cmd-000002").await;
    assert_eq!(ack["status"], "applied", "{ack}");
    let state = host.wait_for("state", SOON, |_| true).await.json();
    assert_eq!(state["power_target_w"], 100.0, "{state}");
    assert_eq!(state["mode"], "power_target");
    let held = host
        .wait_for("telemetry", Duration::from_secs(40), |s| {
            let t = s.json();
            mode(s) == "power_target"
                && t["power_w"]
                    .as_f64()
                    .is_some_and(|w| (w / 100.0 - 1.0).abs() < 0.05)
        })
        .await
        .json();
    assert!(
        held["hashrate_ths"]["s5"].as_f64().unwrap_or(0.0) > 0.0,
        "{held}"
    );
    // A tuner mode takes over from the power target (tests/tune.rs follows a tune through).
    host.send(host.sign(&host.command(
        Action::SetMode {
            mode: fleet_proto::command::TuneMode::Efficiency,
        },
        3,
    )))
    .await;
    let ack = host.final_ack("cmd-000003").await;
    assert_eq!(ack["status"], "applied", "{ack}");
    let state = host
        .wait_for("state", SOON, |s| s.json()["tune"] == "efficiency")
        .await
        .json();
    assert!(state["power_target_w"].is_null(), "{state}");
    let (status, _) = daemon.terminate();
    assert!(status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_that_does_not_come_back_from_sleep_is_left_out_and_the_others_mine() {
    let dir = scratch("lost-chain");
    let broker = Broker::start(&dir);
    let mut host = Host::connect(broker.port, "test-host").await;
    // Two chains; the second breaks after chip 3 ten simulated seconds in (after bring-up).
    let text = config(broker.port, &dir.join("data"), "").replace(
        "name = \"bm1397-hashboard-12\"\n",
        "name = \"bm1397-hashboard-12\"\nchains = 2\n",
    );
    let daemon = Daemon::start_with_faults(
        &dir,
        &text,
        "only",
        5.0,
        r#"[{"at_s": 10, "chain": 1, "faults": {"break_after": 3}}]"#,
    );
    let both = |t: &serde_json::Value| t["chains"].as_array().map_or(0, Vec::len) == 2;
    host.wait_for("telemetry", SOON, |s| {
        mode(s) == "mining" && both(&s.json())
    })
    .await;
    // Past the break in chip time (10 s at 5×, by the miner's own clock), asleep, then woken.
    host.wait_miner_seconds(3).await;
    host.send(host.sign(&host.command(Action::Sleep, 1))).await;
    let ack = host.final_ack("cmd-000001").await;
    assert_eq!(ack["status"], "applied", "{ack}");
    host.send(host.sign(&host.command(Action::Wake, 2))).await;
    let ack = host.final_ack("cmd-000002").await;
    assert_eq!(ack["status"], "applied", "one chain came back: {ack}");
    let reason = ack["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("chain 1:") && reason.contains("4 answered") && reason.contains("left out"),
        "{ack}"
    );
    let telemetry = host
        .wait_for("telemetry", SOON, |s| {
            let t = s.json();
            mode(s) == "mining"
                && t["hashrate_ths"]["s5"].as_f64().is_some_and(|h| h > 0.0)
                && t["chains"][1]["chips_alive"] == 0
        })
        .await
        .json();
    assert_eq!(telemetry["chains"][0]["chips_alive"], 12, "{telemetry}");
    // Left out means left out: the next sleep and wake are the healthy chain's alone.
    host.send(host.sign(&host.command(Action::Sleep, 3))).await;
    assert_eq!(host.final_ack("cmd-000003").await["status"], "applied");
    host.send(host.sign(&host.command(Action::Wake, 4))).await;
    let ack = host.final_ack("cmd-000004").await;
    assert_eq!(ack["status"], "applied", "{ack}");
    assert!(ack["reason"].is_null(), "{ack}");
    let (status, _) = daemon.terminate();
    assert!(status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overheated_machine_told_to_sleep_reports_sleeping() {
    let dir = scratch("hot-sleep");
    let broker = Broker::start(&dir);
    let mut host = Host::connect(broker.port, "test-host").await;
    let daemon = Daemon::start_with_faults(
        &dir,
        &config(broker.port, &dir.join("data"), ""),
        "only",
        10.0,
        r#"[{"at_s": 0, "faults": {"fan_failure": true}}]"#,
    );
    host.wait_for("telemetry", Duration::from_secs(60), |s| {
        mode(s) == "overheated"
    })
    .await;
    host.send(host.sign(&host.command(Action::Sleep, 1))).await;
    let ack = host.final_ack("cmd-000001").await;
    assert_eq!(ack["status"], "applied", "{ack}");
    // What the agent verifies a curtailment by — sleeping, at no power — in the reports from a
    // snapshot after the sleep, long before the chips have cooled (a minute of chip time).
    let applied = std::time::Instant::now();
    let report = loop {
        let report = host.wait_for("telemetry", SOON, |_| true).await;
        if applied.elapsed() > Duration::from_millis(1_500) {
            break report;
        }
    };
    let telemetry = report.json();
    assert_eq!(mode(&report), "sleeping", "{telemetry}");
    assert_eq!(telemetry["power_w"].as_f64(), Some(0.0), "{telemetry}");
    let (status, _) = daemon.terminate();
    assert!(status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A miner whose failsafe sleeps after 2 s without its host, on a broker where the agent's
/// presence already says `online` — with the agent's signed heartbeat behind it, or without.
async fn failsafe_site(
    name: &str,
    heartbeat: bool,
) -> (std::path::PathBuf, Broker, Host, testbed::Process) {
    let dir = scratch(name);
    let broker = Broker::start(&dir);
    let mut host = Host::connect(broker.port, name).await;
    host.publish(agent_topic(), "online", true).await;
    if heartbeat {
        host.heartbeat().await;
    }
    let extra = "[mqtt.failsafe]\nafter_s = 2\naction = \"sleep\"\n";
    let daemon = Daemon::start(&dir, &config(broker.port, &dir.join("data"), extra), name);
    (dir, broker, host, daemon)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_online_without_the_agents_heartbeat_does_not_hold_off_the_failsafe() {
    // The agent is down; someone the broker lets in writes `online` where its presence is. Only
    // the agent's signed heartbeat vouches for it, and there is none: the failsafe sleeps.
    let (dir, _broker, mut host, daemon) = failsafe_site("failsafe-forged", false).await;
    host.wait_for("state", SOON, |s| s.json()["durable_sleep"] == true)
        .await;
    host.wait_for("telemetry", SOON, |s| mode(s) == "sleeping")
        .await;
    assert!(
        daemon
            .log_text()
            .contains("failsafe puts the machine to sleep")
    );
    let (status, _) = daemon.terminate();
    assert!(status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_host_trips_the_failsafe_and_a_killed_miner_leaves_its_will() {
    // The agent is there at first (online, and its signed heartbeat), then its presence says
    // offline (its own last will).
    let (dir, _broker, mut host, daemon) = failsafe_site("failsafe", true).await;
    host.wait_for("telemetry", SOON, |s| mode(s) == "mining")
        .await;
    // Heard: past the failsafe time (by the miner's own clock) and still mining.
    host.heartbeat().await;
    host.wait_miner_seconds(3).await;
    host.wait_for("telemetry", SOON, |s| mode(s) == "mining")
        .await;
    // One of a group of agents is there (its own presence topic): the single presence going
    // offline is not the host going silent.
    let peer = agent_topic().replace("/agent", "/agent/peers/agent-b");
    host.heartbeat().await;
    host.publish(peer.clone(), "online", true).await;
    host.publish(agent_topic(), "offline", true).await;
    host.wait_miner_seconds(3).await;
    host.wait_for("telemetry", SOON, |s| mode(s) == "mining")
        .await;
    // The last agent gone: the host is silent.
    host.publish(peer, "offline", true).await;
    let state = host
        .wait_for("state", SOON, |s| s.json()["durable_sleep"] == true)
        .await;
    assert_eq!(state.json()["mode"], "sleeping");
    host.wait_for("telemetry", SOON, |s| mode(s) == "sleeping")
        .await;
    assert!(
        daemon
            .log_text()
            .contains("failsafe puts the machine to sleep")
    );
    // kill -9: the broker publishes the last will.
    daemon.kill();
    host.wait_for("status", SOON, |s| s.text() == "offline")
        .await;
    let _ = std::fs::remove_dir_all(&dir);
}
