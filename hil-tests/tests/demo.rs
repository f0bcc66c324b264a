//! `hashwarden demo` (issue #8), the README's main command: a site of real daemons on simulated
//! chains, the agent and its dashboard on one embedded broker, the crash replayed in well under
//! a minute; the report as one JSON object.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testbed::{binary, free_port, try_http_get_at};

const MINERS: usize = 12;

#[test]
fn the_demo_runs_a_live_site_through_the_crash_and_scores_every_strategy() {
    let port = free_port();
    let demo = Command::new(binary("hashwarden"))
        .args([
            "demo",
            "--miners",
            &MINERS.to_string(),
            "--seed",
            "3",
            "--seconds",
            "20",
            "--json",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");

    // While it runs, the agent's dashboard serves the site: every miner, by the names the
    // seeded fleet gives them.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut dashboard = None;
    while Instant::now() < deadline && dashboard.is_none() {
        dashboard = try_http_get_at("127.0.0.1", port, "/api/dashboard")
            .and_then(|body| {
                let json = body
                    .split_once("\r\n\r\n")
                    .map_or(body.as_str(), |(_, b)| b);
                serde_json::from_str::<serde_json::Value>(json).ok()
            })
            .filter(|d| d["fleet"].as_array().is_some_and(|f| f.len() == MINERS));
        std::thread::sleep(Duration::from_millis(500));
    }
    let dashboard = dashboard.expect("the dashboard shows the whole site while the demo runs");
    assert_eq!(dashboard["site"], "demo");

    let output = demo.wait_with_output().expect("finishes");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // Progress went to stderr: the market, the fleet, the demand-response night.
    assert!(stderr.contains("hashprice $"), "{stderr}");
    assert!(stderr.contains("DEMAND RESPONSE"), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON object on stdout");

    let strategies = report["strategies"].as_array().expect("strategies");
    let names: Vec<&str> = strategies
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["never", "naive", "threshold", "optimise", "oracle"]);
    let field = |name: &str, key: &str| {
        strategies
            .iter()
            .find(|s| s["name"] == name)
            .and_then(|s| s[key].as_f64())
            .unwrap_or_else(|| panic!("{name}.{key} in {report}"))
    };
    for name in &names {
        field(name, "switches");
        assert!(field(name, "energy_kwh") > 0.0, "{report}");
    }
    // Perfect foresight under the same dwell is the ceiling; every curtailing strategy draws
    // less than never curtailing, and hashwarden's make more than mining through the crash.
    for name in ["never", "naive", "threshold", "optimise"] {
        assert!(
            field(name, "profit_usd") <= field("oracle", "profit_usd") + 1e-6,
            "{report}"
        );
    }
    for name in ["naive", "threshold", "optimise", "oracle"] {
        assert!(
            field(name, "energy_kwh") < field("never", "energy_kwh"),
            "{report}"
        );
    }
    assert!(
        field("optimise", "profit_usd") > field("never", "profit_usd"),
        "{report}"
    );
    // The site was tuned before the story: optimise has curves to underclock along, and earns
    // more than the naive threshold that can only sleep (~8 % on this site).
    assert!(
        field("optimise", "profit_usd") > field("naive", "profit_usd"),
        "{report}"
    );
    assert!(
        field("optimise", "switches") < field("naive", "switches"),
        "{report}"
    );

    // The live site: the real daemons curtailed (less energy than never curtailing would have
    // drawn, more than nothing), switched, and shed to the grid's cap during the event.
    let live = &report["live"];
    let energy = live["energy_kwh"].as_f64().expect("live energy");
    assert!(
        energy > 0.0 && energy < field("never", "energy_kwh"),
        "{report}"
    );
    assert!(live["switches"].as_u64().is_some_and(|s| s > 0), "{report}");
    assert!(live["event_met_after_s"].as_u64().is_some(), "{report}");
    assert_eq!(report["machines"], MINERS);
}

#[test]
fn a_demo_of_no_miners_is_refused_with_a_reason() {
    let mut child = Command::new(binary("hashwarden"))
        .args(["demo", "--miners", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let status = child.wait().expect("exits");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("reads");
    assert!(!status.success());
    assert!(stderr.contains("--miners"), "{stderr}");
}
