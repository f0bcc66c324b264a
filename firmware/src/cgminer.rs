//! The cgminer-compatible API on TCP 4028, which fleet tools (pyasic, Awesome Miner, Foreman,
//! `cgminer-api` scripts) poll: one request per connection, one reply, a NUL, close. Requests are
//! JSON (`{"command":"summary","parameter":""}`, `summary+pools` for several) or plain text
//! (`summary|param`), answered in kind. Read-only: commands that change the miner are refused
//! with cgminer's "Access denied" rather than silently ignored.
//!
//! The reply is built by [`respond`], a pure function of the request and a [`Snapshot`] the
//! mining loop publishes; the server only moves bytes.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::snapshot::{ChainRow, PoolRow, Snapshot};

/// A request longer than this is not one cgminer would take either.
const MAX_REQUEST: usize = 8 * 1024;
/// A client that sends nothing for this long gets an answer to what it sent, or is dropped.
const IDLE: Duration = Duration::from_millis(500);
/// A whole exchange, request to reply, takes at most this.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Monitoring tools poll with one connection per request: a few at a time.
const LIMITS: net_guard::Limits = net_guard::Limits {
    max_connections: 32,
    max_per_peer: 8,
    idle: Duration::from_secs(5),
};
/// cgminer's API version string of the era whose field names tools parse.
const API_VERSION: &str = "3.7";

// cgminer's message codes (api.c), which tools check.
const CODE_POOLS: u32 = 7;
const CODE_DEVS: u32 = 9;
const CODE_SUMMARY: u32 = 11;
const CODE_INVALID_COMMAND: u32 = 14;
const CODE_VERSION: u32 = 22;
const CODE_INVALID_JSON: u32 = 23;
const CODE_MISSING_COMMAND: u32 = 24;
const CODE_CONFIG: u32 = 33;
const CODE_ACCESS_DENIED: u32 = 45;
const CODE_DEVDETAILS: u32 = 69;
const CODE_STATS: u32 = 70;

/// Commands cgminer treats as privileged; refused here because the API is read-only.
const PRIVILEGED: &[&str] = &[
    "switchpool",
    "enablepool",
    "disablepool",
    "addpool",
    "removepool",
    "poolpriority",
    "poolquota",
    "save",
    "quit",
    "restart",
    "privileged",
    "notify",
    "setconfig",
    "ascset",
    "ascenable",
    "ascdisable",
    "pgaset",
    "pgaenable",
    "pgadisable",
    "zero",
    "debug",
    "hotplug",
    "lockstats",
    "failover-only",
];

/// One reply: a status and the sections of data, in cgminer's order.
struct Reply {
    success: bool,
    code: u32,
    message: String,
    sections: Vec<(&'static str, Vec<Map<String, Value>>)>,
}

impl Reply {
    fn ok(
        code: u32,
        message: impl Into<String>,
        name: &'static str,
        rows: Vec<Map<String, Value>>,
    ) -> Self {
        Self {
            success: true,
            code,
            message: message.into(),
            sections: vec![(name, rows)],
        }
    }

    fn error(code: u32, message: impl Into<String>) -> Self {
        Self {
            success: false,
            code,
            message: message.into(),
            sections: Vec::new(),
        }
    }

    fn status(&self, when: u64) -> Map<String, Value> {
        row(json!({
            "STATUS": if self.success { "S" } else { "E" },
            "When": when,
            "Code": self.code,
            "Msg": self.message,
            "Description": format!("hashwarden {}", env!("CARGO_PKG_VERSION")),
        }))
    }

    fn to_json(&self, when: u64) -> Value {
        let mut object = Map::new();
        object.insert(
            "STATUS".into(),
            Value::Array(vec![Value::Object(self.status(when))]),
        );
        for (name, rows) in &self.sections {
            object.insert(
                (*name).into(),
                Value::Array(rows.iter().cloned().map(Value::Object).collect()),
            );
        }
        object.insert("id".into(), json!(1));
        Value::Object(object)
    }

