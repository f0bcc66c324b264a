//! A forged `offline` on the agent's presence topic (#16, finding 2) no longer puts a site's
//! miners to sleep: the running agent answers it with `online` at once, so a miner whose
//! failsafe sleeps after 2 s of silence keeps mining — on mosquitto and on the embedded broker.

use std::time::{Duration, Instant};

use testbed::site::LoneAgent;
use testbed::{Process, Via, Watcher};

const SITE: &str = "presence";
const SOON: Duration = Duration::from_secs(60);

async fn a_forged_offline_is_answered(via: Via) {
    let site = LoneAgent::start("presence", SITE, via, "[market]\nhashprice = 500.0\n").await;
    let (dir, port, agent) = (&site.dir, site.port, &site.agent);
    let mut watcher =
        Watcher::connect(port, "presence-watch", &format!("hashwarden/v1/{SITE}/#")).await;
    watcher.subscribed().await;
    watcher
        .wait_for("/agent", SOON, |s| s.payload == b"online")
        .await;
    // A miner that sleeps after 2 s without its host.
    let miner_config =
        testbed::site::miner_config(dir, SITE, "m1", port, &site.public_key, 1_300, 250.0);
    let mut text = std::fs::read_to_string(&miner_config).expect("reads");
    text.push_str("[mqtt.failsafe]\nafter_s = 2\naction = \"sleep\"\n");
    std::fs::write(&miner_config, text).expect("writes");
    let miner = Process::sim_miner(&miner_config, dir.join("m1.log"));
    watcher
        .wait_for("/m1/telemetry", SOON, |s| s.json()["mode"] == "mining")
        .await;

    // The attack: one anonymous client writes `offline`, retained, where the agent's presence is.
    let attacker = Watcher::connect(port, "attacker", "nothing/#").await;
    attacker
        .publish(&format!("hashwarden/v1/{SITE}/agent"), "offline", true)
        .await;
    watcher
        .wait_for("/agent", SOON, |s| s.payload == b"offline")
        .await;
    watcher
        .wait_for("/agent", SOON, |s| s.payload == b"online")
        .await;
    // Well past the failsafe's 2 s: still mining, and no failsafe in the miner's log.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let report = watcher
            .wait_for("/m1/telemetry", SOON, |_| true)
            .await
            .json();
        assert_eq!(report["mode"], "mining", "{report}");
    }
    let log = miner.log_text();
    assert!(!log.contains("failsafe"), "{log}");
    assert!(
        agent
            .log_text()
            .contains("someone else wrote this agent's presence"),
        "{}",
        agent.log_text()
    );

    // A clean stop still says goodbye (its own `offline` is not answered).
    drop(miner);
    let mut after = Watcher::connect(port, "after", &format!("hashwarden/v1/{SITE}/agent")).await;
    after.subscribed().await;
    let via_mosquitto = site.broker.is_some();
    site.finish();
    if via_mosquitto {
        after
            .wait_for("/agent", SOON, |s| s.payload == b"offline")
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_offline_is_answered_on_mosquitto() {
    a_forged_offline_is_answered(Via::Mosquitto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_offline_is_answered_on_the_embedded_broker() {
    a_forged_offline_is_answered(Via::Embedded).await;
}
