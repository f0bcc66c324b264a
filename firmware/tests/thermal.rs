//! Fan control and thermal protection in the running daemon, on the simulated board: a fan that
//! dies is noticed (stalled tachometer), the chains are throttled, stopped before the silicon's
//! own 110 °C shutdown, and resumed lower once cooled; a healthy fan holds the chips cool.

mod common;

use common::{daemon, number, stderr, summary, write_config};

fn run(name: &str, faults: &str) -> (serde_json::Value, String) {
    let script = write_config(name, faults);
    let output = daemon(&[
        "--sim",
        "--speed",
        "10",
        "--duration",
        "12",
        "--api-listen",
        "off",
        "--sim-faults",
        script.to_str().expect("utf-8"),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    (summary(&output), stderr(&output))
}

#[test]
fn a_dead_fan_is_caught_before_the_silicon_cooks() {
    let (summary, log) = run(
        "dead-fan.json",
        r#"[{"at_s": 0, "faults": {"fan_failure": true}}]"#,
    );
    let peak = number(&summary["sim"], "peak_chip_c");
    assert!(peak < 100.0, "peaked at {peak} °C: {summary}");
    assert!(peak > 80.0, "the dead fan did heat the chips: {peak} °C");
    assert!(log.contains("FanStalled"), "{log}");
    assert!(log.contains("stopping the chains until they cool"), "{log}");
    assert!(log.contains("thermal: resuming"), "{log}");
    assert_eq!(number(&summary["sim"], "chips_overheated"), 0.0);
}

#[test]
fn a_healthy_fan_holds_the_chips_near_target() {
    let (summary, log) = run("no-faults.json", "[]");
    let peak = number(&summary["sim"], "peak_chip_c");
    assert!(peak < 75.0, "peaked at {peak} °C: {summary}");
    assert!(!log.contains("thermal:"), "{log}");
    assert!(number(&summary, "hashrate_ths") > 0.0);
}
