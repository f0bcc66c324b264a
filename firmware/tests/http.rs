//! The AxeOS-compatible HTTP API and `/metrics` of a running daemon, read and written the way
//! Bitaxe tools and Prometheus do: field names and units, the write token, and every kind of bad
//! request answered without disturbing the miner.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

const TOKEN: &str = "correct-horse-battery-staple";

/// Sends raw bytes, returns (status, body).
fn raw(address: &str, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(40)))
        .expect("timeout");
    stream.write_all(request).expect("send");
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let text = String::from_utf8_lossy(&reply).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_string());
    (status, body)
}

fn http(address: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: miner\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    raw(address, request.as_bytes())
}

fn json(address: &str, path: &str) -> Value {
    let (status, body) = http(address, "GET", path, None, "");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

struct Running {
    child: Child,
    address: String,
    drain: std::thread::JoinHandle<Vec<String>>,
}

fn start(name: &str, config: &str) -> Running {
    let config = common::write_config(name, config);
    let config = config.to_str().expect("utf-8");
    let common::Listening {
        child,
        address,
        log,
    } = common::start_listening(
        &[
            "--sim",
            "--speed",
            "20",
            "--api-listen",
            "off",
            "--http-listen",
            "127.0.0.1:0",
            "--duration",
            "40",
            "--config",
            config,
        ],
        "HTTP API",
    );
    Running {
        child,
        address,
        drain: log,
    }
}

impl Running {
    fn stop(mut self) -> Vec<String> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().expect("exits");
        assert!(status.success());
        let log = self.drain.join().expect("log");
        assert!(!log.iter().any(|l| l.contains("panicked")), "{log:?}");
        log
    }
}

