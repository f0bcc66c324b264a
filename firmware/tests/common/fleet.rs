//! A real MQTT broker (mosquitto), a host that signs commands, and the daemon as a process.

use std::path::Path;
use std::time::Duration;

use fleet_proto::examples::example_command;
use fleet_proto::{Action, Command as FleetCommand, CommandSigner};

pub const SITE: &str = "tx-west";
pub const MINER: &str = "s19xp-r04-017";
pub const HOST_SEED: [u8; 32] = [7; 32];

pub fn topic(kind: &str) -> String {
    format!("hashwarden/v1/{SITE}/{MINER}/{kind}")
}

pub fn agent_topic() -> String {
    format!("hashwarden/v1/{SITE}/agent")
}

// Not every suite that includes this module uses each of these.
#[allow(unused_imports)]
pub use testbed::{Broker, Process, free_port, scratch};

/// The daemon's configuration for the fleet tests.
pub fn config(port: u16, data_dir: &Path, extra: &str) -> String {
    let public_key: String = signer()
        .public_key()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "[board]\nname = \"bm1397-hashboard-12\"\n\
         [daemon]\ndata_dir = \"{}\"\n\
         [mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\nsite = \"{SITE}\"\nminer = \"{MINER}\"\n\
         telemetry_interval_s = 0.5\n{extra}\
         [[mqtt.trusted_keys]]\nid = \"host-2026a\"\npublic_key = \"{public_key}\"\n",
        data_dir.display()
    )
}

/// Starts the daemon as a process (`testbed::Process`: stderr to a file so a chatty log cannot
/// block it, SIGTERM or kill -9, the summary line at exit).
pub struct Daemon;

impl Daemon {
    pub fn start(dir: &Path, config_text: &str, run: &str) -> Process {
        Self::start_at(dir, config_text, run, 5.0)
    }

    /// Like [`Daemon::start`], with the simulator at `speed` times real time.
    pub fn start_at(dir: &Path, config_text: &str, run: &str, speed: f64) -> Process {
        Self::start_with(dir, config_text, run, speed, &[])
    }

    /// Like [`Daemon::start_at`], with a chipsim fault script (`--sim-faults`), written beside
    /// the configuration.
    pub fn start_with_faults(
        dir: &Path,
        config_text: &str,
        run: &str,
        speed: f64,
        script: &str,
    ) -> Process {
        let path = dir.join(format!("faults-{run}.json"));
        std::fs::write(&path, script).expect("writes");
        let path = path.display().to_string();
        Self::start_with(dir, config_text, run, speed, &["--sim-faults", &path])
    }

    /// Like [`Daemon::start_at`], with more arguments.
    pub fn start_with(
        dir: &Path,
        config_text: &str,
        run: &str,
        speed: f64,
        extra: &[&str],
    ) -> Process {
        let config = dir.join("hw.toml");
        std::fs::write(&config, config_text).expect("writes");
        let speed = speed.to_string();
        let config = config.display().to_string();
        let mut args = vec![
            "--sim",
            "--speed",
            &speed,
            "--api-listen",
            "off",
            "--config",
            &config,
        ];
        args.extend_from_slice(extra);
        Process::start(
            Path::new(env!("CARGO_BIN_EXE_hashwarden-fw")),
            &args,
            dir.join(format!("daemon-{run}.log")),
        )
    }
}

/// The host's signing key, trusted by [`config`].
pub fn signer() -> CommandSigner {
    CommandSigner::from_seed("host-2026a", &HOST_SEED)
}

/// A command for the test miner, issued now and valid for a minute.
pub fn command(action: Action, seq: u64) -> FleetCommand {
    let mut command = example_command(action, seq);
    command.site = fleet_proto::Name::new(SITE).expect("valid");
    command.miner = fleet_proto::Name::new(MINER).expect("valid");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    command.issued_at = now;
    command.expires_at = now + 60;
    command
}

pub use testbed::Seen;

/// The host's side: sees everything the miner publishes and sends (signed) commands.
pub struct Host {
    watcher: testbed::Watcher,
    signer: CommandSigner,
    heartbeats: fleet_proto::feed::FeedSigner,
}

impl Host {
    pub async fn connect(port: u16, client_id: &str) -> Self {
        let filter = format!("hashwarden/v1/{SITE}/{MINER}/+");
        let mut watcher = testbed::Watcher::connect(port, client_id, &filter).await;
        // The broker is up: nothing the miner publishes from here on is missed.
        watcher.subscribed().await;
        let site = fleet_proto::Name::new(SITE).expect("valid");
        Self {
            watcher,
            signer: signer(),
            heartbeats: fleet_proto::feed::FeedSigner::new(site, signer()),
        }
    }

    /// The next message on `kind` that satisfies `wanted`, within `within`.
    pub async fn wait_for(
        &mut self,
        kind: &str,
        within: Duration,
        wanted: impl Fn(&Seen) -> bool,
    ) -> Seen {
        self.watcher
            .wait_for(&format!("/{MINER}/{kind}"), within, wanted)
            .await
    }

    /// Waits until the miner's own clock has run `seconds` past its latest report: the miner's
    /// hash-rate windows are in its wall time, so a window is full of the present settings only
    /// when its reports say so, however loaded the test machine is.
    pub async fn wait_miner_seconds(&mut self, seconds: u64) {
        let uptime = |s: &Seen| s.json()["uptime_s"].as_u64();
        let now = self
            .wait_for("telemetry", Duration::from_secs(30), |s| {
                uptime(s).is_some()
            })
            .await;
        let from = uptime(&now).unwrap_or(0);
        self.wait_for("telemetry", Duration::from_secs(60 + seconds), |s| {
            uptime(s).is_some_and(|t| t >= from + seconds)
        })
        .await;
    }

    /// The acks for command `id` until one with a final status (not `accepted`).
    pub async fn final_ack(&mut self, id: &str) -> serde_json::Value {
        let seen = self
            .wait_for("ack", Duration::from_secs(15), |s| {
                let ack = s.json();
                ack["id"] == id && ack["status"] != "accepted"
            })
            .await;
        seen.json()
    }

    pub fn command(&self, action: Action, seq: u64) -> FleetCommand {
        command(action, seq)
    }

    pub fn sign(&self, command: &FleetCommand) -> Vec<u8> {
        serde_json::to_vec(&self.signer.sign(command).expect("signs")).expect("encodes")
    }

    pub async fn send(&self, payload: Vec<u8>) {
        self.watcher
            .publish_bytes(&topic("cmd"), payload, false)
            .await;
    }

    pub async fn publish(&self, topic: String, payload: &str, retain: bool) {
        self.watcher.publish(&topic, payload, retain).await;
    }

    /// The agent's word that it is there: a heartbeat signed by the host key, retained, good for
    /// 30 s (what the agent sends every 10 s).
    pub async fn heartbeat(&mut self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let reading = serde_json::json!({ "agent": agent_topic() });
        let bytes = self
            .heartbeats
            .wire(fleet_proto::feed::FeedKind::Heartbeat, reading, now, 30)
            .expect("signs");
        let topic =
            fleet_proto::topic::agent_heartbeat(&fleet_proto::Name::new(SITE).expect("valid"));
        self.watcher.publish_bytes(&topic, bytes, true).await;
    }
}
