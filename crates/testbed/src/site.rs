//! Simulated miners on a site: a miner's configuration left by its operator at a voltage and a
//! clock (so machines of one model differ in efficiency), and what its retained state says once
//! it has measured its nameplate.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::Watcher;

/// Writes `name`'s configuration (on the broker at `port`, trusting the agent key
/// `public_key` as `host-test`, at `core_mv` and `mhz`) and its data directory; the
/// configuration's path.
pub fn miner_config(
    dir: &Path,
    site: &str,
    name: &str,
    port: u16,
    public_key: &str,
    core_mv: u32,
    mhz: f64,
) -> String {
    let data = dir.join(format!("data-{name}"));
    std::fs::create_dir_all(&data).expect("data dir");
    let state = serde_json::json!({
        "v": 1,
        "intent": {"sleeping": null, "frequency_mhz": mhz, "core_mv": core_mv},
        "commands": []
    });
    std::fs::write(data.join("state.json"), state.to_string()).expect("writes");
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[board]\nname = \"bm1397-hashboard-12\"\n[daemon]\ndata_dir = \"{}\"\n\
             [mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\nsite = \"{site}\"\nminer = \"{name}\"\n\
             telemetry_interval_s = 0.5\n\
             [[mqtt.trusted_keys]]\nid = \"host-test\"\npublic_key = \"{public_key}\"\n",
            data.display()
        ),
    )
    .expect("writes");
    config.display().to_string()
}

/// A miner's retained state once its nameplate is measured: its power and hash rate at its
/// clock, measured together — what the agent plans with until it has a settled minute of
/// telemetry.
pub async fn measured_state(
    watcher: &mut Watcher,
    name: &str,
    within: Duration,
) -> serde_json::Value {
    watcher
        .current(&format!("/{name}/state"), within, |s| {
            s.json()["nameplate"]["power_w"]
                .as_f64()
                .is_some_and(|w| w > 0.0)
        })
        .await
        .json()
}

/// J/TH by the nameplate.
pub fn efficiency(state: &serde_json::Value) -> f64 {
    let nameplate = &state["nameplate"];
    nameplate["power_w"].as_f64().unwrap_or(0.0) / nameplate["hashrate_ths"].as_f64().unwrap_or(1.0)
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The suites' feed key: every site they start trusts it (`feeds_section`), and the readings
/// they publish are signed by it, as a site's real feeds would be.
pub const FEED_KEY_ID: &str = "feed-test";
const FEED_SEED: [u8; 32] = [7; 32];

/// The `[[feeds.trusted_keys]]` entry for the suites' feed key.
pub fn feeds_section() -> String {
    let public = fleet_proto::CommandSigner::from_seed(FEED_KEY_ID, &FEED_SEED).public_key();
    let public: String = public.iter().map(|b| format!("{b:02x}")).collect();
    format!("[[feeds.trusted_keys]]\nid = \"{FEED_KEY_ID}\"\npublic_key = \"{public}\"\n")
}

/// `reading` (its JSON as the `kind` topic takes it) signed by the suites' feed key for `site`,
/// good for an hour. Sequence numbers grow across every call of the process, as one feed's
/// would.
pub fn signed_reading(site: &str, kind: fleet_proto::feed::FeedKind, reading: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SENT: AtomicU64 = AtomicU64::new(0);
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64)
    });
    let seq = base + SENT.fetch_add(1, Ordering::Relaxed);
    let site = fleet_proto::Name::new(site).expect("a site name");
    let value: serde_json::Value = serde_json::from_str(reading).expect("a reading's JSON");
    let signer = fleet_proto::CommandSigner::from_seed(FEED_KEY_ID, &FEED_SEED);
    let signed = fleet_proto::feed::Feed::new(site, kind, unix_now(), 3_600, seq, value)
        .sign(&signer)
        .expect("signs");
    serde_json::to_string(&signed).expect("encodes")
}

/// A market reading for `site`, signed, as the agent's `…/market` topic takes it.
pub fn market(site: &str, hashprice: f64, at: u64) -> String {
    signed_reading(
        site,
        fleet_proto::feed::FeedKind::Market,
        &format!("{{\"v\":1,\"at\":{at},\"hashprice_usd_per_ph_day\":{hashprice}}}"),
    )
}

