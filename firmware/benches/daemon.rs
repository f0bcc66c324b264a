//! The daemon's costs, measured on the built binary and printed as a table (`cargo bench -p
//! hashwarden-fw --bench daemon`). Every figure comes with a baseline from the same run:
//!
//! - CPU per validated nonce and per job, with the chain on a real PTY (the simulator runs in
//!   this process, so the daemon's CPU time is its own), against one SHA-256d of a block header
//!   (the least any validation can cost) and against the time budget per nonce at the rate.
//! - Peak RSS with one 12-chip chain and with 3 chains × 100 chips, against the 32 MB target.
//! - Sleep latency: a signed `sleep` over a real broker (mosquitto) until the `applied` ack,
//!   against the same broker's round trip for the `accepted` ack of the same command.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bm13xx::{BlockHeader, ChipModel};
use fleet_proto::Action;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

// The tests' PTY chains; the bench uses only some of their constructors.
#[allow(dead_code)]
#[path = "../tests/common/ptys.rs"]
mod ptys;
// The tests' MQTT helpers: mosquitto on a free port, the host's key, commands, config.
#[allow(dead_code)]
#[path = "../tests/common/fleet.rs"]
mod fleet;

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hw-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// ns per SHA-256d of an 80-byte header, the floor of validating one nonce.
fn sha256d_ns() -> f64 {
    let mut header = BlockHeader {
        version: 0x2000_0000,
        prev_hash: [1; 32],
        merkle_root: [2; 32],
        ntime: 3,
        nbits: 4,
        nonce: 0,
    };
    let rounds = 200_000u32;
    let started = Instant::now();
    let mut sink = 0u8;
    for nonce in 0..rounds {
        header.nonce = nonce;
        sink ^= header.hash()[0];
    }
    std::hint::black_box(sink);
    started.elapsed().as_nanos() as f64 / f64::from(rounds)
}

/// ns per job dispatched (midstates for version rolling, the job frame, the job table).
fn dispatch_ns() -> f64 {
    use hashboard::mining::{Dispatcher, Work};
    let addressing = bm13xx::ChipAddressing::for_chain(12).expect("valid");
    let mut dispatcher = Dispatcher::new(
        ChipModel::Bm1397,
        bm13xx::NonceLayout::ESP_MINER,
        addressing,
        256.0,
        1.0,
    );
    let rounds = 50_000u64;
    let started = Instant::now();
    for n in 0..rounds {
        let mut merkle_root = [0u8; 32];
        merkle_root[..8].copy_from_slice(&n.to_le_bytes());
        let frame = dispatcher.dispatch(Work {
            work_id: n,
            header: BlockHeader {
                version: 0x2000_0000,
                prev_hash: [0x42; 32],
                merkle_root,
                ntime: 1,
                nbits: 2,
                nonce: 0,
            },
            version_mask: bm13xx::VersionMask::BIP320,
            pool_difficulty: 1024.0,
        });
        std::hint::black_box(frame);
    }
    started.elapsed().as_nanos() as f64 / rounds as f64
}

/// (CPU seconds, peak RSS in MiB) of a running process.
fn cpu_and_peak_rss(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name, which may contain spaces: utime and stime are 14th, 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    let hz: f64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let peak_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    (ticks / hz, peak_kib / 1024.0)
}

fn terminate(mut child: Child) -> serde_json::Value {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let output = std::mem::replace(&mut child, Command::new("true").spawn().expect("true"))
        .wait_with_output()
        .expect("exits");
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Null)
}

struct SerialRun {
    chains: u32,
    chips: u32,
    nonces: f64,
    wall_s: f64,
    cpu_s: f64,
    peak_mib: f64,
}

