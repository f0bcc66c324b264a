//! Hostile clients against a real miner on a locked-down broker (issue #7). mosquitto with TLS,
//! passwords and the ACL of `docs/operations.md`: another miner's login cannot command, spoof
//! or silence anyone; and an attacker holding the agent's broker login but not its signing key —
//! forged signatures, a replayed command, malformed and oversized payloads, a flood — changes
//! nothing on the miner, which keeps mining and answers each signed-looking attempt with a
//! rejection that says why.

use std::time::Duration;

use fleet_mqtt::{Connection, Secret};
use fleet_proto::{Action, Command, CommandSigner, Name};
use testbed::{Broker, Process, Seen, TestPki, Watcher, scratch};

const SITE: &str = "tx-acl";
const SOON: Duration = Duration::from_secs(45);
const HOST_SEED: [u8; 32] = [5; 32];

/// The ACL from docs/operations.md, for this site.
fn acl() -> String {
    include_str!("../../docs/mosquitto.acl").replace("<site>", SITE)
}

fn command(action: Action, seq: u64) -> Command {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Command {
        v: fleet_proto::command::VERSION,
        id: format!("cmd-{seq}"),
        site: Name::new(SITE).expect("valid"),
        miner: Name::new("m1").expect("valid"),
        issued_at: now,
        expires_at: now + 60,
        seq,
        action,
    }
}

fn signed(signer: &CommandSigner, command: &Command) -> String {
    serde_json::to_string(&signer.sign(command).expect("signs")).expect("encodes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_change_nothing_and_every_attempt_is_visible() {
    let dir = scratch("hostile");
    let pki = TestPki::generate(&dir);
    let broker = Broker::start_secured(
        &dir,
        &pki,
        &[("agent", "agent-pw"), ("m1", "m1-pw"), ("m2", "m2-pw")],
        Some(&acl()),
    );
    let url = format!("mqtts://localhost:{}", broker.port);
    let login = |user: &str, password: &str| {
        Connection::new(
            &url,
            Some(&pki.ca),
            Some(user),
            Some(&Secret::new(password)),
        )
        .expect("valid")
    };
    let host = CommandSigner::from_seed("host-test", &HOST_SEED);
    let public: String = host
        .public_key()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let data = dir.join("data-m1");
    std::fs::create_dir_all(&data).expect("dir");
    let config = dir.join("m1.toml");
    testbed::write_private(
        &config,
        &format!(
            "[board]\nname = \"bm1397-hashboard-12\"\n[daemon]\ndata_dir = \"{}\"\n\
             [mqtt]\nurl = \"{url}\"\nca_file = \"{}\"\nusername = \"m1\"\npassword = \"m1-pw\"\n\
             site = \"{SITE}\"\nminer = \"m1\"\ntelemetry_interval_s = 0.5\n\
             [[mqtt.trusted_keys]]\nid = \"host-test\"\npublic_key = \"{public}\"\n",
            data.display(),
            pki.ca.display()
        ),
    );
    let miner = Process::sim_miner(&config.display().to_string(), dir.join("m1.log"));
    let mut agent = Watcher::connect_to(
        &login("agent", "agent-pw"),
        "agent",
        &format!("hashwarden/v1/{SITE}/#"),
    )
    .await;
    agent
        .wait_for("/m1/telemetry", SOON, |s| s.json()["mode"] == "mining")
        .await;

    // Another miner's login: it may not command m1, speak for m1, or speak for the agent.
    let m2 = Watcher::connect_to(&login("m2", "m2-pw"), "m2", "hashwarden/v1/none").await;
    let spoof = "{\"spoofed\":\"by m2\"}";
    for topic in [
        "m1/cmd",
        "m1/telemetry",
        "m1/status",
        "agent",
        "agent/peers/x",
    ] {
        m2.publish(&format!("hashwarden/v1/{SITE}/{topic}"), spoof, false)
            .await;
    }
    // m2's own topics do get through: the ACL is what stops the rest.
    m2.publish(&format!("hashwarden/v1/{SITE}/m2/status"), "online", false)
        .await;
    agent
        .wait_for("/m2/status", SOON, |s| s.text() == "online")
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        if let Some(seen) = agent.try_next() {
            assert!(
                !seen.text().contains("spoofed"),
                "{}: {}",
                seen.topic,
                seen.text()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The agent's broker login without its key. A valid command first (a wake: no change),
    // captured and replayed; then forgeries, garbage, an oversized payload and a flood.
    let cmd_topic = format!("hashwarden/v1/{SITE}/m1/cmd");
    let valid = signed(&host, &command(Action::Wake, 100));
    agent.publish(&cmd_topic, &valid, false).await;
    let ack =
        |id: &'static str| move |s: &Seen| s.json()["id"] == id && s.json()["status"] != "accepted";
    let applied = agent.wait_for("/m1/ack", SOON, ack("cmd-100")).await;
    assert_eq!(applied.json()["status"], "applied", "{}", applied.text());
    agent.publish(&cmd_topic, &valid, false).await;
    let replayed = agent
        .wait_for("/m1/ack", SOON, |s| s.json()["id"] == "cmd-100")
        .await;
    assert_eq!(
        replayed.json()["status"],
        "duplicate",
        "the same command again is a redelivery"
    );
    let later = command(Action::Sleep, 101);
    let forged = signed(&CommandSigner::from_seed("host-test", &[6; 32]), &later);
    agent.publish(&cmd_topic, &forged, false).await;
    let refused = agent
        .wait_for("/m1/ack", SOON, |s| s.json()["reason"] == "bad signature")
        .await;
    assert_eq!(refused.json()["status"], "rejected");
    assert!(
        refused.json()["id"].is_null(),
        "a forgery's id is not echoed: {}",
        refused.text()
    );
    // An old command re-signed is no help either: an earlier sequence number is refused.
    let stale = signed(&host, &command(Action::Sleep, 99));
    agent.publish(&cmd_topic, &stale, false).await;
    let out_of_order = agent.wait_for("/m1/ack", SOON, ack("cmd-99")).await;
    assert!(
        out_of_order.json()["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("out of order"),
        "{}",
        out_of_order.text()
    );
    agent.publish(&cmd_topic, "{not json", false).await;
    let malformed = agent
        .wait_for("/m1/ack", SOON, |s| {
            s.json()["status"] == "rejected" && s.json()["id"].is_null()
        })
        .await;
    assert!(
        malformed.json()["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("malformed")
    );
    agent
        .publish_bytes(&cmd_topic, vec![b'x'; 200_000], false)
        .await;
    for i in 0..300 {
        agent
            .publish(&cmd_topic, &format!("{{\"flood\":{i}}}"), false)
            .await;
    }

    // Through all of it the miner mines, stays connected, and obeyed nothing but the wake.
    for _ in 0..6 {
        let seen = agent.wait_for("/m1/telemetry", SOON, |_| true).await;
        assert_eq!(seen.json()["mode"], "mining", "{}", seen.text());
        assert!(seen.json()["power_w"].as_f64().is_some_and(|w| w > 0.0));
    }
    let log = miner.log_text();
    assert!(
        !log.contains("connection lost"),
        "the miner was knocked off:\n{log}"
    );
    assert!(!log.contains("action=Sleep"), "{log}");
    assert_eq!(log.matches("command accepted").count(), 1, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