    /// cgminer's plain-text form: `STATUS=S,When=…|SUMMARY,Elapsed=…|`.
    fn to_text(&self, when: u64) -> String {
        let fields = |map: &Map<String, Value>| {
            map.iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        // STATUS leads with its severity, as text parsers expect (a JSON map would sort it).
        let mut text = format!(
            "STATUS={},When={when},Code={},Msg={},Description=hashwarden {}|",
            if self.success { "S" } else { "E" },
            self.code,
            self.message,
            env!("CARGO_PKG_VERSION"),
        );
        for (name, rows) in &self.sections {
            for r in rows {
                text.push_str(&format!("{name},{}|", fields(r)));
            }
        }
        text
    }
}

fn row(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn command_reply(command: &str, snapshot: &Snapshot) -> Reply {
    match command {
        "version" => Reply::ok(
            CODE_VERSION,
            "CGMiner versions",
            "VERSION",
            vec![row(json!({"CGMiner": env!("CARGO_PKG_VERSION"), "API": API_VERSION, "Miner": "hashwarden", "Type": snapshot.board}))],
        ),
        "summary" => Reply::ok(CODE_SUMMARY, "Summary", "SUMMARY", vec![summary(snapshot)]),
        "pools" => Reply::ok(
            CODE_POOLS,
            format!("{} Pool(s)", snapshot.pools.len()),
            "POOLS",
            snapshot.pools.iter().enumerate().map(|(i, p)| pool(i, p, snapshot)).collect(),
        ),
        "devs" => Reply::ok(
            CODE_DEVS,
            format!("{} ASC(s)", snapshot.chains.len()),
            "DEVS",
            snapshot.chains.iter().enumerate().map(|(i, c)| dev(i, c)).collect(),
        ),
        "devdetails" => Reply::ok(
            CODE_DEVDETAILS,
            "Device Details",
            "DEVDETAILS",
            snapshot
                .chains
                .iter()
                .enumerate()
                .map(|(i, c)| row(json!({"DEVDETAILS": i, "Name": "BM", "ID": i, "Driver": "hashwarden", "Kernel": "", "Model": c.model, "Device Path": ""})))
                .collect(),
        ),
        "stats" => Reply::ok(
            CODE_STATS,
            "CGMiner stats",
            "STATS",
            vec![row(json!({
                "STATS": 0, "ID": "HW0", "Elapsed": snapshot.elapsed_s, "Type": snapshot.board,
                "miner_count": snapshot.chains.len(),
                "chain_acn": snapshot.chains.iter().map(|c| c.chips).collect::<Vec<_>>(),
                "temp_max": snapshot.chains.iter().map(|c| c.temperature_c).fold(0.0, f64::max),
            }))],
        ),
        "config" => Reply::ok(
            CODE_CONFIG,
            "CGMiner config",
            "CONFIG",
            vec![row(json!({
                "ASC Count": snapshot.chains.len(), "PGA Count": 0, "Pool Count": snapshot.pools.len(),
                "Strategy": "Failover", "Log Interval": 5, "Device Code": "BM13XX", "OS": "Linux",
                "Hotplug": "None",
            }))],
        ),
        other if PRIVILEGED.contains(&other) => {
            Reply::error(CODE_ACCESS_DENIED, format!("Access denied to '{other}' command"))
        }
        _ => Reply::error(CODE_INVALID_COMMAND, "Invalid command"),
    }
}

fn summary(s: &Snapshot) -> Map<String, Value> {
    let minutes = (s.elapsed_s.max(1)) as f64 / 60.0;
    row(json!({
        "Elapsed": s.elapsed_s,
        "MHS av": s.mhs_av,
        "MHS 5s": s.mhs_5s,
        "Found Blocks": 0,
        "Getworks": 0,
        "Accepted": s.accepted,
        "Rejected": s.rejected,
        "Hardware Errors": s.hardware_errors,
        "Utility": s.accepted as f64 / minutes,
        "Discarded": 0,
        "Stale": s.stale,
        "Get Failures": 0,
        "Local Work": 0,
        "Remote Failures": 0,
        "Network Blocks": 0,
        "Total MH": s.mhs_av * s.elapsed_s as f64,
        "Work Utility": s.nonces as f64 / minutes,
        "Device Hardware%": percent(s.hardware_errors, s.hardware_errors + s.nonces),
        "Device Rejected%": percent(s.rejected, s.accepted + s.rejected),
        "Pool Rejected%": percent(s.rejected, s.accepted + s.rejected),
        "Pool Stale%": percent(s.stale, s.accepted + s.rejected + s.stale),
    }))
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

fn pool(index: usize, p: &PoolRow, s: &Snapshot) -> Map<String, Value> {
    // Only the first live pool mines (failover); its counters are the miner's.
    let active = s.pools.iter().position(|p| p.alive) == Some(index);
    let counted = |n: u64| if active { n } else { 0 };
    row(json!({
        "POOL": index,
        "URL": p.url,
        "Status": if p.alive { "Alive" } else { "Dead" },
        "Priority": index,
        "Quota": 1,
        "Long Poll": "N",
        "Getworks": 0,
        "Accepted": counted(s.accepted),
        "Rejected": counted(s.rejected),
        "Stale": counted(s.stale),
        "User": p.user,
        "Stratum Active": active,
        "Stratum URL": p.url.strip_prefix("stratum+tcp://").unwrap_or(&p.url),
    }))
}

fn dev(index: usize, c: &ChainRow) -> Map<String, Value> {
    row(json!({
        "ASC": index,
        "Name": "BM",
        "ID": index,
        "Enabled": "Y",
        "Status": "Alive",
        "Temperature": c.temperature_c,
        "MHS av": c.mhs_av,
        "Hardware Errors": c.hardware_errors,
        "Chips": c.chips,
        "Frequency": c.frequency_mhz,
    }))
}

/// Answers one request. `when` is the Unix time for the status; the reply ends with the NUL
/// cgminer clients read up to.
pub fn respond(request: &[u8], snapshot: &Snapshot, when: u64) -> Vec<u8> {
    let text = String::from_utf8_lossy(request);
    let text = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    let mut out = if text.starts_with('{') {
        respond_json(text, snapshot, when).to_string()
    } else {
        let command = text.split('|').next().unwrap_or("").trim();
        command_reply(command, snapshot).to_text(when)
    };
    out.push('\0');
    out.into_bytes()
}

fn respond_json(text: &str, snapshot: &Snapshot, when: u64) -> Value {
    let Ok(request) = serde_json::from_str::<Value>(text) else {
        return Reply::error(CODE_INVALID_JSON, "Invalid JSON").to_json(when);
    };
    let Some(command) = request.get("command").and_then(Value::as_str) else {
        return Reply::error(CODE_MISSING_COMMAND, "Missing JSON 'command'").to_json(when);
    };
    if !command.contains('+') {
        return command_reply(command, snapshot).to_json(when);
    }
    // Several commands: one reply per command, keyed by its name (cgminer's multi-command form).
    let mut object = Map::new();
    for part in command.split('+').filter(|p| !p.is_empty()) {
        let reply = command_reply(part, snapshot);
        object.insert(part.to_string(), Value::Array(vec![reply.to_json(when)]));
    }
    Value::Object(object)
}

/// Serves the API until the task is dropped. A port already in use is logged, not fatal: the
/// miner keeps mining without its API.
pub async fn serve(address: SocketAddr, snapshots: watch::Receiver<Snapshot>) {
    let listener = match TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(e) => {
            warn!(%address, error = %e, "cgminer API not started");
            return;
        }
    };
    match listener.local_addr() {
        Ok(local) => info!(address = %local, "cgminer API listening"),
        Err(e) => warn!(error = %e, "cgminer API listening on an unknown address"),
    }
    let mut listener = net_guard::GuardedListener::new(listener, LIMITS, "cgminer API");
    loop {
        let (stream, peer) = listener.accept().await;
        let snapshots = snapshots.clone();
        tokio::spawn(async move {
            // One request per connection, whole within the deadline: a client that trickles
            // bytes just inside the idle time still lets go of its slot.
            match tokio::time::timeout(REQUEST_DEADLINE, answer(stream, &snapshots)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(%peer, error = %e, "API client"),
                Err(_) => debug!(%peer, "API client too slow; closed"),
            }
        });
    }
}

async fn answer(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    snapshots: &watch::Receiver<Snapshot>,
) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    // Clients differ: some close their side, some end with NUL or a newline, most just wait.
    loop {
        match tokio::time::timeout(IDLE, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => {
                request.extend_from_slice(&chunk[..n]);
                if request.len() > MAX_REQUEST {
                    request.clear();
                    break;
                }
                if complete(&request) {
                    break;
                }
            }
            Ok(Err(e)) => return Err(e),
        }
    }
    if request.is_empty() {
        return Ok(());
    }
    let when = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let reply = respond(&request, &snapshots.borrow(), when);
    stream.write_all(&reply).await?;
    stream.shutdown().await
}

/// Whether the request is whole without waiting for more.
fn complete(request: &[u8]) -> bool {
    if request.iter().any(|&b| b == 0 || b == b'\n') {
        return true;
    }
    let text = String::from_utf8_lossy(request);
    let text = text.trim();
    text.starts_with('{') && serde_json::from_str::<Value>(text).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            elapsed_s: 120,
            mhs_av: 3_400_000.0,
            mhs_5s: 3_350_000.0,
            accepted: 40,
            rejected: 2,
            stale: 1,
            hardware_errors: 3,
            nonces: 397,
            pools: vec![
                PoolRow {
                    url: "stratum+tcp://pool.example:3333".into(),
                    user: "bc1q.rig1".into(),
                    alive: true,
                },
                PoolRow {
                    url: "stratum+tcp://backup.example:3333".into(),
                    user: "bc1q.rig1".into(),
                    alive: false,
                },
            ],
            chains: vec![ChainRow {
                chips: 12,
                model: "BM1397",
                frequency_mhz: 425.0,
                temperature_c: 61.5,
                mhs_av: 3_400_000.0,
                hardware_errors: 3,
                ..ChainRow::default()
            }],
            board: "bm1397-hashboard-12",
            ..Snapshot::default()
        }
    }

