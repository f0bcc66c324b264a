//! A curtailment fanned out to thousands of miners: the real agent (`hashwarden run`) plans a site
//! of lightweight simulated miners — one MQTT client publishes every miner's status, state and
//! telemetry and answers each command the way `hashwarden-fw` does (`accepted`, `applied`, then
//! telemetry at 0 W). The market drops below every machine's breakeven; the clock runs from that
//! publish to each command's arrival at its miner, to each `applied` ack reaching the broker's
//! subscribers (as the agent hears it), and to the agent counting each change verified by
//! telemetry. The baseline, in the same run, is the broker alone: as many messages of the same
//! size published and received by one client, no agent in between.
//!
//! `hil-tests/tests/fanout.rs` runs it as a suite step; `cargo bench -p hashwarden --bench
//! fanout` on a release build.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};

pub use crate::Via;
use crate::{Broker, Process, free_port, scratch, try_http_get};

const SITE: &str = "fanout";
/// How long the site may take to be heard, and then to be curtailed.
const PATIENCE: Duration = Duration::from_secs(240);
/// When a simulated miner reports again after obeying (the firmware's default interval), and
/// how often after that.
const TELEMETRY_EVERY: Duration = Duration::from_secs(5);
const LATE_REPORTS_EVERY: Duration = Duration::from_secs(30);
/// How many of the agent's last warnings a short report carries.
const WARNINGS_KEPT: usize = 20;

/// Times from the market's publish, seconds, sorted.
#[derive(Debug, Clone, Default)]
pub struct Times(Vec<f64>);

impl Times {
    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// The `p` quantile (0..=1), or NaN when nothing arrived.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0[((self.0.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize]
    }

    pub fn last(&self) -> f64 {
        self.0.last().copied().unwrap_or(f64::NAN)
    }

    fn from(mut times: Vec<f64>) -> Self {
        times.sort_by(f64::total_cmp);
        Self(times)
    }
}

/// What one fan-out measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub miners: usize,
    pub via: Via,
    /// Market publish → each command at its miner.
    pub command: Times,
    /// Market publish → each `applied` ack delivered to a subscriber of the acks.
    pub ack: Times,
    /// Market publish → the agent's verified count passing each change (sampled every 50 ms).
    pub verified: Times,
    /// The broker alone, `miners` messages through it and back.
    pub baseline: Duration,
    /// The agent's exit summary.
    pub summary: serde_json::Value,
    /// When a miner went unverified: the agent's warnings (the last few), to tell a lost
    /// message from a loop that fell behind.
    pub warnings: Vec<String>,
}

impl Report {
    /// The markdown table `docs/BENCHMARKS.md` holds.
    pub fn table(&self) -> String {
        let miners = self.miners;
        let baseline_ms = self.baseline.as_secs_f64() * 1e3;
        let which = match self.via {
            Via::Mosquitto => "mosquitto",
            Via::Embedded => "the embedded broker (rumqttd)",
        };
        let mut out = format!(
            "{miners} miners through {which}; the market drops below every breakeven\n\n\
             | from the market's publish to | p50 | p99 | all | of {miners} | p99 / baseline (broker alone, {miners} messages: {baseline_ms:.0} ms) |\n\
             |---|---|---|---|---|---|\n"
        );
        for (what, times) in [
            ("command at the miner", &self.command),
            ("`applied` ack at the agent", &self.ack),
            ("change verified by telemetry", &self.verified),
        ] {
            out += &format!(
                "| {what} | {:.0} ms | {:.0} ms | {:.0} ms | {} | {:.1}× |\n",
                times.percentile(0.5) * 1e3,
                times.percentile(0.99) * 1e3,
                times.last() * 1e3,
                times.count(),
                times.percentile(0.99) * 1e3 / baseline_ms,
            );
        }
        if !self.warnings.is_empty() {
            out += &format!(
                "\nthe agent's summary: {}\nits last warnings:\n{}\n",
                self.summary,
                self.warnings.join("\n")
            );
        }
        out
    }
}

fn client(port: u16, id: &str) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    AsyncClient::new(options, 50_000)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A counter on the agent's `/metrics`, 0 when it cannot be read.
fn counter(metrics_port: u16, name: &str) -> usize {
    try_http_get(metrics_port, "/metrics")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0) as usize
}