fn wait_for(address: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = json(address, "/api/system/info");
        if ok(&info) {
            return info;
        }
        assert!(Instant::now() < deadline, "never {what}: {info}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn bitaxe_tools_read_it_and_the_token_guards_its_writes() {
    let data = std::env::temp_dir().join(format!("hw-http-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let miner = start(
        "http.toml",
        &format!(
            "[board]\nname = \"bm1397-hashboard-12\"\n[daemon]\ndata_dir = \"{}\"\n[api]\ntoken = \"{TOKEN}\"\n",
            data.display()
        ),
    );
    let address = miner.address.clone();

    // Read like AxeOS clients: names, units, live values.
    let info = wait_for(&address, "hashing", |i| {
        i["hashRate"].as_f64().is_some_and(|r| r > 0.0)
    });
    assert_eq!(info["ASICModel"], "BM1397");
    assert_eq!(info["asicCount"], 12);
    assert_eq!(info["frequency"], 425.0);
    assert_eq!(info["coreVoltage"], 1400);
    // GH/s, near the 3.43 TH/s a 12-chip BM1397 board makes at 425 MHz (20× simulated time).
    let ghs = info["hashRate"].as_f64().expect("hashRate");
    assert!(ghs > 100.0, "{info}");
    assert!((info["expectedHashrate"].as_f64().expect("expected") - 3427.2).abs() < 1.0);
    assert!(info["power"].as_f64().is_some_and(|w| w > 5.0), "{info}");
    assert!(
        info["temp"].as_f64().is_some_and(|t| t > 25.0 && t < 100.0),
        "{info}"
    );
    assert!(info["fanrpm"].as_u64().is_some_and(|r| r > 0), "{info}");
    assert!(
        info["fanspeed"].as_f64().is_some_and(|p| p >= 25.0),
        "{info}"
    );
    assert!(info["uptimeSeconds"].is_u64());
    assert!(info["version"].is_string());
    // The regulator's own reading (PMBus READ_TEMPERATURE_1), warmer than the room.
    assert!(
        info["vrTemp"]
            .as_f64()
            .is_some_and(|t| t > 25.0 && t < 125.0),
        "{info}"
    );
    // The landing page fleet scanners identify an AxeOS-compatible miner by.
    let (status, page) = http(&address, "GET", "/", None, "");
    assert_eq!(status, 200);
    assert!(
        page.contains("AxeOS") && page.contains("hashwarden"),
        "{page}"
    );
    assert!(!page.contains(TOKEN));
    let text = info.to_string();
    assert!(!text.contains(TOKEN) && !text.to_lowercase().contains("password"));

    let asic = json(&address, "/api/system/asic");
    assert_eq!(asic["defaultFrequency"], 425.0);
    assert!(
        asic["frequencyOptions"]
            .as_array()
            .is_some_and(|o| o.len() > 5)
    );
    assert!(
        asic["voltageOptions"]
            .as_array()
            .is_some_and(|o| o.contains(&Value::from(1400)))
    );

    let (status, metrics) = http(&address, "GET", "/metrics", None, "");
    assert_eq!(status, 200);
    let hashrate = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hashwarden_hashrate_hashes_per_second{window=\"5s\"} "))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("5 s hash rate sample");
    assert!(hashrate > 0.0, "{metrics}");
    assert!(
        metrics.contains("hashwarden_mode{mode=\"mining\"} 1"),
        "{metrics}"
    );

    // Writes: no token, a wrong one, then the right one.
    let patch = r#"{"frequency": 500}"#;
    assert_eq!(http(&address, "PATCH", "/api/system", None, patch).0, 401);
    assert_eq!(
        http(
            &address,
            "PATCH",
            "/api/system",
            Some("guess-guess-guess"),
            patch
        )
        .0,
        401
    );
    assert_eq!(json(&address, "/api/system/info")["frequency"], 425.0);
    let (status, body) = http(&address, "PATCH", "/api/system", Some(TOKEN), patch);
    assert_eq!(status, 200, "{body}");
    wait_for(&address, "at 500 MHz", |i| i["frequency"] == 500.0);

    // Bad requests: clear errors, nothing changed, the miner keeps serving.
    for (method, path, body, expected) in [
        ("PATCH", "/api/system", "{not json", 400),
        ("PATCH", "/api/system", r#"{"frequency": "fast"}"#, 400),
        ("PATCH", "/api/system", r#"{"stratumPassword": "x"}"#, 400),
        ("PATCH", "/api/system", "[]", 400),
        ("POST", "/api/system/explode", "", 404),
        ("GET", "/api/nothing", "", 404),
    ] {
        let (status, reply) = http(&address, method, path, Some(TOKEN), body);
        assert_eq!(status, expected, "{method} {path} {body}: {reply}");
    }
    let huge = format!(
        "{{\"frequency\": 500, \"pad\": \"{}\"}}",
        "x".repeat(64 * 1024)
    );
    assert_eq!(
        http(&address, "PATCH", "/api/system", Some(TOKEN), &huge).0,
        413
    );
    let (status, _) = raw(&address, b"\xff\xfe garbage\r\n\r\n");
    assert_eq!(status, 400);
    assert_eq!(json(&address, "/api/system/info")["frequency"], 500.0);

    // Pause: the chains stop and the power goes; resume brings them back.
    let (status, body) = http(&address, "POST", "/api/system/pause", Some(TOKEN), "");
    assert_eq!(status, 200, "{body}");
    let paused = wait_for(&address, "asleep", |i| i["mode"] == "sleeping");
    assert_eq!(paused["power"], 0.0, "{paused}");
    let (status, body) = http(&address, "POST", "/api/system/resume", Some(TOKEN), "");
    assert_eq!(status, 200, "{body}");
    wait_for(&address, "mining again", |i| {
        i["mode"] == "mining" && i["power"].as_f64().is_some_and(|w| w > 5.0)
    });
    let log = miner.stop();
    assert!(
        !log.iter().any(|l| l.contains(TOKEN)),
        "the token was logged"
    );
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn without_a_token_the_api_is_read_only() {
    let miner = start("http-ro.toml", "[board]\nname = \"bm1397-hashboard-12\"\n");
    let (status, body) = http(&miner.address, "POST", "/api/system/pause", Some(TOKEN), "");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("read-only"), "{body}");
    assert_eq!(json(&miner.address, "/api/system/info")["mode"], "mining");
    miner.stop();
}
