//! A real MQTT broker (mosquitto), a host that signs commands, and the daemon as a process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
pub use hil_tests::{Broker, free_port, scratch};

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

/// The daemon as a process: stderr goes to a file so a chatty log cannot block it.
pub struct Daemon {
    child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(dir: &Path, config_text: &str, run: &str) -> Self {
        Self::start_at(dir, config_text, run, 5.0)
    }

    /// Like [`Daemon::start`], with the simulator at `speed` times real time.
    pub fn start_at(dir: &Path, config_text: &str, run: &str, speed: f64) -> Self {
        let config = dir.join("hw.toml");
        std::fs::write(&config, config_text).expect("writes");
        let log = dir.join(format!("daemon-{run}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_hashwarden-fw"))
            .arg("--sim")
            .arg("--speed")
            .arg(speed.to_string())
            .arg("--api-listen")
            .arg("off")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("the daemon starts");
        Self { child, log }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([name, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// SIGTERM, then the exit status and the summary line.
    pub fn terminate(mut self) -> (std::process::ExitStatus, serde_json::Value) {
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("waits") {
                let mut stdout = String::new();
                if let Some(mut out) = self.child.stdout.take() {
                    use std::io::Read;
                    out.read_to_string(&mut stdout).expect("reads");
                }
                let summary = stdout
                    .lines()
                    .last()
                    .and_then(|l| serde_json::from_str(l).ok())
                    .unwrap_or(serde_json::Value::Null);
                return (status, summary);
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// kill -9: no goodbye, only the broker's last will.
    pub fn kill(mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

pub use hil_tests::Seen;

/// The host's side: sees everything the miner publishes and sends (signed) commands.
pub struct Host {
    watcher: hil_tests::Watcher,
    signer: CommandSigner,
}

impl Host {
    pub async fn connect(port: u16, client_id: &str) -> Self {
        let filter = format!("hashwarden/v1/{SITE}/{MINER}/+");
        Self {
            watcher: hil_tests::Watcher::connect(port, client_id, &filter).await,
            signer: signer(),
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
}