/// The daemon on `chains` PTY chains of `chips` BM1397 at `speed` × real time, for `seconds`.
fn serial_run(dir: &Path, chains: u32, chips: u32, speed: f64, seconds: u64) -> SerialRun {
    let machine = ptys::Chains::serve_at(&vec![chips; chains as usize], speed, None);
    let config = dir.join(format!("serial-{chains}x{chips}.toml"));
    std::fs::write(
        &config,
        format!(
            "[board]\nname = \"bm1397-hashboard-12\"\nchains = {chains}\nchips_per_chain = {chips}\n{}",
            machine.config_sections()
        ),
    )
    .expect("config");
    let http = format!("127.0.0.1:{}", fleet::free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_hashwarden-fw"))
        .arg("--config")
        .arg(&config)
        .args(["--api-listen", "off", "--http-listen", &http])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon");
    // Measure the steady state only: from the first nonces, after bring-up's clock ramp.
    let deadline = Instant::now() + Duration::from_secs(120);
    let first = loop {
        assert!(Instant::now() < deadline, "the chain never mined");
        if let Some(nonces) = metric(&http, "hashwarden_nonces_total").filter(|n| *n > 0.0) {
            break nonces;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (cpu_start, _) = cpu_and_peak_rss(child.id());
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let last = metric(&http, "hashwarden_nonces_total").unwrap_or(first);
    let (cpu_end, peak_mib) = cpu_and_peak_rss(child.id());
    let wall_s = started.elapsed().as_secs_f64();
    let _ = terminate(child);
    let _ = machine.finish();
    SerialRun {
        chains,
        chips,
        nonces: last - first,
        wall_s,
        cpu_s: cpu_end - cpu_start,
        peak_mib,
    }
}

/// One unlabelled sample from the daemon's `/metrics`.
fn metric(address: &str, name: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// (publish → accepted, publish → applied) for `rounds` sleep/wake pairs, ms.
fn sleep_latency(dir: &Path, rounds: u64) -> Vec<(f64, f64)> {
    let broker = fleet::Broker::start(dir);
    let port = broker.port;
    let signer = fleet::signer();
    let config = dir.join("mqtt.toml");
    std::fs::write(&config, fleet::config(port, &dir.join("data"), "")).expect("config");
    let daemon = Command::new(env!("CARGO_BIN_EXE_hashwarden-fw"))
        .arg("--sim")
        .arg("--config")
        .arg(&config)
        .args(["--api-listen", "off", "--http-listen", "off"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let timings = runtime.block_on(async {
        let (client, mut eventloop) =
            AsyncClient::new(MqttOptions::new("bench-host", "127.0.0.1", port), 64);
        let (acks_tx, mut acks) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                if let Ok(Event::Incoming(Packet::Publish(p))) = eventloop.poll().await {
                    let _ = acks_tx.send((Instant::now(), p.topic.to_vec(), p.payload.to_vec()));
                }
            }
        });
        let topic = fleet::topic;
        client
            .subscribe(topic("+"), QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        // Wait until the miner mines.
        loop {
            let (_, t, payload) = acks.recv().await.expect("messages");
            if t == topic("telemetry").as_bytes() {
                let v: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
                if v["hashrate_ths"]["s5"].as_f64().unwrap_or(0.0) > 0.0 {
                    break;
                }
            }
        }
        let mut timings = Vec::new();
        let mut seq = 1;
        for _ in 0..rounds {
            let mut sleep_ms = (0.0, 0.0);
            for action in [Action::Sleep, Action::Wake] {
                let command = fleet::command(action.clone(), seq);
                let id = command.id.clone();
                let payload =
                    serde_json::to_vec(&signer.sign(&command).expect("sign")).expect("json");
                let sent = Instant::now();
                client
                    .publish(topic("cmd"), QoS::AtLeastOnce, false, payload)
                    .await
                    .expect("publish");
                let (mut accepted, mut applied) = (None, None);
                while applied.is_none() {
                    let (at, t, payload) = acks.recv().await.expect("acks");
                    if t != topic("ack").as_bytes() {
                        continue;
                    }
                    let ack: serde_json::Value =
                        serde_json::from_slice(&payload).unwrap_or_default();
                    if ack["id"] != id.as_str() {
                        continue;
                    }
                    let ms = (at - sent).as_secs_f64() * 1e3;
                    match ack["status"].as_str() {
                        Some("accepted") => accepted = Some(ms),
                        Some("applied") => applied = Some(ms),
                        other => panic!("{other:?}: {ack}"),
                    }
                }
                if action == Action::Sleep {
                    sleep_ms = (accepted.unwrap_or(0.0), applied.unwrap_or(0.0));
                }
                seq += 1;
                // Let the chips settle back to mining before the next sleep.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            timings.push(sleep_ms);
        }
        timings
    });
    let _ = terminate(daemon);
    drop(broker);
    timings
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported here.
    let dir = scratch();
    let hash_ns = sha256d_ns();
    let job_ns = dispatch_ns();
    println!("SHA-256d of a header (baseline): {hash_ns:.0} ns");
    println!(
        "CPU per job dispatched (4 midstates, frame, job table): {:.1} µs = {:.1}× SHA-256d\n",
        job_ns / 1e3,
        job_ns / hash_ns
    );

    println!(
        "| chains × chips | nonces/s | daemon CPU (share of one core) | daemon CPU/nonce | × SHA-256d | budget/nonce at this rate | budget / cost | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (chains, chips, speed) in [(1, 12, 8.0), (3, 100, 1.0)] {
        let run = serial_run(&dir, chains, chips, speed, 20);
        let rate = run.nonces / run.wall_s;
        let cpu_per_nonce_us = run.cpu_s / run.nonces.max(1.0) * 1e6;
        let budget_us = 1e6 / rate.max(1e-9);
        println!(
            "| {} × {} BM1397 at {speed}× | {rate:.0} | {:.1} % | {cpu_per_nonce_us:.0} µs | {:.0}× | {budget_us:.0} µs | {:.0}× | {:.1} MiB |",
            run.chains,
            run.chips,
            100.0 * run.cpu_s / run.wall_s,
            cpu_per_nonce_us * 1e3 / hash_ns,
            budget_us / cpu_per_nonce_us,
            run.peak_mib
        );
    }

    let mut timings = sleep_latency(&dir, 5);
    timings.sort_by(|a, b| a.1.total_cmp(&b.1));
    println!(
        "\n| sleep command | publish → accepted ack (broker round trip) | publish → applied ack (chains idle) | applied / 1 s target |"
    );
    println!("|---|---|---|---|");
    for (i, (accepted, applied)) in timings.iter().enumerate() {
        println!(
            "| {} | {accepted:.1} ms | {applied:.1} ms | {:.2} |",
            i + 1,
            applied / 1000.0
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
