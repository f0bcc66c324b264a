//! Running the daemon binary and reading what it printed.
#![allow(dead_code)]

pub mod fleet;
pub mod pool;

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
    path
}