    fn json_reply(request: &str) -> Value {
        let bytes = respond(request.as_bytes(), &snapshot(), 1_767_225_600);
        assert_eq!(bytes.last(), Some(&0), "cgminer replies end with NUL");
        serde_json::from_slice(&bytes[..bytes.len() - 1]).expect("the reply is JSON")
    }

    #[test]
    fn summary_has_cgminers_status_and_field_names() {
        let reply = json_reply(r#"{"command":"summary","parameter":""}"#);
        let status = &reply["STATUS"][0];
        assert_eq!(status["STATUS"], "S");
        assert_eq!(status["Code"], 11);
        assert_eq!(status["Msg"], "Summary");
        assert_eq!(status["When"], 1_767_225_600);
        let summary = &reply["SUMMARY"][0];
        assert_eq!(summary["Elapsed"], 120);
        assert_eq!(summary["MHS av"], 3_400_000.0);
        assert_eq!(summary["MHS 5s"], 3_350_000.0);
        assert_eq!(summary["Accepted"], 40);
        assert_eq!(summary["Rejected"], 2);
        assert_eq!(summary["Hardware Errors"], 3);
        assert_eq!(summary["Utility"], 20.0);
        assert_eq!(reply["id"], 1);
    }

    #[test]
    fn pools_and_devs_describe_each_pool_and_chain() {
        let pools = json_reply(r#"{"command":"pools"}"#);
        assert_eq!(pools["STATUS"][0]["Msg"], "2 Pool(s)");
        assert_eq!(pools["POOLS"][0]["URL"], "stratum+tcp://pool.example:3333");
        assert_eq!(pools["POOLS"][0]["Status"], "Alive");
        assert_eq!(pools["POOLS"][0]["Accepted"], 40);
        assert_eq!(pools["POOLS"][1]["Status"], "Dead");
        assert_eq!(
            pools["POOLS"][1]["Accepted"], 0,
            "only the active pool has the shares"
        );
        let devs = json_reply(r#"{"command":"devs"}"#);
        assert_eq!(devs["STATUS"][0]["Code"], 9);
        assert_eq!(devs["DEVS"][0]["Temperature"], 61.5);
        assert_eq!(devs["DEVS"][0]["Chips"], 12);
        for command in ["version", "stats", "config", "devdetails"] {
            let reply = json_reply(&format!(r#"{{"command":"{command}"}}"#));
            assert_eq!(reply["STATUS"][0]["STATUS"], "S", "{command}: {reply}");
        }
    }

    #[test]
    fn several_commands_answer_under_their_own_names() {
        let reply = json_reply(r#"{"command":"summary+pools+restart"}"#);
        assert_eq!(reply["summary"][0]["SUMMARY"][0]["Accepted"], 40);
        assert_eq!(reply["pools"][0]["POOLS"][0]["Status"], "Alive");
        assert_eq!(reply["restart"][0]["STATUS"][0]["Code"], 45);
    }

    #[test]
    fn writes_are_refused_and_nonsense_is_named() {
        let denied = json_reply(r#"{"command":"switchpool","parameter":"1"}"#);
        assert_eq!(denied["STATUS"][0]["STATUS"], "E");
        assert_eq!(denied["STATUS"][0]["Code"], 45);
        assert_eq!(
            denied["STATUS"][0]["Msg"],
            "Access denied to 'switchpool' command"
        );
        assert_eq!(
            json_reply(r#"{"command":"frobnicate"}"#)["STATUS"][0]["Code"],
            14
        );
        assert_eq!(json_reply(r#"{"command": 7"#)["STATUS"][0]["Code"], 23);
        assert_eq!(json_reply(r#"{"parameter":"x"}"#)["STATUS"][0]["Code"], 24);
    }

    #[test]
    fn plain_text_requests_get_plain_text_replies() {
        let reply = respond(b"summary|\n", &snapshot(), 5);
        let text = String::from_utf8(reply).expect("text");
        assert!(text.starts_with("STATUS=S,"), "{text}");
        assert!(
            text.contains("When=5") && text.contains("Code=11"),
            "{text}"
        );
        assert!(
            text.contains("|SUMMARY,") && text.contains("MHS av=3400000"),
            "{text}"
        );
        assert!(text.ends_with("|\0"), "{text:?}");
    }

    #[test]
    fn requests_are_complete_at_a_terminator_or_a_whole_json_value() {
        assert!(complete(b"summary\n"));
        assert!(complete(b"{\"command\":\"summary\"}"));
        assert!(!complete(b"{\"command\":\"sum"));
        assert!(!complete(b"summary"));
    }

    proptest! {
        #[test]
        fn any_request_gets_a_terminated_reply(request in proptest::collection::vec(any::<u8>(), 0..300)) {
            let reply = respond(&request, &snapshot(), 0);
            prop_assert_eq!(reply.last(), Some(&0));
            prop_assert_eq!(reply.iter().filter(|&&b| b == 0).count(), 1);
        }
    }
}
