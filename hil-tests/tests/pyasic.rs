//! The tool fleets already use finds a hashwarden miner (issue #8): pyasic, installed from PyPI
//! into a virtualenv the suite keeps in the target directory, scans a simulated miner's address,
//! recognises it by its landing page as an AxeOS-compatible miner (a BM1397 Bitaxe Max, by its
//! ASIC), and reads its hash rate, power, fans, temperature and firmware version through the
//! AxeOS API — each checked against what the miner's own API says.
//!
//! pyasic looks for the web UI on port 80, so the miner listens on 127.0.0.2:80 (a loopback
//! address of its own, away from anything on 127.0.0.1).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testbed::{Process, binary, scratch};

const PYASIC: &str = "pyasic==0.79.0";
const ADDRESS: &str = "127.0.0.2";

/// The virtualenv with pyasic, made once per target directory (a pinned version, so a release
/// that changes how it scans cannot change what this test means).
fn pyasic_python() -> PathBuf {
    let target = binary("hashwarden-fw")
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("a target directory");
    let venv = target.join("pyasic-0.79.0-venv");
    let python = venv.join("bin/python");
    let marker = venv.join("installed");
    if marker.exists() {
        return python;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 runs (.ci/run installs python3 and python3-venv)");
    assert!(made.success(), "python3 -m venv failed");
    let installed = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", PYASIC])
        .output()
        .expect("pip runs");
    assert!(
        installed.status.success(),
        "pip install {PYASIC}: {}",
        String::from_utf8_lossy(&installed.stderr)
    );
    std::fs::write(&marker, PYASIC).expect("writes");
    python
}

fn system_info() -> serde_json::Value {
    testbed::try_http_get_at(ADDRESS, 80, "/api/system/info")
        .and_then(|body| serde_json::from_str(&body).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// What pyasic makes of ADDRESS, as one JSON line.
const SCAN: &str = r#"
import asyncio, json, sys, warnings
warnings.filterwarnings("ignore")
import pyasic

async def main():
    miner = await pyasic.get_miner(sys.argv[1])
    if miner is None:
        print(json.dumps({"found": False}))
        return
    data = await miner.get_data()
    print(json.dumps({
        "found": True,
        "class": type(miner).__name__,
        "model": data.model,
        "hashrate_ths": float(data.hashrate) if data.hashrate is not None else None,
        "wattage": data.wattage,
        "fans": [f.speed for f in data.fans],
        "temperature": data.temperature_avg,
        "chip_temperature": [b.chip_temp for b in data.hashboards],
        "firmware": data.fw_ver,
    }))

asyncio.run(main())
"#;

#[test]
fn pyasic_finds_the_miner_and_reads_it_through_the_axeos_api() {
    let python = pyasic_python();
    let dir = scratch("pyasic");
    let miner = Process::start(
        &binary("hashwarden-fw"),
        &[
            "--sim",
            "--speed",
            "5",
            "--http-listen",
            &format!("{ADDRESS}:80"),
            "--api-listen",
            &format!("{ADDRESS}:4028"),
        ],
        dir.join("miner.log"),
    );
    // Mining, with a fan reading and a regulator temperature, before pyasic looks.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info = system_info();
        let ready = info["hashRate_1m"].as_f64().is_some_and(|h| h > 0.0)
            && info["fanrpm"].as_u64().is_some_and(|r| r > 0)
            && info["vrTemp"].is_number();
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the miner is not up on {ADDRESS}:80: {info}\n{}",
            miner.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let script = dir.join("scan.py");
    std::fs::write(&script, SCAN).expect("writes");
    let output = Command::new(&python)
        .arg(&script)
        .arg(ADDRESS)
        .output()
        .expect("python runs");
    let ours = system_info();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let seen: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "pyasic printed nothing usable: {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    assert_eq!(seen["found"], true, "pyasic did not recognise it: {seen}");
    assert_eq!(seen["class"], "BitAxeMax", "a BM1397 AxeOS miner: {seen}");
    assert_eq!(seen["firmware"], ours["version"], "{seen} vs {ours}");
    // Figures read a moment apart from a miner that keeps mining: close, not equal.
    let ours_ths = ours["hashRate"].as_f64().unwrap_or(0.0) / 1e3;
    let theirs_ths = seen["hashrate_ths"].as_f64().unwrap_or(0.0);
    assert!(
        theirs_ths > 0.5 * ours_ths && theirs_ths < 2.0 * ours_ths,
        "hash rate {theirs_ths} TH/s against {ours_ths}: {seen}"
    );
    let watts = ours["power"].as_f64().unwrap_or(0.0);
    let theirs_w = seen["wattage"].as_f64().unwrap_or(0.0);
    assert!(
        (theirs_w - watts).abs() <= 0.2 * watts + 2.0,
        "power {theirs_w} W against {watts}: {seen}"
    );
    assert!(
        seen["fans"]
            .as_array()
            .is_some_and(|f| !f.is_empty() && f.iter().all(|s| s.as_u64().is_some_and(|r| r > 0))),
        "{seen}"
    );
    let regulator = ours["vrTemp"].as_f64().unwrap_or(0.0);
    let theirs_c = seen["temperature"].as_f64().unwrap_or(0.0);
    assert!(
        (theirs_c - regulator).abs() <= 5.0,
        "temperature {theirs_c} °C against the regulator's {regulator}: {seen}"
    );
    drop(miner);
    let _ = std::fs::remove_dir_all(&dir);
}
