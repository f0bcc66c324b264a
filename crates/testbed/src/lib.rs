//! What the end-to-end suites share: the workspace's built binaries, a real broker on a free
//! port, scratch directories, and an MQTT watcher that can wait for a message.
//!
//! Cargo hands a test the path of its own package's binaries only, so the suites here find
//! `hashwarden` and `hashwarden-fw` next to their own executable, in the target directory that
//! `cargo test --workspace` (or `cargo build --workspace`) fills first.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;

pub mod fanout;
mod pki;
pub mod release;
pub mod site;
pub use pki::TestPki;

/// A workspace binary, built by `cargo test --workspace` before any suite runs.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(name))
        .expect("a target directory");
    assert!(
        path.exists(),
        "{} is not built: run `cargo test --workspace` (or `cargo build --workspace` first)",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `GET path` on a loopback port over plain HTTP/1.1: the body, for the APIs' tests.
pub fn http_get(port: u16, path: &str) -> String {
    try_http_get(port, path).expect("the server answers")
}

/// Like [`http_get`], `None` while nothing listens or answers.
pub fn try_http_get(port: u16, path: &str) -> Option<String> {
    try_http_get_at("127.0.0.1", port, path)
}

/// Like [`try_http_get`], on another loopback address (`127.0.0.2`, say).
pub fn try_http_get_at(address: &str, port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect((address, port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

/// `hashwarden keys init`: a signing key at `path` with `key_id`; its public key (hex).
pub fn agent_key(path: &Path, key_id: &str) -> String {
    let output = Command::new(binary("hashwarden"))
        .args(["keys", "init", "--out"])
        .arg(path)
        .args(["--key-id", key_id])
        .output()
        .expect("runs");
    assert!(output.status.success(), "keys init: {output:?}");
    let public_key = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert_eq!(public_key.len(), 64, "{public_key}");
    public_key
}

/// `count` connections from 127.0.0.1 to `address`, each sending `opening` and then holding on
/// (half a request, or a request for a stream): a flood from one host. Returns them once at most
/// `keep` are still open — or after 30 s, however many are — with how many are. Open: a read
/// would block once what the server sent is drained; closed: end of stream, or a reset.
pub fn hold_connections(
    address: std::net::SocketAddr,
    count: usize,
    opening: &[u8],
    keep: usize,
) -> (Vec<std::net::TcpStream>, usize) {
    use std::io::{Read, Write};
    let mut streams = Vec::new();
    for _ in 0..count {
        if let Ok(mut stream) =
            std::net::TcpStream::connect_timeout(&address, Duration::from_secs(5))
        {
            let _ = stream.write_all(opening);
            let _ = stream.set_nonblocking(true);
            streams.push(stream);
        }
    }
    let open = |streams: &mut Vec<std::net::TcpStream>| {
        let mut open = 0;
        for stream in streams.iter_mut() {
            let mut buf = [0u8; 4096];
            let alive = loop {
                match stream.read(&mut buf) {
                    Ok(0) => break false,
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
                    Err(_) => break false,
                }
            };
            open += usize::from(alive);
        }
        open
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut still = open(&mut streams);
    while still > keep && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        still = open(&mut streams);
    }
    (streams, still)
}

/// Writes a file that holds secrets, readable by its owner only (the binaries refuse a
/// world-readable one).
pub fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("writes");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// A scratch directory unique to this test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hw-hil-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// mosquitto on a free loopback port, killed when dropped.
#[derive(Debug)]
pub struct Broker {
    pub port: u16,
    child: Child,
}

impl Broker {
    pub fn start(dir: &Path) -> Self {
        Self::start_on(dir, free_port())
    }

    /// With more mosquitto configuration lines (queue limits for a large fleet, say).
    pub fn start_with(dir: &Path, extra: &str) -> Self {
        std::fs::write(dir.join("mosquitto-extra.conf"), extra).expect("writes");
        Self::start_on(dir, free_port())
    }

    /// Stops the broker and starts a new one on the same port: the clients must reconnect, and
    /// nothing retained survives (persistence is off).
    pub fn restart(&mut self, dir: &Path) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        *self = Self::start_on(dir, self.port);
    }

    /// On `port`: a broker restarted where the clients expect it.
    pub fn start_on(dir: &Path, port: u16) -> Self {
        let extra = std::fs::read_to_string(dir.join("mosquitto-extra.conf")).unwrap_or_default();
        Self::launch(
            dir,
            port,
            &format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra}"),
        )
    }

    /// TLS only (the broker certificate from `pki`), and only `users` may log in; with `acl`
    /// (mosquitto's ACL file text), each only where it allows.
    pub fn start_secured(
        dir: &Path,
        pki: &TestPki,
        users: &[(&str, &str)],
        acl: Option<&str>,
    ) -> Self {
        let passwords = dir.join("mosquitto.passwd");
        std::fs::write(&passwords, "").expect("writes");
        for (user, password) in users {
            let status = Command::new("mosquitto_passwd")
                .args(["-b"])
                .arg(&passwords)
                .args([user, password])
                .status()
                .expect("mosquitto_passwd runs (it comes with mosquitto)");
            assert!(status.success(), "mosquitto_passwd {user}");
        }
        let acl_line = match acl {
            Some(text) => {
                let path = dir.join("mosquitto.acl");
                std::fs::write(&path, text).expect("writes");
                format!("acl_file {}\n", path.display())
            }
            None => String::new(),
        };
        let port = free_port();
        Self::launch(
            dir,
            port,
            &format!(
                "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
                 allow_anonymous false\npassword_file {}\npersistence false\n{acl_line}",
                pki.ca.display(),
                pki.cert.display(),
                pki.key.display(),
                passwords.display()
            ),
        )
    }

    fn launch(dir: &Path, port: u16, config: &str) -> Self {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(&conf, config).expect("writes");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto runs (apt-get install -y mosquitto; .ci/run installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { port, child }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which broker a site runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Mosquitto,
    /// The agent's own (rumqttd): it comes and goes with the agent.
    Embedded,
}

impl Via {
    /// The agent's configuration for a broker on `port`: the lines of its `[agent]` section
    /// (an external broker's URL) and a `[broker]` section (the embedded one's listener).
    pub fn agent_config(self, port: u16) -> (String, String) {
        match self {
            Via::Mosquitto => (
                format!("mqtt_url = \"mqtt://127.0.0.1:{port}\"\n"),
                String::new(),
            ),
            Via::Embedded => (
                String::new(),
                format!("[broker]\nlisten = \"127.0.0.1:{port}\"\n"),
            ),
        }
    }
}

/// How a simulated miner runs in the suites: 5× real time, no local APIs (they would fight
/// over ports).
pub const SIM_DAEMON_ARGS: [&str; 7] = [
    "--sim",
    "--speed",
    "5",
    "--api-listen",
    "off",
    "--http-listen",
    "off",
];

/// A process killed when dropped, its stderr in a file.
#[derive(Debug)]
pub struct Process {
    child: Child,
    pub log: PathBuf,
    /// SIGTERM before the kill when dropped, for a process with children of its own.
    stop_politely: bool,
}

impl Process {
    pub fn start(binary: &Path, args: &[&str], log: PathBuf) -> Self {
        let child = Command::new(binary)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("starts");
        Self {
            child,
            log,
            stop_politely: false,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until its log says `needle`; panics with the log after `within`.
    pub async fn wait_for_log(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.log_text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "{needle:?} not logged within {within:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `hashwarden-fw --sim` on `config`, at 5× speed, without its local APIs.
    pub fn sim_miner(config: &str, log: PathBuf) -> Self {
        let args: Vec<&str> = SIM_DAEMON_ARGS
            .iter()
            .copied()
            .chain(["--config", config])
            .collect();
        Self::start(&binary("hashwarden-fw"), &args, log)
    }

    /// Like [`Process::sim_miner`], with its HTTP API (the AxeOS one, with local actions) on
    /// `http_listen`.
    pub fn sim_miner_with_http(config: &str, http_listen: &str, log: PathBuf) -> Self {
        let mut args: Vec<&str> = SIM_DAEMON_ARGS.to_vec();
        if let Some(at) = args.iter().position(|a| *a == "--http-listen") {
            args[at + 1] = http_listen;
        }
        args.extend(["--config", config]);
        Self::start(&binary("hashwarden-fw"), &args, log)
    }

    /// `hashwarden-fw supervise` on `config`, starting [`SIM_DAEMON_ARGS`] builds: a board that
    /// takes updates. Dropped, it gets SIGTERM first, which the supervisor passes on, so its
    /// build does not outlive the test.
    pub fn supervised_sim_miner(config: &str, log: PathBuf) -> Self {
        let args: Vec<&str> = ["supervise", "--config", config, "--"]
            .into_iter()
            .chain(SIM_DAEMON_ARGS)
            .collect();
        let mut process = Self::start(&binary("hashwarden-fw"), &args, log);
        process.stop_politely = true;
        process
    }

    /// kill -9: no goodbye, no flush.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status and the last stdout line as JSON.
    pub fn terminate(self) -> (std::process::ExitStatus, serde_json::Value) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait(Duration::from_secs(20))
    }

    /// Waits for it to exit by itself (at most `within`); the exit status and the last stdout
    /// line as JSON.
    pub fn wait(mut self, within: Duration) -> (std::process::ExitStatus, serde_json::Value) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("waits") {
                let mut stdout = String::new();
                if let Some(mut out) = self.child.stdout.take() {
                    use std::io::Read;
                    let _ = out.read_to_string(&mut stdout);
                }
                let last = stdout
                    .lines()
                    .last()
                    .and_then(|l| serde_json::from_str(l).ok())
                    .unwrap_or(serde_json::Value::Null);
                return (status, last);
            }
            assert!(
                Instant::now() < deadline,
                "did not exit: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.stop_politely {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A message seen on the broker.
#[derive(Debug, Clone)]
pub struct Seen {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Seen {
    /// The message as JSON; a signed one (a miner's report, a command, a feed reading) as what
    /// its envelope carries (the suites check what was said; the agent and the miners check who
    /// said it).
    pub fn json(&self) -> serde_json::Value {
        if let Ok(report) = fleet_proto::report::open(&self.payload) {
            return serde_json::from_str(&report.payload).unwrap_or(serde_json::Value::Null);
        }
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// An MQTT client that records what it sees on `filter` and can publish.
#[derive(Debug)]
pub struct Watcher {
    pub client: AsyncClient,
    seen: mpsc::UnboundedReceiver<Seen>,
    /// The last message on each topic, for state that may have gone by while waiting for
    /// something else.
    last: std::collections::HashMap<String, Seen>,
    /// Fires when the broker acknowledges the subscription; taken by [`Watcher::subscribed`].
    subscribed: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// How long a broker may take to acknowledge a watcher's subscription.
const SUBSCRIBE_WITHIN: Duration = Duration::from_secs(20);

impl Watcher {
    pub async fn connect(port: u16, client_id: &str, filter: &str) -> Self {
        Self::connect_with(MqttOptions::new(client_id, "127.0.0.1", port), filter).await
    }

    /// Through a configured connection: TLS, credentials.
    pub async fn connect_to(
        connection: &fleet_mqtt::Connection,
        client_id: &str,
        filter: &str,
    ) -> Self {
        let options = connection
            .client_options(client_id, None)
            .expect("client options");
        Self::connect_with(options, filter).await
    }

    pub async fn connect_with(mut options: MqttOptions, filter: &str) -> Self {
        options.set_keep_alive(Duration::from_secs(5));
        // A test watches whatever goes by, hostile payloads included (rumqttc's own default
        // would drop the connection over anything above 10 KiB).
        options.set_max_packet_size(Some(1 << 20));
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        let (tx, seen) = mpsc::unbounded_channel();
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut subscribed_tx = Some(subscribed_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(Seen {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                        });
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(subscribed) = subscribed_tx.take() {
                            let _ = subscribed.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("subscribes");
        Self {
            client,
            seen,
            last: std::collections::HashMap::new(),
            subscribed: Some(subscribed),
        }
    }

    /// Waits until the broker has acknowledged the watcher's subscription: whatever is
    /// published from then on reaches it. (Connecting does not wait, since a watcher may be
    /// made before its broker is up — the agent's embedded one, say.)
    pub async fn subscribed(&mut self) {
        if let Some(acked) = self.subscribed.take() {
            tokio::time::timeout(SUBSCRIBE_WITHIN, acked)
                .await
                .expect("the broker acknowledges the subscription in time")
                .expect("the watcher's connection runs");
        }
    }

    /// The next message on a topic ending in `suffix` that satisfies `wanted`, within `within`.
    pub async fn wait_for(
        &mut self,
        suffix: &str,
        within: Duration,
        wanted: impl Fn(&Seen) -> bool,
    ) -> Seen {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.seen.recv()).await {
                Ok(Some(seen)) => {
                    self.last.insert(seen.topic.clone(), seen.clone());
                    if seen.topic.ends_with(suffix) && wanted(&seen) {
                        return seen;
                    }
                }
                Ok(None) | Err(_) => panic!("nothing wanted on …{suffix} within {within:?}"),
            }
        }
    }

    /// A message already received, without waiting.
    pub fn try_next(&mut self) -> Option<Seen> {
        let seen = self.seen.try_recv().ok()?;
        self.last.insert(seen.topic.clone(), seen.clone());
        Some(seen)
    }

    /// Like [`Watcher::wait_for`], but the last message already seen on the topic counts: for
    /// retained state, which is not sent again until it changes.
    pub async fn current(
        &mut self,
        suffix: &str,
        within: Duration,
        wanted: impl Fn(&Seen) -> bool,
    ) -> Seen {
        let already = self
            .last
            .values()
            .find(|seen| seen.topic.ends_with(suffix) && wanted(seen))
            .cloned();
        match already {
            Some(seen) => seen,
            None => self.wait_for(suffix, within, wanted).await,
        }
    }

    pub async fn publish(&self, topic: &str, payload: &str, retain: bool) {
        self.publish_bytes(topic, payload.as_bytes().to_vec(), retain)
            .await;
    }

    pub async fn publish_bytes(&self, topic: &str, payload: Vec<u8>, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .expect("publishes");
    }
}
