//! Running the daemon binary and reading what it printed.
#![allow(dead_code)]

pub mod fleet;
pub mod pool;
pub mod ptys;

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn daemon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hashwarden-fw"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the daemon binary runs")
}

/// Runs `--sim` with a configuration file for `duration_s` wall seconds at 50x; it must succeed.
pub fn sim_with_config(config_name: &str, config_text: &str, duration_s: &str) -> Output {
    let config = write_config(config_name, config_text);
    let config = config.to_str().expect("utf-8 temp path");
    let output = daemon(&[
        "--sim",
        "--config",
        config,
        "--duration",
        duration_s,
        "--speed",
        "50",
    ]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    output
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The last stdout line: the run's JSON summary.
pub fn summary(output: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no summary; stderr: {}", stderr(output)));
    serde_json::from_str(last).expect("the summary is one JSON line")
}

pub fn number(summary: &serde_json::Value, key: &str) -> f64 {
    summary[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing from {summary}"))
}

pub fn write_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hashwarden-fw-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    // Private, as on a board: a file with a token or password that everyone can read is refused.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    path
}

/// A daemon started with `args`, its log read until it says where `what` listens.
pub struct Listening {
    pub child: std::process::Child,
    pub address: String,
    /// The rest of the log, drained so the daemon never blocks on a full pipe.
    pub log: std::thread::JoinHandle<Vec<String>>,
}

pub fn start_listening(args: &[&str], what: &str) -> Listening {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hashwarden-fw"))
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the daemon");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufReader::new(stderr).lines();
    let marker = format!("{what} listening");
    let address = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            line.contains(&marker)
                .then(|| {
                    line.split("address=")
                        .nth(1)
                        .and_then(|a| a.split_whitespace().next())
                        .map(str::to_string)
                })
                .flatten()
        })
        .unwrap_or_else(|| panic!("the daemon logs where the {what} listens"));
    let log = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    Listening {
        child,
        address,
        log,
    }
}
