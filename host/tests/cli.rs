//! The `hashwarden` binary's planning tools on the shipped example site and fleet.

use std::path::PathBuf;
use std::process::{Command, Output};

fn hashwarden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hashwarden"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn example(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
        .display()
        .to_string()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_record_low_hashprice_from_the_network() {
    let output = hashwarden(&[
        "hashprice",
        "--difficulty",
        "144.5e12",
        "--height",
        "935000",
        "--fees",
        "0.02",
        "--btc-usd",
        "63000",
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let hashprice = json["hashprice_usd_per_ph_day"].as_f64().expect("number");
    assert!((hashprice - 27.58).abs() < 0.01, "{json}");
    assert_eq!(json["subsidy_btc"], 3.125);
}

/// `hashwarden plan` on the shipped example site and fleet, at the record low's date.
fn plan_example(extra: &[&str]) -> Output {
    let (site, fleet) = (example("site.toml"), example("fleet.json"));
    let mut args = vec![
        "plan",
        "--site",
        &site,
        "--fleet",
        &fleet,
        "--at",
        "1771900000",
    ];
    args.extend_from_slice(extra);
    hashwarden(&args)
}

#[test]
fn planning_the_example_site_sleeps_the_machines_under_water() {
    let output = plan_example(&["--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let to = |id: &str| {
        plan["decisions"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["id"] == id))
            .map(|d| (d["to"].clone(), d["reason"]["why"].clone()))
            .expect("decided")
    };
    assert_eq!(to("s19-r01-01"), ("sleep".into(), "under_water".into()));
    assert_eq!(to("s19jpro-r01-02"), ("full".into(), "exempt".into()));
    assert_eq!(to("s21-r03-01"), ("full".into(), "above_water".into()));
    assert_eq!(plan["at"], 1771900000);
    // The table says the same, a line per machine.
    let output = plan_example(&[]);
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("under water"), "{table}");
    assert_eq!(
        table
            .lines()
            .filter(|l| l.starts_with("s19") || l.starts_with("s21"))
            .count(),
        6
    );
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    let dir = std::env::temp_dir().join(format!("hashwarden-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let bad_site = dir.join("site.toml");
    let text = std::fs::read_to_string(example("site.toml"))
        .expect("example")
        .replace("pool_fee = 0.02", "pool_fee = 1.5");
    std::fs::write(&bad_site, text).expect("writes");
    let bad_fleet = dir.join("fleet.json");
    std::fs::write(&bad_fleet, r#"[{"id": "m1", "online": true}]"#).expect("writes");
    let site = bad_site.display().to_string();
    let fleet = bad_fleet.display().to_string();
    let good_site = example("site.toml");
    let good_fleet = example("fleet.json");
    let cases: [(Vec<&str>, &str); 7] = [
        (
            vec!["plan", "--site", &site, "--fleet", &good_fleet],
            "site.pool_fee",
        ),
        (
            vec!["plan", "--site", &good_site, "--fleet", &fleet],
            "missing field",
        ),
        (
            vec![
                "plan",
                "--site",
                "/nonexistent/site.toml",
                "--fleet",
                &fleet,
            ],
            "/nonexistent/site.toml",
        ),
        (
            vec![
                "hashprice",
                "--difficulty",
                "0",
                "--height",
                "1",
                "--fees",
                "0",
                "--btc-usd",
                "1",
            ],
            "--difficulty",
        ),
        (vec!["plan", "--site"], "--site"),
        (
            vec!["curtail", "m1", "--for", "soon", "--config", &good_site],
            "--for",
        ),
        (vec!["status", "--config", &good_site], "no [agent] section"),
    ];
    for (args, wanted) in cases {
        let output = hashwarden(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let message = stderr(&output);
        assert_eq!(message.trim().lines().count(), 1, "{message}");
        assert!(message.contains(wanted), "{args:?}: {message}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn waiting_on_a_change_no_agent_carries_out_times_out_and_says_so() {
    let dir = std::env::temp_dir().join(format!("hashwarden-cli-wait-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let site = site_with_store(&dir);
    let output = hashwarden(&[
        "curtail",
        "m1",
        "m2",
        "--wait",
        "--timeout",
        "1s",
        "--json",
        "--config",
        &site,
    ]);
    assert!(!output.status.success(), "nobody verified it");
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON object on stdout");
    assert_eq!(report["failed"], 2, "{report}");
    assert_eq!(report["miners"][1]["miner"], "m2");
    assert_eq!(report["miners"][1]["outcome"]["result"], "timed_out");
    assert!(stderr(&output).contains("2 of 2 miner(s) did not get to sleep"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A site whose `[agent]` keeps its store in `dir`.
fn site_with_store(dir: &std::path::Path) -> String {
    let site = dir.join("site.toml");
    let text = std::fs::read_to_string(example("site.toml")).expect("example");
    std::fs::write(
        &site,
        format!(
            "{text}\n[agent]\nkey_file = \"{}\"\nkey_id = \"h\"\nstore = \"{}\"\n",
            dir.join("k").display(),
            dir.join("agent.db").display()
        ),
    )
    .expect("writes");
    site.display().to_string()
}

#[test]
fn flash_queues_only_an_image_it_can_vouch_for() {
    use fleet_proto::image::Version;
    let dir = std::env::temp_dir().join(format!("hashwarden-cli-flash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let site = site_with_store(&dir);
    let release = [5u8; 32];
    let public: String = fleet_proto::CommandSigner::from_seed("release", &release)
        .public_key()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let write = |name: &str, seed: &[u8; 32], tamper: bool| {
        let mut bytes = fleet_proto::image::build(
            b"#!/bin/sh\nexit 0\n",
            Version(0, 9, 0),
            &["bm1397-hashboard-12".to_string()],
            "release",
            seed,
            0,
        );
        if tamper {
            let last = bytes.len() - 1;
            bytes[last] ^= 0x40;
        }
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("writes");
        path.display().to_string()
    };
    let good = write("good.img", &release, false);
    let other_key = write("other.img", &[6u8; 32], false);
    let tampered = write("tampered.img", &release, true);
    let flash = |image: &str, extra: &[&str]| {
        let mut args = vec![
            "flash", "m1", "m2", "--config", &site, "--image", image, "--pubkey", &public,
        ];
        args.extend_from_slice(extra);
        hashwarden(&args)
    };
    let refusals: [(&str, &[&str], &str); 6] = [
        (&other_key, &[], "refused: "),
        (&tampered, &[], "refused: payload"),
        (&good, &["--max-failure-rate", "1.5"], "--max-failure-rate"),
        (&good, &["--canary", "0"], "at least 1"),
        (&good, &["--deadline", "soon"], "--deadline"),
        (&good, &["--all"], "not both"),
    ];
    for (image, extra, wanted) in refusals {
        let output = flash(image, extra);
        assert_eq!(output.status.code(), Some(2), "{extra:?}");
        let message = stderr(&output);
        assert_eq!(message.trim().lines().count(), 1, "{message}");
        assert!(message.contains(wanted), "{extra:?}: {message}");
    }
    let store = hashwarden::store::Store::open(&dir.join("agent.db")).expect("opens");
    assert!(
        store.open_rollouts().expect("reads").is_empty(),
        "nothing queued"
    );

    let output = flash(&good, &["--detach", "--batch", "5"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let queued = store.open_rollouts().expect("reads");
    assert_eq!(queued.len(), 1);
    let request = &queued[0].request;
    assert_eq!(request.miners, ["m1", "m2"]);
    assert_eq!(request.manifest.version, Version(0, 9, 0));
    assert_eq!(request.staging.batch, 5);
    assert!(queued[0].progress.is_none(), "no agent has taken it up");

    // Followed with no agent running: it says so once the wait is over.
    let output = flash(&good, &["--timeout", "1s"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("did not take rollout 2 up"),
        "{}",
        stderr(&output)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_shipped_backtest_compares_every_strategy() {
    let file = |name: &str| example(&format!("backtest/{name}"));
    let (site, market, grid, fleet) = (
        file("site.toml"),
        file("market.csv"),
        file("grid.csv"),
        file("fleet.json"),
    );
    let args = [
        "backtest", "--site", &site, "--market", &market, "--grid", &grid, "--fleet", &fleet,
    ];
    let output = hashwarden(&[&args[..], &["--json"]].concat());
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON object");
    let names: Vec<&str> = report["strategies"]
        .as_array()
        .expect("strategies")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["never", "naive", "threshold", "optimise", "oracle"]);
    for strategy in report["strategies"].as_array().expect("strategies") {
        for field in ["profit_usd", "energy_kwh", "switches"] {
            assert!(strategy[field].is_number(), "{field} in {strategy}");
        }
    }
    let table = hashwarden(&args);
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("40 machines") && text.contains("% oracle"),
        "{text}"
    );

    let dir = std::env::temp_dir().join(format!("hashwarden-cli-backtest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let broken = dir.join("market.csv");
    std::fs::write(
        &broken,
        "at,hashprice\n1767225600,31.2\n1767229200,thirty\n",
    )
    .expect("writes");
    let broken = broken.display().to_string();
    let cases: [(Vec<&str>, &str); 4] = [
        (vec!["--market", &broken, "--fleet", &fleet], "line 3"),
        (vec!["--market", &market], "--fleet FILE) or --miners N"),
        (
            vec!["--market", &market, "--miners", "5", "--step", "0s"],
            "--step",
        ),
        (vec!["--market", &market, "--miners", "0"], "--miners"),
    ];
    for (extra, wanted) in cases {
        let output = hashwarden(&[&["backtest", "--site", &site][..], &extra].concat());
        assert_eq!(output.status.code(), Some(2), "{extra:?}");
        let message = stderr(&output);
        assert_eq!(message.trim().lines().count(), 1, "{message}");
        assert!(message.contains(wanted), "{extra:?}: {message}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
