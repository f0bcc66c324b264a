//! A small scripted Stratum pool on a local socket that checks every submitted share itself: the
//! header rebuilt from its own job, extranonce1 and the submitted extranonce2, ntime, nonce and
//! version bits must hash to the difficulty it set (scaled by the simulator's 2^-26 floor).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use serde_json::{Value, json};
use stratum::Notify;

const EXTRANONCE1: &str = "e9695791";
const POOL_DIFFICULTY: f64 = 1024.0;
/// The simulator finds nonces genuine at the requested difficulty × 2^-26.
const SIM_SCALE: f64 = 1.0 / 67_108_864.0;
/// A real job (ESP-Miner's test vector) with no merkle branches.
const NOTIFY_PARAMS: &str = r#"["j1","bf44fd3513dc7b837d60e5c628b572b448d204a8000007490000000000000000","01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008","072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000",[],"20000004","1705dd01","64658bd8",true]"#;

#[derive(Debug, Default)]
pub struct PoolReport {
    pub methods: Vec<String>,
    pub good_shares: u32,
    pub bad_shares: Vec<String>,
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

pub fn serve_pool(listener: TcpListener, report: mpsc::Sender<PoolReport>) {
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
    // Chains that hashed the same header would submit the same share twice.
    let mut seen = std::collections::HashSet::new();
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
                let fresh = seen.insert(format!("{:?}", submitted.get(2..)));
                let good = right_job
                    && right_user
                    && fresh
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
