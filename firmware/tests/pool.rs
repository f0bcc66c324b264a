//! The daemon mining a Stratum pool's work on its simulated board. The pool here is a small
//! scripted one on a local socket that checks every submitted share itself: the header rebuilt
//! from its own job, extranonce1 and the submitted extranonce2, ntime, nonce and version bits
//! must hash to the difficulty it set (scaled by the simulator's 2^-26 floor).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

mod common;

use common::{sim_with_config, stderr, summary};
use std::sync::mpsc;
use std::thread;

use serde_json::{Value, json};
use stratum::Notify;

const EXTRANONCE1: &str = "e9695791";
const POOL_DIFFICULTY: f64 = 1024.0;
/// The simulator finds nonces genuine at the requested difficulty × 2^-26.
const SIM_SCALE: f64 = 1.0 / 67_108_864.0;
/// A real job (ESP-Miner's test vector) with no merkle branches.
const NOTIFY_PARAMS: &str = r#"["j1","bf44fd3513dc7b837d60e5c628b572b448d204a8000007490000000000000000","01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008","072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000",[],"20000004","1705dd01","64658bd8",true]"#;

#[derive(Debug, Default)]
struct PoolReport {
    methods: Vec<String>,
    good_shares: u32,
    bad_shares: Vec<String>,
}

fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

fn hex_u32(value: &Value) -> Option<u32> {
    value.as_str().and_then(|s| u32::from_str_radix(s, 16).ok())
}

/// Rebuilds the submitted header from the pool's own job and returns its difficulty.
fn share_difficulty(job: &Notify, params: &[Value]) -> Option<f64> {
    let extranonce1 = hex_bytes(EXTRANONCE1)?;
    let extranonce2 = hex_bytes(params.get(2)?.as_str()?)?;
    let mut header = job.header(&extranonce1, &extranonce2);
    header.ntime = hex_u32(params.get(3)?)?;
    header.nonce = hex_u32(params.get(4)?)?;
    let rolled_bits = params.get(5).map_or(Some(0), hex_u32)?;
    if rolled_bits & !0x1fff_e000 != 0 {
        return None;
    }
    header.version = job.version ^ rolled_bits;
    Some(header.share_difficulty())
}

fn serve_pool(listener: TcpListener, report: mpsc::Sender<PoolReport>) {
    let Ok((stream, _)) = listener.accept() else {
        return;
    };
    let mut writer = stream.try_clone().expect("clone socket");
    let mut send = |value: Value| {
        let _ = writer.write_all(format!("{value}\n").as_bytes());
    };
    let params: Value = serde_json::from_str(NOTIFY_PARAMS).expect("valid params");
    let job = Notify::from_params(&params).expect("valid job");
    let mut pool_report = PoolReport::default();
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        let Ok(request) = serde_json::from_str::<Value>(&line) else {
            pool_report.bad_shares.push(format!("not JSON: {line}"));
            continue;
        };
        let id = request["id"].clone();
        let method = request["method"].as_str().unwrap_or("").to_string();
        match method.as_str() {
            "mining.configure" => send(json!({"id": id, "error": null,
                "result": {"version-rolling": true, "version-rolling.mask": "1fffe000"}})),
            "mining.subscribe" => send(json!({"id": id, "error": null,
                "result": [[["mining.notify", "1"]], EXTRANONCE1, 4]})),
            "mining.authorize" => {
                send(json!({"id": id, "result": true, "error": null}));
                send(
                    json!({"id": null, "method": "mining.set_difficulty", "params": [POOL_DIFFICULTY]}),
                );
                send(json!({"id": null, "method": "mining.notify", "params": params}));
            }
            "mining.submit" => {
                let submitted = request["params"].as_array().cloned().unwrap_or_default();
                let right_job = submitted.get(1).and_then(Value::as_str) == Some("j1");
                let right_user = submitted.first().and_then(Value::as_str) == Some("bc1qtest.rig7");
                let difficulty = share_difficulty(&job, &submitted);
                let good = right_job
                    && right_user
                    && difficulty.is_some_and(|d| d >= POOL_DIFFICULTY * SIM_SCALE);
                if good {
                    pool_report.good_shares += 1;
                    send(json!({"id": id, "result": true, "error": null}));
                } else {
                    pool_report
                        .bad_shares
                        .push(format!("{submitted:?} difficulty {difficulty:?}"));
                    send(
                        json!({"id": id, "result": null, "error": [23, "low difficulty share", null]}),
                    );
                }
            }
            _ => {}
        }
        pool_report.methods.push(method);
    }
    let _ = report.send(pool_report);
}

#[test]
fn shares_found_on_pool_work_are_submitted_and_accepted() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (report_tx, report_rx) = mpsc::channel();
    let pool = thread::spawn(move || serve_pool(listener, report_tx));

    let output = sim_with_config(
        "pool.toml",
        &format!(
            "[board]\nname = \"bm1397-hashboard-12\"\n[[pools]]\nurl = \"stratum+tcp://127.0.0.1:{port}\"\nuser = \"bc1qtest.rig7\"\n"
        ),
        "4",
    );
    // The daemon has exited, so its socket is closed and the pool's read loop ends.
    pool.join().expect("pool thread");
    let report = report_rx.recv().expect("pool report");

    assert_eq!(
        report.methods[..3],
        ["mining.configure", "mining.subscribe", "mining.authorize"]
    );
    assert!(
        report.bad_shares.is_empty(),
        "bad shares: {:?}",
        report.bad_shares
    );
    assert!(
        report.good_shares >= 10,
        "only {} shares reached the pool",
        report.good_shares
    );

    let summary = summary(&output);
    // The daemon flushes its queued shares before it exits: every share found reached the pool.
    assert_eq!(
        summary["shares"].as_u64(),
        Some(u64::from(report.good_shares)),
        "{summary}"
    );
    let accepted = summary["pool"]["accepted"].as_u64().expect("accepted");
    assert!(
        accepted > 0 && accepted <= u64::from(report.good_shares),
        "{summary}"
    );
    assert_eq!(summary["pool"]["rejected"], 0);
    assert_eq!(summary["hardware_errors"], 0);
}

#[test]
fn an_unreachable_pool_is_retried_and_the_daemon_still_stops_cleanly() {
    // Bound and dropped: nothing listens on the port any more, so connecting is refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port();
    let output = sim_with_config(
        "nopool.toml",
        &format!(
            "[board]\nname = \"bitaxe-max\"\n[[pools]]\nurl = \"stratum+tcp://127.0.0.1:{port}\"\nuser = \"u\"\n"
        ),
        "2",
    );
    let stderr = stderr(&output);
    assert!(stderr.contains("pool connection lost"), "{stderr}");
    let summary = summary(&output);
    // No pool, no work: the chips found nothing and nothing was counted as accepted.
    assert_eq!(summary["nonces"], 0, "{summary}");
    assert_eq!(summary["pool"]["accepted"], 0, "{summary}");
}
