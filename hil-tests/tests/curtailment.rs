//! The agent and real miners on a real broker: `hashwarden run` and two `hashwarden-fw --sim`
//! daemons on mosquitto. A market reading between the two machines' breakevens sleeps exactly
//! the one under water, verified by its telemetry; a recovery past the band wakes it again.

mod common;

use std::time::Duration;

use testbed::site::{BrokerRecord, efficiency, miner_config, unix_now};
use testbed::{Broker, Process, Seen, Via, Watcher, binary, free_port, http_get, scratch};

const SITE: &str = "tx-west";
const SOON: Duration = Duration::from_secs(45);
const POWER_PRICE: f64 = 0.06;

fn mode(seen: &Seen) -> String {
    seen.json()["mode"].as_str().unwrap_or("").to_string()
}

async fn measured_state(watcher: &mut Watcher, name: &str) -> serde_json::Value {
    testbed::site::measured_state(watcher, name, SOON).await
}

/// A site on a real broker: the agent's key, two miners trusting it (an efficient one at 1.30 V
/// and 250 MHz, a hot one at 1.50 V and its default clock), and the agent's configuration.
struct Site {
    dir: std::path::PathBuf,
    /// mosquitto, or `None` when the agent runs the embedded broker on `port`.
    broker: Option<Broker>,
    port: u16,
    watcher: Watcher,
    /// What the broker carried, one record per broker life (a restart forgets subscriptions).
    records: Vec<BrokerRecord>,
    agent_bin: std::path::PathBuf,
    config: String,
    metrics_port: u16,
    hot_miner: Process,
    _efficient_miner: Process,
}

impl Site {
    async fn start(name: &str, via: Via) -> Self {
        let dir = scratch(name);
        let broker = (via == Via::Mosquitto).then(|| Broker::start(&dir));
        let port = broker.as_ref().map_or_else(free_port, |b| b.port);
        let agent_bin = binary("hashwarden");
        let key = dir.join("host.key");
        let public_key = testbed::agent_key(&key, "host-test");
        let watcher =
            Watcher::connect(port, "test-watch", &format!("hashwarden/v1/{SITE}/#")).await;
        let records = vec![BrokerRecord::connect(port, SITE, "record").await];
        let start_miner = |name: &str, core_mv: u32, mhz: f64| {
            let config = miner_config(&dir, SITE, name, port, &public_key, core_mv, mhz);
            Process::sim_miner(&config, dir.join(format!("{name}.log")))
        };
        let efficient_miner = start_miner("efficient", 1300, 250.0);
        let hot_miner = start_miner("hot", 1500, 425.0);
        let metrics_port = free_port();
        let (broker_lines, embedded) = via.agent_config(port);
        let config = dir.join("site.toml");
        std::fs::write(
            &config,
            format!(
                "[site]\nname = \"{SITE}\"\npool_fee = 0.0\n\
                 [tariff]\nkind = \"fixed\"\nprice = {POWER_PRICE}\n\
                 [policy]\nmode = \"threshold\"\nband = 0.05\nmin_on_s = 2\nmin_off_s = 2\n\
                 restore_cooldown_s = 2\nbatch_size = 10\nbatch_interval_s = 1\n\
                 [agent]\n{broker_lines}key_file = \"{}\"\nkey_id = \"host-test\"\nenrol = \"first-seen\"\n\
                 plan_interval_s = 0.5\nstore = \"{}\"\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n{embedded}{}",
                key.display(),
                dir.join("agent.db").display(),
                testbed::site::feeds_section()
            ),
        )
        .expect("writes");
        Self {
            config: config.display().to_string(),
            dir,
            broker,
            port,
            watcher,
            records,
            agent_bin,
            metrics_port,
            hot_miner,
            _efficient_miner: efficient_miner,
        }
    }

    fn agent(&self, run: &str) -> Process {
        Process::start(
            &self.agent_bin,
            &["run", "--config", &self.config],
            self.dir.join(format!("agent-{run}.log")),
        )
    }

