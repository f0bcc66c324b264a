//! A real MQTT broker (mosquitto), a host that signs commands, and the daemon as a process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleet_proto::examples::example_command;
use fleet_proto::{Action, Command as FleetCommand, CommandSigner};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;

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

/// A message the watcher saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Seen {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// The host's side: sees everything the miner publishes and sends (signed) commands.
pub struct Host {
    client: AsyncClient,
    seen: mpsc::UnboundedReceiver<Seen>,
    signer: CommandSigner,
}

impl Host {
    pub async fn connect(port: u16, client_id: &str) -> Self {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(Seen {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                        });
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        client
            .subscribe(format!("hashwarden/v1/{SITE}/{MINER}/+"), QoS::AtLeastOnce)
            .await
            .expect("subscribes");
        Self {
            client,
            seen,
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
        let topic = topic(kind);
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.seen.recv()).await {
                Ok(Some(seen)) if seen.topic == topic && wanted(&seen) => return seen,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => panic!("nothing wanted on {kind} within {within:?}"),
            }
        }
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
        self.client
            .publish(topic("cmd"), QoS::AtLeastOnce, false, payload)
            .await
            .expect("publishes");
    }

    pub async fn publish(&self, topic: String, payload: &str, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.as_bytes().to_vec())
            .await
            .expect("publishes");
    }
}