/// Sets the site's grid cap on `…/grid` (`None` lifts it), stamped now, standing for an hour;
/// the unix time it was sent.
pub async fn grid_cap(watcher: &Watcher, site: &str, cap_w: Option<f64>) -> u64 {
    let at = unix_now();
    let (cap_kw, until) = match cap_w {
        Some(watts) => ((watts / 1000.0).to_string(), (at + 3_600).to_string()),
        None => ("null".to_string(), "null".to_string()),
    };
    watcher
        .publish(
            &format!("hashwarden/v1/{site}/grid"),
            &signed_reading(
                site,
                fleet_proto::feed::FeedKind::Grid,
                &format!("{{\"v\":1,\"at\":{at},\"cap_kw\":{cap_kw},\"until\":{until}}}"),
            ),
            true,
        )
        .await;
    at
}

/// Reads the site's telemetry until `done` holds for the latest report of every miner named (and
/// all of them have reported); those reports by name. Panics with each miner's last mode and
/// power when that has not happened within `within`.
pub async fn telemetry_until<S: AsRef<str>>(
    watcher: &mut Watcher,
    names: &[S],
    within: Duration,
    done: impl Fn(&BTreeMap<String, serde_json::Value>) -> bool,
) -> BTreeMap<String, serde_json::Value> {
    let deadline = tokio::time::Instant::now() + within;
    let mut latest: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    loop {
        if names.iter().all(|n| latest.contains_key(n.as_ref())) && done(&latest) {
            return latest;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            !left.is_zero(),
            "not reached within {within:?}: {:?}",
            latest
                .iter()
                .map(|(n, t)| format!("{n}: {} {} W", t["mode"], t["power_w"]))
                .collect::<Vec<_>>()
        );
        let seen = watcher.wait_for("/telemetry", left, |_| true).await;
        if let Some(name) = seen.topic.split('/').nth(3) {
            latest.insert(name.to_string(), seen.json());
        }
    }
}

/// What the broker carried between an agent and its miners: each command's id and each ack's,
/// to hold the agent's audit log against. A broker restarted without persistence forgets the
/// subscription: connect another record then.
#[derive(Debug)]
pub struct BrokerRecord {
    commands: Watcher,
    acks: Watcher,
}

impl BrokerRecord {
    pub async fn connect(port: u16, site: &str, name: &str) -> Self {
        let commands = Watcher::connect(
            port,
            &format!("{name}-cmd"),
            &format!("hashwarden/v1/{site}/+/cmd"),
        )
        .await;
        let acks = Watcher::connect(
            port,
            &format!("{name}-ack"),
            &format!("hashwarden/v1/{site}/+/ack"),
        )
        .await;
        Self { commands, acks }
    }

    /// The command ids seen so far (`Seen::json` reads each signed command's payload).
    pub fn commands(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.commands.try_next())
            .map(|seen| seen.json()["id"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    /// The acks seen so far, each as its command's id and its status (`hw-12 applied`).
    pub fn acks(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.acks.try_next())
            .map(|seen| {
                let ack = seen.json();
                format!(
                    "{} {}",
                    ack["id"].as_str().unwrap_or("-"),
                    ack["status"].as_str().unwrap_or("-")
                )
            })
            .collect()
    }
}

/// A miner's telemetry says it is asleep and draws nothing.
pub fn asleep(telemetry: &serde_json::Value) -> bool {
    telemetry["mode"] == "sleeping" && telemetry["power_w"].as_f64() == Some(0.0)
}

/// A miner's telemetry says it mines, drawing real power.
pub fn mining(telemetry: &serde_json::Value) -> bool {
    telemetry["mode"] == "mining" && telemetry["power_w"].as_f64().is_some_and(|w| w > 10.0)
}

/// The agent's configuration file and the port of its HTTP listener (dashboard, metrics).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub path: String,
    pub http_port: u16,
}

/// Writes `dir/site.toml` — `head` (the site, tariff, policy and market sections) and an
/// `[agent]` on the broker at `port` with the signing key at `key`, its store in `dir`, planning
/// every half second, its HTTP listener on a free port.
pub fn agent_config(dir: &Path, head: &str, port: u16, key: &Path) -> AgentConfig {
    let http_port = crate::free_port();
    let config = dir.join("site.toml");
    std::fs::write(
        &config,
        format!(
            "{head}[agent]\nmqtt_url = \"mqtt://127.0.0.1:{port}\"\nkey_file = \"{}\"\n\
             key_id = \"host-test\"\nenrol = \"first-seen\"\nplan_interval_s = 0.5\nstore = \"{}\"\n\
             metrics_listen = \"127.0.0.1:{}\"\n{}",
            key.display(),
            dir.join("agent.db").display(),
            http_port,
            feeds_section()
        ),
    )
    .expect("writes");
    AgentConfig {
        path: config.display().to_string(),
        http_port,
    }
}