    /// The two machines' J/TH by their nameplates, once both have measured it.
    async fn efficiencies(&mut self) -> (f64, f64) {
        let efficient = measured_state(&mut self.watcher, "efficient").await;
        let hot = measured_state(&mut self.watcher, "hot").await;
        (efficiency(&efficient), efficiency(&hot))
    }

    /// The end of a restart scenario: the price recovers past the hot machine's band, it wakes,
    /// and the restarted agent sent that wake and nothing else — the hot miner obeyed exactly
    /// one sleep in the whole run.
    async fn recover_and_finish(mut self, again: Process, e_hot: f64) {
        self.market(breakeven(e_hot) * 1.3, unix_now() + 1).await;
        self.watcher
            .wait_for("/hot/telemetry", SOON, |s| {
                mode(s) == "mining" && s.json()["power_w"].as_f64().is_some_and(|w| w > 10.0)
            })
            .await;
        let (status, summary) = again.terminate();
        assert!(status.success());
        assert_eq!(summary["commands_sent"], 1, "only the wake: {summary}");
        let acks = self.hot_miner.log_text();
        assert_eq!(acks.matches("action=Sleep").count(), 1, "{acks}");
        // Killed or not, every command either agent put on the broker is in the store's audit
        // log: it is written there before it is published. (An ack that came while no agent
        // was running, or in the moment before the kill, cannot be: the faults suite holds
        // every ack of a run without a kill to the log.)
        let audit = common::audit_log(&self.dir.join("agent.db"));
        let commands: Vec<String> = self.records.iter_mut().flat_map(|r| r.commands()).collect();
        assert_eq!(commands.len(), 2, "the sleep and the wake: {commands:?}");
        common::assert_commands_audited(&audit, &commands);
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    async fn market(&self, hashprice: f64, at: u64) {
        self.watcher
            .publish(
                &format!("hashwarden/v1/{SITE}/market"),
                &testbed::site::market(SITE, hashprice, at),
                true,
            )
            .await;
    }
}

fn breakeven(j_per_th: f64) -> f64 {
    j_per_th * 24.0 * POWER_PRICE
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_between_two_breakevens_sleeps_exactly_the_one_under_water() {
    let mut site = Site::start("curtail", Via::Mosquitto).await;
    let agent = site.agent("first");
    let (dir, metrics_port, agent_bin) =
        (site.dir.clone(), site.metrics_port, site.agent_bin.clone());
    let site_config = site.config.clone();
    let watcher = &mut site.watcher;
    watcher
        .wait_for("/agent", SOON, |s| s.payload == b"online")
        .await;

    // Both mining; their efficiencies set the price between their breakevens. The nameplate is
    // what the machine does at the clock it was left at: 12 BM1397 at 250 MHz, 672 cores each.
    let efficient_state = measured_state(watcher, "efficient").await;
    let hot_state = measured_state(watcher, "hot").await;
    let expected_ths = 12.0 * 250e6 * 672.0 / 1e12;
    let nameplate_ths = efficient_state["nameplate"]["hashrate_ths"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(
        (nameplate_ths / expected_ths - 1.0).abs() < 0.01,
        "{nameplate_ths} TH/s at 250 MHz, expected {expected_ths}"
    );
    let (e_efficient, e_hot) = (efficiency(&efficient_state), efficiency(&hot_state));
    assert!(
        e_hot > e_efficient * 1.15,
        "the setup needs two distinct efficiencies: {e_efficient:.1} vs {e_hot:.1} J/TH"
    );
    let between = (breakeven(e_efficient) * breakeven(e_hot)).sqrt();
    let market_topic = format!("hashwarden/v1/{SITE}/market");
    let market = |hashprice: f64, at: u64| testbed::site::market(SITE, hashprice, at);
    watcher
        .publish(&market_topic, &market(between, unix_now()), true)
        .await;

    // The hot one sleeps (its own telemetry says so, at no power); the efficient one mines on.
    watcher
        .wait_for("/hot/ack", SOON, |s| s.json()["status"] == "applied")
        .await;
    watcher
        .wait_for("/hot/telemetry", SOON, |s| {
            mode(s) == "sleeping" && s.json()["power_w"].as_f64() == Some(0.0)
        })
        .await;
    for _ in 0..6 {
        let seen = watcher
            .wait_for("/efficient/telemetry", SOON, |_| true)
            .await;
        assert_eq!(
            mode(&seen),
            "mining",
            "the efficient machine is above water"
        );
    }

    // The price recovers past the band: the hot one wakes.
    let recovered = breakeven(e_hot) * 1.3;
    watcher
        .publish(&market_topic, &market(recovered, unix_now() + 1), true)
        .await;
    watcher
        .wait_for("/hot/telemetry", SOON, |s| {
            mode(s) == "mining" && s.json()["power_w"].as_f64().is_some_and(|w| w > 10.0)
        })
        .await;

    // The agent verifies the wake by the power coming back.
    agent
        .wait_for_log("verified by telemetry miner=hot want=Full", SOON)
        .await;
    // What the store says while the agent runs: the fleet table and the miner's history.
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(&agent_bin)
            .args(args)
            .output()
            .expect("runs");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let table: serde_json::Value =
        serde_json::from_str(&cli(&["status", "--config", &site_config, "--json"])).expect("json");
    let rows = table.as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows.iter().all(|r| r["breakeven"].as_f64().is_some()),
        "{table}"
    );
    let explained = cli(&["explain", "hot", "--config", &site_config]);
    for step in ["planned", "sent", "ack", "verified"] {
        assert!(
            explained.contains(step),
            "{step} missing from:\n{explained}"
        );
    }

    // The fleet on /metrics: the market, the breakevens, the round trips.
    let metrics = http_get(metrics_port, "/metrics");
    for line in [
        "hashwarden_changes_verified_total 2",
        "hashwarden_commands_sent_total 2",
        "hashwarden_machines{target=\"full\"} 2",
        "hashwarden_breakeven_usd_per_ph_day_count 2",
        "hashwarden_command_latency_seconds_count 2",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }

    // By hand: the efficient one sleeps for ten minutes whatever the price; `--wait` follows
    // the change through the running agent's store until it is verified by telemetry.
    let followed: serde_json::Value = serde_json::from_str(&cli(&[
        "curtail",
        "efficient",
        "--for",
        "10m",
        "--wait",
        "--timeout",
        "45s",
        "--json",
        "--config",
        &site_config,
    ]))
    .expect("json");
    assert_eq!(followed["failed"], 0, "{followed}");
    assert_eq!(
        followed["miners"][0]["outcome"]["result"], "verified",
        "{followed}"
    );
    watcher
        .wait_for("/efficient/telemetry", SOON, |s| mode(s) == "sleeping")
        .await;
    agent
        .wait_for_log("verified by telemetry miner=efficient want=Sleep", SOON)
        .await;

    let (status, summary) = agent.terminate();
    assert!(status.success());
    assert_eq!(
        summary["verified"], 3,
        "sleep, wake, and the manual sleep: {summary}"
    );
    assert_eq!(summary["commands_sent"], 3, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(summary["miners"], 2, "{summary}");
    // The agent said goodbye: miners' failsafe sees it gone.
    watcher
        .wait_for("/agent", SOON, |s| s.payload == b"offline")
        .await;

    // A restarted agent re-derives the same plan from the store and the retained states and
    // sends nothing: every target is already in effect.
    let again = Process::start(
        &agent_bin,
        &["run", "--config", &site_config, "--duration", "6"],
        dir.join("agent-2.log"),
    );
    watcher
        .wait_for("/agent", SOON, |s| s.payload == b"online")
        .await;
    let (status, summary) = again.wait(Duration::from_secs(40));
    assert!(status.success());
    assert!(summary["plans"].as_u64().unwrap_or(0) > 0, "{summary}");
    assert_eq!(summary["commands_sent"], 0, "nothing re-sent: {summary}");
    assert!(
        !site.hot_miner.log_text().contains("rejected"),
        "every command verified: {}",
        site.hot_miner.log_text()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The agent killed (-9) just after sending a curtailment, then restarted: the miner sleeps
/// once, and the new agent sends it nothing (the change is in effect). Then the broker itself
/// restarts: miners and agent reconnect by themselves, and a recovering price still wakes the
/// machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_and_a_restarted_broker_leave_a_consistent_site() {
    let mut site = Site::start("restart", Via::Mosquitto).await;
    let agent = site.agent("first");
    site.watcher
        .wait_for("/agent", SOON, |s| s.payload == b"online")
        .await;
    let (e_efficient, e_hot) = site.efficiencies().await;
    let between = (breakeven(e_efficient) * breakeven(e_hot)).sqrt();
    site.market(between, unix_now()).await;
    // Killed the moment the hot one has its command, before anything is verified.
    site.watcher
        .wait_for("/hot/ack", SOON, |s| s.json()["status"] == "accepted")
        .await;
    agent.kill();
    site.watcher
        .wait_for("/agent", SOON, |s| s.payload == b"offline")
        .await;
    site.watcher
        .wait_for("/hot/telemetry", SOON, |s| mode(s) == "sleeping")
        .await;

    let again = site.agent("second");
    site.watcher
        .wait_for("/agent", SOON, |s| s.payload == b"online")
        .await;
    // A few rounds of planning: the hot one is asleep as planned, the efficient one mines.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        !again.log_text().contains("command sent"),
        "nothing re-sent after the restart: {}",
        again.log_text()
    );
    for _ in 0..4 {
        let seen = site
            .watcher
            .wait_for("/efficient/telemetry", SOON, |_| true)
            .await;
        assert_eq!(mode(&seen), "mining");
    }

    // The broker goes away and comes back on the same port (with nothing retained).
    let port = site.port;
    site.broker
        .as_mut()
        .expect("this test runs on mosquitto")
        .restart(&site.dir);
    let mut watcher =
        Watcher::connect(port, "test-watch-2", &format!("hashwarden/v1/{SITE}/#")).await;
    site.records
        .push(BrokerRecord::connect(port, SITE, "record-2").await);
    watcher
        .wait_for("/agent", SOON, |s| s.payload == b"online")
        .await;
    watcher
        .wait_for("/hot/status", SOON, |s| s.payload == b"online")
        .await;
    site.watcher = watcher;
    site.recover_and_finish(again, e_hot).await;
}

/// One command runs everything: the agent's embedded broker carries the same site, and since
/// that broker lives and dies with the agent, a kill -9 takes the broker (and every retained
/// message) with it. The restarted agent brings the broker back, the miners reconnect and
/// republish, the last market reading comes back from the store, and nothing is switched twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_carries_the_site_and_survives_the_agent_being_killed() {
    let mut site = Site::start("embedded", Via::Embedded).await;
    let agent = site.agent("first");
    site.watcher
        .wait_for("/agent", SOON, |s| s.payload == b"online")
        .await;
    assert!(agent.log_text().contains("embedded MQTT broker up"));
    let (e_efficient, e_hot) = site.efficiencies().await;
    let between = (breakeven(e_efficient) * breakeven(e_hot)).sqrt();
    site.market(between, unix_now()).await;
    site.watcher
        .wait_for("/hot/telemetry", SOON, |s| {
            mode(s) == "sleeping" && s.json()["power_w"].as_f64() == Some(0.0)
        })
        .await;
    agent
        .wait_for_log("verified by telemetry miner=hot want=Sleep", SOON)
        .await;

    agent.kill();
    let again = site.agent("second");
    // A new watcher: the old one's subscription died with the broker.
    let mut watcher = Watcher::connect(
        site.port,
        "test-watch-2",
        &format!("hashwarden/v1/{SITE}/#"),
    )
    .await;
    site.records
        .push(BrokerRecord::connect(site.port, SITE, "record-2").await);
    watcher
        .wait_for("/agent", SOON, |s| s.payload == b"online")
        .await;
    for name in ["hot", "efficient"] {
        measured_state(&mut watcher, name).await;
    }
    site.watcher = watcher;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = again.log_text();
    assert!(log.contains("market reading restored"), "{log}");
    assert!(!log.contains("command sent"), "nothing re-sent: {log}");
    let seen = site
        .watcher
        .wait_for("/hot/telemetry", SOON, |_| true)
        .await;
    assert_eq!(mode(&seen), "sleeping", "still asleep as planned");

    site.recover_and_finish(again, e_hot).await;
}