/// The broker alone: `count` messages of `size` bytes through it and back to one subscriber.
async fn broker_baseline(port: u16, count: usize, size: usize) -> Duration {
    let (client, mut eventloop) = client(port, "baseline");
    client
        .subscribe("baseline/#", QoS::AtLeastOnce)
        .await
        .expect("subscribes");
    let payload = vec![b'x'; size];
    let mut received = 0usize;
    let mut started: Option<Instant> = None;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                started = Some(Instant::now());
                let sender = client.clone();
                let payload = payload.clone();
                tokio::spawn(async move {
                    for i in 0..count {
                        let _ = sender
                            .publish(
                                format!("baseline/{i}"),
                                QoS::AtLeastOnce,
                                false,
                                payload.clone(),
                            )
                            .await;
                    }
                });
            }
            Ok(Event::Incoming(Packet::Publish(_))) => {
                received += 1;
                if received == count {
                    return started.map_or(Duration::ZERO, |s| s.elapsed());
                }
            }
            Ok(_) => {}
            Err(e) => panic!("baseline client: {e}"),
        }
    }
}

/// One simulated miner: its device key, and its report once asleep, signed ahead — a real miner
/// signs on its own CPU, where this harness would sign 10,000 of them on one thread inside the
/// measured window. Its acks name the command, so they are signed as each command arrives.
#[derive(Debug)]
struct Simulated {
    device: fleet_proto::report::DeviceSigner,
    sleeping: Vec<u8>,
}

/// The simulated fleet, `m00000` on.
fn simulated_fleet(miners: usize) -> HashMap<String, Simulated> {
    let mut telemetry: fleet_proto::Telemetry =
        serde_json::from_slice(&fleet_proto::examples::payload("/telemetry").expect("example"))
            .expect("parses");
    telemetry.mode = fleet_proto::Mode::Sleeping;
    telemetry.power_w = 0.0;
    let sleeping = serde_json::to_string(&telemetry).expect("encodes");
    (0..miners)
        .map(|m| {
            let name = format!("m{m:05}");
            let device = device_key(&name);
            let topic = format!("hashwarden/v1/{SITE}/{name}/telemetry");
            let sleeping = sign_report(&device, &topic, sleeping.clone());
            (name, Simulated { device, sleeping })
        })
        .collect()
}

/// A simulated miner's device key: one per name, the same in every run.
fn device_key(miner: &str) -> fleet_proto::report::DeviceSigner {
    let mut seed = [0xa5; 32];
    for (slot, byte) in seed.iter_mut().zip(miner.bytes()) {
        *slot = byte;
    }
    fleet_proto::report::DeviceSigner::from_seed(&seed)
}

/// `report` signed by `device` for `topic`, as the bytes to publish.
fn sign_report(device: &fleet_proto::report::DeviceSigner, topic: &str, report: String) -> Vec<u8> {
    serde_json::to_vec(&device.sign(topic, report)).expect("encodes")
}

/// Answers every command for every simulated miner as `hashwarden-fw` does, sending each
/// arrival's (miner, time) to `arrivals`.
fn answer_commands(
    mut eventloop: EventLoop,
    client: AsyncClient,
    arrivals: tokio::sync::mpsc::UnboundedSender<(String, Instant)>,
    fleet: std::sync::Arc<HashMap<String, Simulated>>,
) {
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let arrived = Instant::now();
                    let topic = String::from_utf8_lossy(&p.topic).into_owned();
                    let Some(miner) = topic.split('/').nth(3).map(str::to_string) else {
                        continue;
                    };
                    let Ok(signed) =
                        serde_json::from_slice::<fleet_proto::SignedCommand>(&p.payload)
                    else {
                        continue;
                    };
                    let Ok(command) = serde_json::from_str::<serde_json::Value>(&signed.payload)
                    else {
                        continue;
                    };
                    let id = command["id"].as_str().unwrap_or("").to_string();
                    let _ = arrivals.send((miner.clone(), arrived));
                    let base = format!("hashwarden/v1/{SITE}/{miner}");
                    // Signed as `hashwarden-fw` signs them.
                    let Some(simulated) = fleet.get(&miner) else {
                        continue;
                    };
                    let device = &simulated.device;
                    for status in ["accepted", "applied"] {
                        let ack = format!(
                            "{{\"v\":1,\"id\":\"{id}\",\"miner\":\"{miner}\",\"status\":\"{status}\",\"reason\":null,\"at\":{}}}",
                            unix_now()
                        );
                        let topic = format!("{base}/ack");
                        let ack = sign_report(device, &topic, ack);
                        let _ = client.publish(topic, QoS::AtLeastOnce, false, ack).await;
                    }
                    // At once and again at the firmware's default interval: a broker may deliver
                    // the first report before the ack (MQTT orders messages per topic only;
                    // rumqttd does not order across subscriptions), and the agent counts only
                    // telemetry after the change as proof. Then more slowly for as long as the
                    // run may last, so that an agent too loaded to digest the acks within one
                    // interval still hears a report after them (as it would from a real miner),
                    // without the load of 10,000 miners reporting every 5 s in the measurement.
                    let topic = format!("{base}/telemetry");
                    let report = simulated.sleeping.clone();
                    let later = client.clone();
                    tokio::spawn(async move {
                        let mut wait = Duration::ZERO;
                        while wait <= PATIENCE {
                            tokio::time::sleep(wait).await;
                            let topic = topic.clone();
                            if later
                                .publish(topic, QoS::AtMostOnce, false, report.clone())
                                .await
                                .is_err()
                            {
                                break;
                            }
                            wait = if wait.is_zero() {
                                TELEMETRY_EVERY
                            } else {
                                LATE_REPORTS_EVERY
                            };
                        }
                    });
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
}