/// `hashwarden run --config config`, its log in `dir/agent.log`.
pub fn agent(dir: &Path, config: &str) -> crate::Process {
    crate::Process::start(
        &crate::binary("hashwarden"),
        &["run", "--config", config],
        dir.join("agent.log"),
    )
}

/// What every site suite starts from: a scratch directory, mosquitto on a free port, the agent's
/// signing key (its public half for the miners' configurations) and a watcher on the site's
/// topics.
#[derive(Debug)]
pub struct Bench {
    pub dir: std::path::PathBuf,
    pub broker: crate::Broker,
    pub key: std::path::PathBuf,
    pub public_key: String,
    pub watcher: Watcher,
}

impl Bench {
    pub async fn start(name: &str, site: &str) -> Self {
        let dir = crate::scratch(name);
        let broker = crate::Broker::start(&dir);
        let key = dir.join("host.key");
        let public_key = crate::agent_key(&key, "host-test");
        let watcher = Watcher::connect(
            broker.port,
            &format!("{name}-watch"),
            &format!("hashwarden/v1/{site}/#"),
        )
        .await;
        Self {
            dir,
            broker,
            key,
            public_key,
            watcher,
        }
    }
}

/// An agent alone on a site — on mosquitto or on its own embedded broker — with its HTTP
/// listener up: what a suite about the agent's own inputs starts from.
#[derive(Debug)]
pub struct LoneAgent {
    pub dir: std::path::PathBuf,
    /// Mosquitto, when the site runs on it (the embedded broker lives in the agent).
    pub broker: Option<crate::Broker>,
    pub port: u16,
    pub metrics_port: u16,
    /// The agent's command key, public half (for miners' configurations).
    pub public_key: String,
    pub agent: crate::Process,
}

impl LoneAgent {
    /// `site` on `via`, its file the fixed tariff, the agent's section and then `extra` (more
    /// sections); returns once `/metrics` answers. Miners are enrolled at first sight.
    pub async fn start(name: &str, site: &str, via: crate::Via, extra: &str) -> Self {
        Self::start_enrolling(name, site, via, "first-seen", extra).await
    }

    /// The same, miners enrolled as `enrol` says (`[agent] enrol`).
    pub async fn start_enrolling(
        name: &str,
        site: &str,
        via: crate::Via,
        enrol: &str,
        extra: &str,
    ) -> Self {
        let dir = crate::scratch(&format!("{name}-{via:?}"));
        let broker = (via == crate::Via::Mosquitto).then(|| crate::Broker::start(&dir));
        let port = broker.as_ref().map_or_else(crate::free_port, |b| b.port);
        let (agent_broker, broker_lines) = via.agent_config(port);
        let key = dir.join("agent.key");
        let public_key = crate::agent_key(&key, "host-test");
        let metrics_port = crate::free_port();
        let config = dir.join("site.toml");
        std::fs::write(
            &config,
            format!(
                "[site]\nname = \"{site}\"\n[tariff]\nkind = \"fixed\"\nprice = 0.06\n\
                 [agent]\n{agent_broker}key_file = \"{}\"\nkey_id = \"host-test\"\nenrol = \"{enrol}\"\n\
                 max_unenrolled = 8\nplan_interval_s = 0.5\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n\
                 store = \"{}\"\n{broker_lines}{extra}",
                key.display(),
                dir.join("agent.db").display()
            ),
        )
        .expect("writes");
        let agent = crate::Process::start(
            &crate::binary("hashwarden"),
            &["run", "--config", &config.display().to_string()],
            dir.join("agent.log"),
        );
        let listening = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while crate::try_http_get(metrics_port, "/metrics").is_none() {
            assert!(
                std::time::Instant::now() < listening,
                "{}",
                agent.log_text()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Self {
            dir,
            broker,
            port,
            metrics_port,
            public_key,
            agent,
        }
    }

    /// SIGTERM: the agent must stop cleanly; the scratch directory goes.
    pub fn finish(self) {
        let (status, summary) = self.agent.terminate();
        assert!(status.success(), "{summary}");
        drop(self.broker);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
