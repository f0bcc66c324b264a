//! Miners sign what they publish, and the agent listens only to enrolled keys (#16, "miners sign
//! what they publish"; findings 4–6 with signatures instead of plausibility alone). An anonymous
//! client forges m1's state as asleep — unsigned, and signed by a key of its own — invents 200
//! ghost miners (half of them signing with fresh keys), and answers m1's command with a forged
//! `failed` ack. Under a 0 kW grid cap the agent still puts the real m1 to sleep, files nothing
//! the forger said, holds at most `max_unenrolled` unknown miners, and does not command m2,
//! a real miner whose key the config does not name — on mosquitto and on the embedded broker.
//! Then, with `enrol = "first-seen"`, a key taken at first sight stays pinned across a restart.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use fleet_proto::report::DeviceSigner;
use testbed::site::{LoneAgent, grid_cap, miner_config, telemetry_until, unix_now};
use testbed::{Process, Via, Watcher, binary};

const SITE: &str = "enrol";
const SOON: Duration = Duration::from_secs(90);
const M1_SEED: [u8; 32] = [21; 32];

/// Puts the device key `seed` where `hashwarden-fw` keeps it for the miner at `name`.
fn place_device_key(dir: &std::path::Path, name: &str, seed: &[u8; 32]) {
    let data = dir.join(format!("data-{name}"));
    std::fs::create_dir_all(&data).expect("dir");
    let path = data.join("device.key");
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&path, format!("{hex}\n")).expect("writes");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// `hashwarden-fw device-key --config config`: the key the miner signs with.
fn device_key(config: &str) -> String {
    let output = std::process::Command::new(binary("hashwarden-fw"))
        .args(["device-key", "--config", config])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// `hashwarden <command> --config site.toml --json`, parsed.
fn agent_json(dir: &std::path::Path, command: &str) -> serde_json::Value {
    let output = std::process::Command::new(binary("hashwarden"))
        .args([command, "--config"])
        .arg(dir.join("site.toml"))
        .arg("--json")
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("JSON")
}

/// Polls `hashwarden enrolment --json` until `done` holds.
async fn enrolment_until(
    dir: &std::path::Path,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + SOON;
    loop {
        let listing = agent_json(dir, "enrolment");
        if done(&listing) {
            return listing;
        }
        assert!(Instant::now() < deadline, "{listing}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn signed(signer: &DeviceSigner, topic: &str, report: &serde_json::Value) -> String {
    String::from_utf8(signer.wire(topic, report).expect("encodes")).expect("text")
}

async fn only_enrolled_miners_are_heard(via: Via) {
    let m1_key = DeviceSigner::from_seed(&M1_SEED);
    let extra = format!(
        "[market]\nhashprice = 500.0\n[[machines]]\nid = \"m1\"\npublic_key = \"{}\"\n{}",
        m1_key.public_hex(),
        testbed::site::feeds_section()
    );
    let site = LoneAgent::start_enrolling("enrolment", SITE, via, "config", &extra).await;
    let (dir, port) = (&site.dir, site.port);
    let mut watcher =
        Watcher::connect(port, "enrol-watch", &format!("hashwarden/v1/{SITE}/#")).await;
    watcher.subscribed().await;

    place_device_key(dir, "m1", &M1_SEED);
    let m1_config = miner_config(dir, SITE, "m1", port, &site.public_key, 1_300, 250.0);
    assert_eq!(device_key(&m1_config), m1_key.public_hex());
    let m2_config = miner_config(dir, SITE, "m2", port, &site.public_key, 1_300, 250.0);
    let m2_key = device_key(&m2_config);
    let _m1 = Process::sim_miner(&m1_config, dir.join("m1.log"));
    let _m2 = Process::sim_miner(&m2_config, dir.join("m2.log"));
    telemetry_until(&mut watcher, &["m1", "m2"], SOON, |latest| {
        latest.values().all(testbed::site::mining)
    })
    .await;
    // m2 signs, but its key is not in the config: held for the operator, with that key.
    enrolment_until(dir, |l| {
        l["unenrolled"]
            .as_array()
            .is_some_and(|held| held.iter().any(|h| h["miner"] == "m2"))
    })
    .await;

    // The forger: m1 asleep (unsigned, and under a key of its own), then 200 ghosts.
    let forger = Watcher::connect(port, "forger", &format!("hashwarden/v1/{SITE}/m1/cmd")).await;
    let mut state = serde_json::from_slice::<serde_json::Value>(
        &fleet_proto::examples::payload("/state").expect("example"),
    )
    .expect("JSON");
    state["mode"] = "sleeping".into();
    state["at"] = unix_now().into();
    let m1_state = format!("hashwarden/v1/{SITE}/m1/state");
    let own_key = DeviceSigner::from_seed(&[99; 32]);
    forger.publish(&m1_state, &state.to_string(), true).await;
    forger
        .publish(&m1_state, &signed(&own_key, &m1_state, &state), true)
        .await;
    for g in 0..200u32 {
        let topic = |kind: &str| format!("hashwarden/v1/{SITE}/ghost{g}/{kind}");
        forger.publish(&topic("status"), "online", true).await;
        let body = if g % 2 == 0 {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&g.to_be_bytes());
            signed(&DeviceSigner::from_seed(&seed), &topic("state"), &state)
        } else {
            state.to_string()
        };
        forger.publish(&topic("state"), &body, true).await;
    }

    // A 0 kW cap: the agent knows m1 is mining, whatever was forged, and puts it to sleep.
    grid_cap(&watcher, SITE, Some(0.0)).await;
    let mut forger = forger;
    forger.subscribed().await;
    let command = forger.wait_for("/m1/cmd", SOON, |_| true).await.json();
    let id = command["id"].as_str().expect("a command id").to_string();
    let ack = format!(
        "{{\"v\":1,\"id\":\"{id}\",\"miner\":\"m1\",\"status\":\"failed\",\"reason\":\"FORGED\",\"at\":{}}}",
        unix_now()
    );
    let m1_ack = format!("hashwarden/v1/{SITE}/m1/ack");
    forger.publish(&m1_ack, &ack, false).await;
    let ack_value: serde_json::Value = serde_json::from_str(&ack).expect("JSON");
    forger
        .publish(&m1_ack, &signed(&own_key, &m1_ack, &ack_value), false)
        .await;
    telemetry_until(&mut watcher, &["m1"], SOON, |latest| {
        testbed::site::asleep(&latest["m1"])
    })
    .await;

    // m1's change is verified and nothing the forger said was filed.
    let deadline = Instant::now() + SOON;
    loop {
        let explained = std::process::Command::new(binary("hashwarden"))
            .args(["explain", "m1", "--json", "--config"])
            .arg(dir.join("site.toml"))
            .output()
            .expect("runs");
        let text = String::from_utf8_lossy(&explained.stdout).into_owned();
        assert!(!text.contains("FORGED"), "{text}");
        if text.contains("\"verified\"") {
            assert!(!text.contains("\"failed\""), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // m2, not enrolled, was never commanded: still mining under the cap.
    let m2 = telemetry_until(&mut watcher, &["m2"], SOON, |_| true).await;
    assert!(testbed::site::mining(&m2["m2"]), "{}", m2["m2"]);

    // What the operator sees: m1 enrolled from the config; m2 and a few ghosts waiting, no more
    // than the site holds (8), m2's key ready to paste; the fleet table m1 alone.
    let listing = agent_json(dir, "enrolment");
    assert_eq!(listing["mode"], "config");
    let enrolled = listing["enrolled"].as_array().expect("a list");
    assert_eq!(enrolled.len(), 1, "{listing}");
    assert_eq!(enrolled[0]["miner"], "m1");
    assert_eq!(enrolled[0]["how"], "config");
    let held = listing["unenrolled"].as_array().expect("a list");
    assert!(held.len() <= 8, "{listing}");
    let m2_held = held.iter().find(|h| h["miner"] == "m2").expect("m2 held");
    assert_eq!(m2_held["public_key"], m2_key.as_str());
    let status = agent_json(dir, "status");
    let rows = status.as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{status}");
    assert_eq!(rows[0]["miner"], "m1");
    assert_eq!(rows[0]["enrolment"], "config");
    let log = site.agent.log_text();
    for refusal in [
        "m1: unsigned",
        "m1: signed by key",
        "not enrolled, and 8 unknown miners are held already",
    ] {
        assert!(log.contains(refusal), "{refusal:?} not in:\n{log}");
    }
    let metrics = testbed::http_get(site.metrics_port, "/metrics");
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hashwarden_messages_refused_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(refused >= 200.0, "{metrics}");
    site.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_enrolled_miners_are_heard_on_mosquitto() {
    only_enrolled_miners_are_heard(Via::Mosquitto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_enrolled_miners_are_heard_on_the_embedded_broker() {
    only_enrolled_miners_are_heard(Via::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_taken_at_first_sight_stays_pinned_across_a_restart() {
    let site = LoneAgent::start(
        "first-seen",
        SITE,
        Via::Mosquitto,
        "[market]\nhashprice = 500.0\n",
    )
    .await;
    let LoneAgent {
        dir,
        broker,
        port,
        metrics_port,
        public_key,
        agent,
    } = site;
    let m1_config = miner_config(&dir, SITE, "m1", port, &public_key, 1_300, 250.0);
    let m1_key = device_key(&m1_config);
    let m1 = Process::sim_miner(&m1_config, dir.join("m1.log"));
    let listing = enrolment_until(&dir, |l| {
        l["enrolled"]
            .as_array()
            .is_some_and(|e| e.iter().any(|row| row["miner"] == "m1"))
    })
    .await;
    assert_eq!(listing["enrolled"][0]["how"], "first-seen");
    assert_eq!(listing["enrolled"][0]["public_key"], m1_key.as_str());
    agent
        .wait_for_log("device key enrolled at first sight", SOON)
        .await;
    let (status, summary) = agent.terminate();
    assert!(status.success(), "{summary}");
    m1.kill();

    // Restarted, with m1 gone: someone else speaking as m1 is not m1.
    let config = dir.join("site.toml").display().to_string();
    let agent = Process::start(
        &binary("hashwarden"),
        &["run", "--config", &config],
        dir.join("agent-2.log"),
    );
    let listening = Instant::now() + SOON;
    while testbed::try_http_get(metrics_port, "/metrics").is_none() {
        assert!(Instant::now() < listening, "{}", agent.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let impostor = Watcher::connect(port, "impostor", "nothing/#").await;
    let topic = format!("hashwarden/v1/{SITE}/m1/telemetry");
    let telemetry: serde_json::Value =
        serde_json::from_slice(&fleet_proto::examples::payload("/telemetry").expect("example"))
            .expect("JSON");
    let other = DeviceSigner::from_seed(&[77; 32]);
    impostor
        .publish(&topic, &signed(&other, &topic, &telemetry), false)
        .await;
    agent.wait_for_log("m1: signed by key", SOON).await;
    assert!(
        !agent.log_text().contains("enrolled at first sight"),
        "{}",
        agent.log_text()
    );
    let (status, summary) = agent.terminate();
    assert!(status.success(), "{summary}");
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