/// When each miner's `applied` ack is delivered to a subscriber, sent to `acks`.
async fn watch_acks(port: u16, acks: tokio::sync::mpsc::UnboundedSender<(String, Instant)>) {
    let (observer, mut eventloop) = client(port, "ack-observer");
    observer
        .subscribe(format!("hashwarden/v1/{SITE}/+/ack"), QoS::AtLeastOnce)
        .await
        .expect("subscribes");
    tokio::spawn(async move {
        let _keep = observer;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let at = Instant::now();
                    // Inside the miner's signed envelope, the ack's JSON is a string.
                    let applied = fleet_proto::report::open(&p.payload)
                        .is_ok_and(|ack| ack.payload.contains("\"status\":\"applied\""));
                    if !applied {
                        continue;
                    }
                    let topic = String::from_utf8_lossy(&p.topic).into_owned();
                    if let Some(miner) = topic.split('/').nth(3) {
                        let _ = acks.send((miner.to_string(), at));
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
}

/// Seconds from `started` of each miner's first event on `rx`, until `miners` have one or the
/// deadline passes.
async fn first_per_miner(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Instant)>,
    miners: usize,
    started: Instant,
    deadline: Instant,
) -> Times {
    let mut first: HashMap<String, f64> = HashMap::new();
    while first.len() < miners && Instant::now() < deadline {
        if let Ok(Some((miner, at))) = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await
        {
            first
                .entry(miner)
                .or_insert((at.saturating_duration_since(started)).as_secs_f64());
        }
    }
    Times::from(first.into_values().collect())
}

/// Runs the agent at `agent_bin` over `miners` simulated miners through `via`; everything in a
/// scratch directory removed afterwards.
pub async fn run(agent_bin: &Path, miners: usize, via: Via) -> Report {
    let dir = scratch(&format!("fanout-{miners}"));
    // A site this size needs the broker's per-client queues opened up: mosquitto keeps 1,000
    // messages per client by default and drops the rest of a burst (docs/operations.md).
    let broker = (via == Via::Mosquitto)
        .then(|| Broker::start_with(&dir, "max_queued_messages 0\nmax_inflight_messages 0\n"));
    let port = broker.as_ref().map_or_else(free_port, |b| b.port);
    let (agent_broker, broker_lines) = via.agent_config(port);
    let key = dir.join("host.key");
    let output = std::process::Command::new(agent_bin)
        .args(["keys", "init", "--out"])
        .arg(&key)
        .args(["--key-id", "fanout"])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    let metrics_port = free_port();
    let site = dir.join("site.toml");
    std::fs::write(
        &site,
        format!(
            "[site]\nname = \"{SITE}\"\n[tariff]\nkind = \"fixed\"\nprice = 0.06\n\
             [policy]\nbatch_size = {miners}\nmin_on_s = 0\nmin_off_s = 0\nrestore_cooldown_s = 0\n\
             [agent]\n{agent_broker}key_file = \"{}\"\nkey_id = \"fanout\"\nenrol = \"first-seen\"\n\
             plan_interval_s = 0.5\nstore = \"{}\"\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n\
             {broker_lines}{}",
            key.display(),
            dir.join("agent.db").display(),
            crate::site::feeds_section()
        ),
    )
    .expect("writes");
    let site = site.display().to_string();
    let agent = Process::start(
        agent_bin,
        &["run", "--config", &site],
        dir.join("agent.log"),
    );
    // With the embedded broker the agent must be listening before the miners can connect.
    let listening = Instant::now() + PATIENCE;
    while try_http_get(metrics_port, "/metrics").is_none() {
        assert!(Instant::now() < listening, "{}", agent.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The simulated miners: one client for all of them.
    let (fleet, fleet_loop) = client(port, "miners");
    fleet
        .subscribe(format!("hashwarden/v1/{SITE}/+/cmd"), QoS::AtLeastOnce)
        .await
        .expect("subscribes");
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel();
    let simulated = std::sync::Arc::new(simulated_fleet(miners));
    answer_commands(fleet_loop, fleet.clone(), arrived_tx, simulated.clone());
    let (acked_tx, mut acked) = tokio::sync::mpsc::unbounded_channel();
    watch_acks(port, acked_tx).await;
    let text = |suffix| {
        String::from_utf8(fleet_proto::examples::payload(suffix).expect("example")).expect("text")
    };
    let (state, mining) = (text("/state"), text("/telemetry"));
    tokio::spawn(async move {
        for m in 0..miners {
            let topic = |kind: &str| format!("hashwarden/v1/{SITE}/m{m:05}/{kind}");
            let Some(Simulated { device, .. }) = simulated.get(&format!("m{m:05}")) else {
                continue;
            };
            let _ = fleet
                .publish(topic("status"), QoS::AtLeastOnce, true, "online")
                .await;
            let signed_state = sign_report(device, &topic("state"), state.clone());
            let _ = fleet
                .publish(topic("state"), QoS::AtLeastOnce, true, signed_state)
                .await;
            let signed_mining = sign_report(device, &topic("telemetry"), mining.clone());
            let _ = fleet
                .publish(topic("telemetry"), QoS::AtMostOnce, false, signed_mining)
                .await;
        }
    });
    // Let the agent hear the whole fleet before the market moves.
    let heard = Instant::now() + PATIENCE;
    while counter(metrics_port, "hashwarden_machines_online") < miners {
        assert!(
            Instant::now() < heard,
            "the agent heard {} of {miners} miners",
            counter(metrics_port, "hashwarden_machines_online")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let (market, mut market_loop) = client(port, "market");
    tokio::spawn(async move { while market_loop.poll().await.is_ok() {} });
    let started = Instant::now();
    market
        .publish(
            format!("hashwarden/v1/{SITE}/market"),
            QoS::AtLeastOnce,
            true,
            crate::site::market(SITE, 15.0, unix_now()),
        )
        .await
        .expect("publishes");
    let deadline = Instant::now() + PATIENCE;
    // The verified count, sampled on a thread of its own (the HTTP client blocks), so the
    // clients' event loops and the other clocks are not held up.
    let verified = tokio::task::spawn_blocking(move || {
        let mut passed: Vec<f64> = Vec::with_capacity(miners);
        while passed.len() < miners && Instant::now() < deadline {
            let count = counter(metrics_port, "hashwarden_changes_verified_total").min(miners);
            let now = started.elapsed().as_secs_f64();
            passed.resize(count.max(passed.len()), now);
            std::thread::sleep(Duration::from_millis(50));
        }
        Times::from(passed)
    });
    let command = first_per_miner(&mut arrived, miners, started, deadline).await;
    let ack = first_per_miner(&mut acked, miners, started, deadline).await;
    let verified = verified.await.unwrap_or_default();
    // Before the agent stops: an embedded broker stops with it.
    let baseline = broker_baseline(port, miners, 420).await;
    let warnings = if verified.count() < miners {
        let log = agent.log_text();
        let warned: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
        let from = warned.len().saturating_sub(WARNINGS_KEPT);
        warned[from..].iter().map(|l| l.to_string()).collect()
    } else {
        Vec::new()
    };
    let (status, summary) = agent.terminate();
    assert!(status.success(), "{summary}");
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    Report {
        miners,
        via,
        command,
        ack,
        verified,
        baseline,
        summary,
        warnings,
    }
}
