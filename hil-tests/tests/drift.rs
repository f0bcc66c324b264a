//! Drift is put right (#16, finding 3): a miner the agent has verified at full power that then
//! falls asleep by itself — here a local pause on its own HTTP API, as a failsafe, a reboot or a
//! person at the rack would leave it — is woken again by the running agent, which audits it as
//! `drifted`. Before, the agent believed its verified change for ever and only a restart helped.

use std::io::{Read, Write};
use std::time::Duration;

use testbed::site::{
    Bench, agent, agent_config, efficiency, market, measured_state, miner_config, unix_now,
};
use testbed::{Process, free_port};

const SITE: &str = "drift";
const SOON: Duration = Duration::from_secs(60);
const TOKEN: &str = "a-local-operator-token";

/// `POST path` on the miner's HTTP API with the operator's token; the status line.
fn post(port: u16, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: miner\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("sends");
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply.lines().next().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_that_falls_asleep_by_itself_is_woken_again() {
    let Bench {
        dir,
        broker,
        key,
        public_key,
        mut watcher,
    } = Bench::start("drift", SITE).await;
    let port = broker.port;
    let config = miner_config(&dir, SITE, "m1", port, &public_key, 1_300, 250.0);
    let mut text = std::fs::read_to_string(&config).expect("reads");
    text.push_str(&format!("[api]\ntoken = \"{TOKEN}\"\n"));
    // It holds a secret now: the daemon refuses a file others can read.
    testbed::write_private(std::path::Path::new(&config), &text);
    let http = free_port();
    let http_listen = format!("127.0.0.1:{http}");
    let miner = Process::sim_miner_with_http(&config, &http_listen, dir.join("m1.log"));
    let breakeven = efficiency(&measured_state(&mut watcher, "m1", SOON).await) * 24.0 * 0.06;
    let head = format!(
        "[site]\nname = \"{SITE}\"\n[tariff]\nkind = \"fixed\"\nprice = 0.06\n\
         [policy]\nmode = \"threshold\"\nband = 0.05\nmin_on_s = 0\nmin_off_s = 0\n\
         restore_cooldown_s = 0\nbatch_size = 10\nbatch_interval_s = 1\n"
    );
    let agent_config = agent_config(&dir, &head, port, &key);
    let agent = agent(&dir, &agent_config.path);
    let market_topic = format!("hashwarden/v1/{SITE}/market");
    let publish = |hashprice: f64| market(SITE, hashprice, unix_now());

    // Under water, then above it again: a sleep and a wake, each verified by telemetry.
    watcher
        .publish(&market_topic, &publish(breakeven * 0.6), true)
        .await;
    agent
        .wait_for_log("verified by telemetry miner=m1 want=Sleep", SOON)
        .await;
    watcher
        .publish(&market_topic, &publish(breakeven * 1.5), true)
        .await;
    agent
        .wait_for_log("verified by telemetry miner=m1 want=Full", SOON)
        .await;

    // Someone pauses it on its own API: it sleeps, by itself.
    assert!(post(http, "/api/system/pause").contains("200"), "paused");
    watcher
        .wait_for("/m1/telemetry", SOON, |s| s.json()["mode"] == "sleeping")
        .await;
    // The agent sees the drift and wakes it again.
    agent
        .wait_for_log("drifted from its verified setting", SOON)
        .await;
    watcher
        .wait_for("/m1/telemetry", SOON, |s| s.json()["mode"] == "mining")
        .await;
    // …and verifies it, as any change.
    let woken = "verified by telemetry miner=m1 want=Full";
    let deadline = std::time::Instant::now() + SOON;
    while agent.log_text().matches(woken).count() < 2 {
        assert!(std::time::Instant::now() < deadline, "{}", agent.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (status, summary) = agent.terminate();
    assert!(status.success(), "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert!(
        summary["verified"].as_u64().unwrap_or(0) >= 3,
        "sleep, wake and the wake after the drift: {summary}"
    );
    let audit = hashwarden::store::Store::open(&dir.join("agent.db"))
        .expect("the agent's store")
        .history(Some("m1"), 100)
        .expect("reads");
    assert!(
        audit
            .iter()
            .any(|e| e.kind == hashwarden::store::AuditKind::Drifted),
        "audited as drifted"
    );
    drop(miner);
    let _ = std::fs::remove_dir_all(&dir);
}
