//! A site on a locked-down broker: mosquitto with TLS only and a password file. The agent and a
//! miner connect over `mqtts://` trusting the site's CA, log in, and a curtailment goes through;
//! a miner with the wrong password stays out and says why; no password appears in any log.

use std::time::Duration;

use fleet_mqtt::{Connection, Secret};
use testbed::{Broker, Process, TestPki, Watcher, binary, scratch};

const SITE: &str = "tx-secure";
const SOON: Duration = Duration::from_secs(45);

fn miner_config(
    dir: &std::path::Path,
    name: &str,
    url: &str,
    pki: &TestPki,
    password: &str,
    public_key: &str,
) -> String {
    let data = dir.join(format!("data-{name}"));
    std::fs::create_dir_all(&data).expect("data dir");
    let config = dir.join(format!("{name}.toml"));
    testbed::write_private(
        &config,
        &format!(
            "[board]\nname = \"bm1397-hashboard-12\"\n[daemon]\ndata_dir = \"{}\"\n\
             [mqtt]\nurl = \"{url}\"\nca_file = \"{}\"\nusername = \"{name}\"\npassword = \"{password}\"\n\
             site = \"{SITE}\"\nminer = \"{name}\"\ntelemetry_interval_s = 0.5\n\
             [[mqtt.trusted_keys]]\nid = \"host-test\"\npublic_key = \"{public_key}\"\n",
            data.display(),
            pki.ca.display(),
        ),
    );
    config.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_curtailment_goes_through_tls_and_passwords_and_strangers_stay_out() {
    let dir = scratch("secured");
    let pki = TestPki::generate(&dir);
    let broker = Broker::start_secured(
        &dir,
        &pki,
        &[
            ("agent", "agent-secret-1"),
            ("m1", "m1-secret-2"),
            ("watch", "watch-secret-3"),
            ("stranger", "the-real-one"),
        ],
        None,
    );
    let url = format!("mqtts://localhost:{}", broker.port);
    let agent_bin = binary("hashwarden");
    let key = dir.join("host.key");
    let public_key = testbed::agent_key(&key, "host-test");

    let watch = Connection::new(
        &url,
        Some(&pki.ca),
        Some("watch"),
        Some(&Secret::new("watch-secret-3")),
    )
    .expect("valid");
    let mut watcher =
        Watcher::connect_to(&watch, "test-watch", &format!("hashwarden/v1/{SITE}/#")).await;

    let sim = |name: &str, password: &str| {
        let config = miner_config(&dir, name, &url, &pki, password, &public_key);
        Process::sim_miner(&config, dir.join(format!("{name}.log")))
    };
    let miner = sim("m1", "m1-secret-2");
    let stranger = sim("stranger", "a-guess");

    let site = dir.join("site.toml");
    testbed::write_private(
        &site,
        &format!(
            "[site]\nname = \"{SITE}\"\n[tariff]\nkind = \"fixed\"\nprice = 0.06\n\
             [policy]\nmode = \"threshold\"\nmin_on_s = 2\nmin_off_s = 2\nbatch_interval_s = 1\n\
             [agent]\nmqtt_url = \"{url}\"\nca_file = \"{}\"\nusername = \"agent\"\npassword = \"agent-secret-1\"\n\
             key_file = \"{}\"\nkey_id = \"host-test\"\nenrol = \"first-seen\"\nplan_interval_s = 0.5\nstore = \"{}\"\n{}",
            pki.ca.display(),
            key.display(),
            dir.join("agent.db").display(),
            testbed::site::feeds_section()
        ),
    );
    let agent = Process::start(
        &agent_bin,
        &["run", "--config", &site.display().to_string()],
        dir.join("agent.log"),
    );
    watcher
        .wait_for("/agent", SOON, |s| s.payload == b"online")
        .await;
    let state = watcher
        .current("/m1/state", SOON, |s| {
            s.json()["nameplate"]["power_w"]
                .as_f64()
                .is_some_and(|w| w > 0.0)
        })
        .await
        .json();
    let j_per_th = state["nameplate"]["power_w"].as_f64().unwrap_or(0.0)
        / state["nameplate"]["hashrate_ths"].as_f64().unwrap_or(1.0);
    let under_water = j_per_th * 24.0 * 0.06 * 0.5;
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    watcher
        .publish(
            &format!("hashwarden/v1/{SITE}/market"),
            &testbed::site::market(SITE, under_water, at),
            true,
        )
        .await;
    watcher
        .wait_for("/m1/ack", SOON, |s| s.json()["status"] == "applied")
        .await;
    watcher
        .wait_for("/m1/telemetry", SOON, |s| s.json()["mode"] == "sleeping")
        .await;

    // The stranger never got in, and its log says why (once, not every second).
    let stranger_log = stranger.log_text();
    assert_eq!(
        stranger_log.matches("refuses this client").count(),
        1,
        "{stranger_log}"
    );
    assert!(
        watcher
            .try_next()
            .into_iter()
            .all(|s| !s.topic.contains("/stranger/")),
        "nothing from the stranger on the broker"
    );
    let (status, summary) = agent.terminate();
    assert!(status.success());
    assert_eq!(summary["commands_sent"], 1, "{summary}");
    for (name, log, secret) in [
        (
            "agent",
            std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default(),
            "agent-secret-1",
        ),
        ("m1", miner.log_text(), "m1-secret-2"),
        ("stranger", stranger_log, "a-guess"),
    ] {
        assert!(!log.is_empty(), "{name} logged");
        assert!(!log.contains(secret), "{name}'s password in its log");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
