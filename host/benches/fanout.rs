//! A curtailment fanned out to 10,000 miners through mosquitto (issue #6: p99 < 2 s to ack).
//!
//! `cargo bench -p hashwarden --bench fanout` (needs `mosquitto` on the PATH);
//! `HASHWARDEN_BENCH_BROKER=embedded cargo bench -p hashwarden --bench fanout` runs the same
//! through the agent's embedded broker.
//!
//! The real agent (`hashwarden run`, release build) plans a site of 10,000 lightweight simulated
//! miners: one MQTT client publishes every miner's status, state and telemetry, and answers each
//! command the way `hashwarden-fw` does — `accepted`, `applied`, then telemetry at 0 W. The
//! market drops below every machine's breakeven; the clock runs from that publish to each
//! command's arrival, to each `applied` ack, and to the agent reporting every change verified.
//! The baseline, in the same run, is the broker itself: 10,000 messages of the same size
//! published and received by one client, no agent in between.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hil_tests::{Broker, Process, free_port, http_get, scratch, try_http_get};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

const MINERS: usize = 10_000;
const SITE: &str = "bench";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn client(port: u16, id: &str) -> (AsyncClient, rumqttc::v5::EventLoop) {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    AsyncClient::new(options, 50_000)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The broker alone: `MINERS` messages through it and back to one subscriber.
async fn broker_baseline(port: u16, size: usize) -> Duration {
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
                    for i in 0..MINERS {
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
                if received == MINERS {
                    return started.map_or(Duration::ZERO, |s| s.elapsed());
                }
            }
            Ok(_) => {}
            Err(e) => panic!("baseline client: {e}"),
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = scratch("fanout");
    // A site this size needs the broker's per-client queues opened up: mosquitto keeps 1,000
    // messages per client by default and drops the rest of a burst (docs/operations.md).
    // HASHWARDEN_BENCH_BROKER=embedded runs the same fleet through the agent's own broker.
    let embedded = std::env::var("HASHWARDEN_BENCH_BROKER").as_deref() == Ok("embedded");
    let broker = (!embedded)
        .then(|| Broker::start_with(&dir, "max_queued_messages 0\nmax_inflight_messages 0\n"));
    let port = broker.as_ref().map_or_else(free_port, |b| b.port);
    let broker_lines = if embedded {
        format!("[broker]\nlisten = \"127.0.0.1:{port}\"\n")
    } else {
        String::new()
    };
    let agent_broker = if embedded {
        String::new()
    } else {
        format!("mqtt_url = \"mqtt://127.0.0.1:{port}\"\n")
    };
    let agent_bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_hashwarden"));
    let key = dir.join("host.key");
    let output = std::process::Command::new(&agent_bin)
        .args(["keys", "init", "--out"])
        .arg(&key)
        .args(["--key-id", "bench"])
        .output()
        .expect("runs");
    assert!(output.status.success());

    let state = fleet_proto::examples::payload("/state").expect("example");
    let mut telemetry: fleet_proto::Telemetry =
        serde_json::from_slice(&fleet_proto::examples::payload("/telemetry").expect("example"))
            .expect("parses");
    let mining = serde_json::to_vec(&telemetry).expect("encodes");
    telemetry.mode = fleet_proto::Mode::Sleeping;
    telemetry.power_w = 0.0;
    let sleeping = serde_json::to_vec(&telemetry).expect("encodes");

    // The simulated miners: one client for all of them.
    let (miners, mut miners_loop) = client(port, "miners");
    miners
        .subscribe(format!("hashwarden/v1/{SITE}/+/cmd"), QoS::AtLeastOnce)
        .await
        .expect("subscribes");
    let announce = miners.clone();
    let (state_a, mining_a) = (state.clone(), mining.clone());
    tokio::spawn(async move {
        for m in 0..MINERS {
            let topic = |kind: &str| format!("hashwarden/v1/{SITE}/m{m:05}/{kind}");
            let _ = announce
                .publish(topic("status"), QoS::AtLeastOnce, true, "online")
                .await;
            let _ = announce
                .publish(topic("state"), QoS::AtLeastOnce, true, state_a.clone())
                .await;
            let _ = announce
                .publish(topic("telemetry"), QoS::AtMostOnce, false, mining_a.clone())
                .await;
        }
    });
    let metrics_port = free_port();
    let site = dir.join("site.toml");
    std::fs::write(
        &site,
        format!(
            "[site]\nname = \"{SITE}\"\n[tariff]\nkind = \"fixed\"\nprice = 0.06\n\
             [policy]\nbatch_size = {MINERS}\nmin_on_s = 0\nmin_off_s = 0\nrestore_cooldown_s = 0\n\
             [agent]\n{agent_broker}key_file = \"{}\"\nkey_id = \"bench\"\n\
             plan_interval_s = 0.5\nstore = \"{}\"\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n\
             {broker_lines}",
            key.display(),
            dir.join("agent.db").display()
        ),
    )
    .expect("writes");
    let site = site.display().to_string();
    let agent = Process::start(
        &agent_bin,
        &["run", "--config", &site],
        dir.join("agent.log"),
    );
    // Let the agent hear the whole fleet before the market moves.
    let deadline = Instant::now() + Duration::from_secs(60);
    let machines_known = || {
        try_http_get(metrics_port, "/metrics")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("hashwarden_machines_online "))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .unwrap_or(0.0) as usize
    };
    // Drive the miners' client while waiting.
    let (tx, mut commands) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let responder = miners.clone();
    let (sleeping_r,) = (sleeping.clone(),);
    tokio::spawn(async move {
        loop {
            match miners_loop.poll().await {
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
                    let _ = tx.send((miner.clone(), arrived));
                    let base = format!("hashwarden/v1/{SITE}/{miner}");
                    for status in ["accepted", "applied"] {
                        let ack = format!(
                            "{{\"v\":1,\"id\":\"{id}\",\"miner\":\"{miner}\",\"status\":\"{status}\",\"reason\":null,\"at\":{}}}",
                            unix_now()
                        );
                        let _ = responder
                            .publish(format!("{base}/ack"), QoS::AtLeastOnce, false, ack)
                            .await;
                    }
                    // At once and again at the firmware's default interval: a broker may deliver
                    // the first report before the ack (MQTT orders messages per topic only;
                    // rumqttd does not order across subscriptions), and the agent counts only
                    // telemetry after the change as proof.
                    let _ = responder
                        .publish(
                            format!("{base}/telemetry"),
                            QoS::AtMostOnce,
                            false,
                            sleeping_r.clone(),
                        )
                        .await;
                    let (later, report) = (responder.clone(), sleeping_r.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        let _ = later
                            .publish(format!("{base}/telemetry"), QoS::AtMostOnce, false, report)
                            .await;
                    });
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    while machines_known() < MINERS {
        assert!(
            Instant::now() < deadline,
            "the agent heard {} miners",
            machines_known()
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
            format!(
                "{{\"v\":1,\"at\":{},\"hashprice_usd_per_ph_day\":15.0}}",
                unix_now()
            ),
        )
        .await
        .expect("publishes");
    let mut arrivals: HashMap<String, f64> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while arrivals.len() < MINERS && Instant::now() < deadline {
        if let Ok(Some((miner, at))) =
            tokio::time::timeout(Duration::from_secs(5), commands.recv()).await
        {
            arrivals
                .entry(miner)
                .or_insert((at - started).as_secs_f64());
        }
    }
    let mut verified_at = None;
    while verified_at.is_none() && Instant::now() < deadline {
        let verified = http_get(metrics_port, "/metrics")
            .lines()
            .find(|l| l.starts_with("hashwarden_changes_verified_total "))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .unwrap_or(0.0) as usize;
        if verified >= MINERS {
            verified_at = Some(started.elapsed());
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let metrics = http_get(metrics_port, "/metrics");
    // Before the agent stops: an embedded broker stops with it.
    let baseline = broker_baseline(port, 420).await;
    let (status, summary) = agent.terminate();
    assert!(status.success());
    let mut times: Vec<f64> = arrivals.values().copied().collect();
    times.sort_by(f64::total_cmp);
    let which = if embedded {
        "the embedded broker (rumqttd)"
    } else {
        "mosquitto"
    };
    println!("{MINERS} miners through {which}; the market drops below every breakeven");
    println!();
    println!(
        "| measure | p50 | p99 | all | baseline: broker alone, {MINERS} messages | p99 / baseline |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| market publish → command at the miner | {:.0} ms | {:.0} ms | {:.0} ms ({} of {MINERS}) | {:.0} ms | {:.1}× |",
        percentile(&times, 0.5) * 1e3,
        percentile(&times, 0.99) * 1e3,
        times.last().copied().unwrap_or(f64::NAN) * 1e3,
        times.len(),
        baseline.as_secs_f64() * 1e3,
        percentile(&times, 0.99) / baseline.as_secs_f64(),
    );
    println!(
        "| market publish → every change verified by telemetry | | | {} | | |",
        verified_at.map_or("not within 120 s".into(), |d| format!(
            "{:.0} ms",
            d.as_secs_f64() * 1e3
        ))
    );
    let bucket = |le: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "hashwarden_command_latency_seconds_bucket{{le=\"{le}\"}}"
                ))
            })
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    println!();
    println!("agent's own publish → applied-ack latency (histogram, share of commands):");
    for le in ["0.25", "0.5", "1", "2", "5"] {
        println!("  ≤ {le} s: {:.1} %", bucket(le) / MINERS as f64 * 100.0);
    }
    println!("agent summary: {summary}");
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
