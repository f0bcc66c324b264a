//! The daemon binary end to end on its simulated board: bring-up, dispatch and nonce checking
//! through the real code paths, observed only through its exit code and printed summary.

mod common;

use common::{daemon, number, sim_with_config, stderr, summary, write_config};

#[test]
fn the_simulated_board_mines_at_its_expected_hashrate() {
    let output = daemon(&["--sim", "--duration", "3", "--speed", "50", "--seed", "7"]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let summary = summary(&output);
    assert_eq!(summary["board"], "bm1397-hashboard-12");
    assert_eq!(summary["chips"], 12);
    assert_eq!(number(&summary, "hardware_errors"), 0.0);
    assert_eq!(number(&summary, "uart_errors"), 0.0);
    assert_eq!(number(&summary["sim"], "chips_overheated"), 0.0);
    // Every nonce the simulated chips sent was received and classified: the daemon drains the
    // chain when it stops, so nothing found is lost.
    let classified = ["nonces", "duplicates", "hardware_errors", "stale"]
        .iter()
        .map(|key| number(&summary, key))
        .sum::<f64>();
    assert_eq!(
        classified,
        number(&summary["sim"], "nonces_sent"),
        "{summary}"
    );
    let nonces = number(&summary, "nonces");
    let shares = number(&summary, "shares");
    assert!(
        nonces >= 100.0,
        "too few nonces for a rate estimate: {summary}"
    );
    // Local work asks for pool difficulty 4x the ticket: about a quarter of nonces are shares.
    assert!(shares > 0.0 && shares < nonces, "{summary}");
    let ratio = number(&summary, "hashrate_ths") / number(&summary, "expected_ths");
    assert!(
        (0.8..1.2).contains(&ratio),
        "hashrate {ratio:.2}x expected: {summary}"
    );
}

#[test]
fn a_three_chain_machine_mines_on_every_chain_and_reconciles() {
    let output = sim_with_config(
        "three-chains.toml",
        "[board]\nname = \"bm1397-hashboard-12\"\nchains = 3\n",
        "3",
    );
    let summary = summary(&output);
    assert_eq!(summary["chains"], 3);
    assert_eq!(number(&summary, "hardware_errors"), 0.0);
    // Each chain's own work: no chain's nonces show up as another's duplicates or strays.
    assert_eq!(number(&summary, "duplicates"), 0.0);
    assert_eq!(number(&summary, "stale"), 0.0);
    assert_eq!(
        number(&summary, "nonces"),
        number(&summary["sim"], "nonces_sent"),
        "{summary}"
    );
    // Three chains' worth: 3 × 3.43 TH/s.
    assert!((number(&summary, "expected_ths") - 3.0 * 3.4272).abs() < 0.01);
    let ratio = number(&summary, "hashrate_ths") / number(&summary, "expected_ths");
    assert!((0.75..1.25).contains(&ratio), "{ratio:.2}: {summary}");
}

/// A BM1397 chain with four midstates is through a job's nonce space in ~5 ms at 425 MHz
/// (`bm13xx::full_scan_seconds`); the daemon must keep it fed at that pace, or real chips idle
/// between jobs. (The simulator does not model running out, so this counts the jobs.)
#[test]
fn a_bm1397_chain_gets_new_work_every_few_milliseconds() {
    let output = daemon(&[
        "--sim",
        "--speed",
        "1",
        "--duration",
        "2",
        "--api-listen",
        "off",
        "--http-listen",
        "off",
    ]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let summary = summary(&output);
    let full_scan_s = bm13xx::full_scan_seconds(
        bm13xx::ChipModel::Bm1397,
        bm13xx::Frequency::from_khz(425_000),
        12,
        4,
    );
    let jobs = number(&summary, "jobs");
    let ran_s = number(&summary, "chip_s");
    // At least three jobs for every four full scans, even on a loaded machine.
    assert!(
        jobs >= 0.75 * ran_s / full_scan_s,
        "{jobs} jobs in {ran_s} s; a full scan takes {full_scan_s} s"
    );
}

#[test]
fn the_configured_frequency_reaches_the_chips() {
    let output = sim_with_config(
        "slow.toml",
        "[board]\nname = \"bm1397-hashboard-12\"\n[mining]\nfrequency_mhz = 200\n",
        "3",
    );
    let summary = summary(&output);
    // 200 MHz is under half of the 425 MHz default; the measured rate must follow the chips'
    // clock, not the configuration's claim, so it is checked against the default's figure too.
    let expected = number(&summary, "expected_ths");
    let measured = number(&summary, "hashrate_ths");
    let default_ths = expected * 425.0 / 200.0;
    assert!((0.7..1.3).contains(&(measured / expected)), "{summary}");
    assert!(measured < default_ths * 0.7, "{summary}");
}

#[test]
fn a_broken_config_is_one_clear_line_and_exit_code_2() {
    let config = write_config("broken.toml", "[board]\nname = \"antminer-s9\"\n");
    let output = daemon(&[
        "--sim",
        "--config",
        config.to_str().expect("utf-8"),
        "--duration",
        "1",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr(&output);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("board.name") && stderr.contains("antminer-s9"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn a_config_with_a_secret_that_everyone_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let text = "[board]\nname = \"bm1397-hashboard-12\"\n[api]\ntoken = \"0123456789abcdef0123\"\n";
    let config = write_config("exposed.toml", text);
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let output = daemon(&[
        "--sim",
        "--config",
        config.to_str().expect("utf-8"),
        "--duration",
        "1",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("api.token") && message.contains("chmod 600"),
        "{message}"
    );
    // The same file, private: it runs.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let output = daemon(&[
        "--sim",
        "--config",
        config.to_str().expect("utf-8"),
        "--duration",
        "1",
        "--api-listen",
        "off",
        "--http-listen",
        "off",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn without_a_chain_or_sim_the_daemon_says_what_is_missing() {
    let output = daemon(&[]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("no chain to mine on") && message.contains("--sim"),
        "{message}"
    );
    // A serial path that is not there: one clear line, not a panic.
    let config = common::write_config(
        "missing-serial.toml",
        "[board]\nname = \"bitaxe-max\"\n[[chains]]\nserial = \"/dev/does-not-exist-hw\"\n",
    );
    let output = daemon(&[
        "--config",
        config.to_str().expect("utf-8"),
        "--api-listen",
        "off",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("/dev/does-not-exist-hw"), "{message}");
    assert!(!message.contains("panicked"), "{message}");
    // Peripherals that are not there: the key and the path in one line.
    for (extra, key) in [
        ("i2c_bus = \"/dev/i2c-404\"\n", "board.i2c_bus /dev/i2c-404"),
        (
            "[board.reset_gpio]\nchip = \"/dev/gpiochip404\"\nline = 3\n",
            "board.reset_gpio /dev/gpiochip404 line 3",
        ),
    ] {
        let config = common::write_config(
            "missing-peripheral.toml",
            &format!(
                "[board]\nname = \"bm1397-hashboard-12\"\n{extra}[[chains]]\nserial = \"/dev/does-not-exist-hw\"\n"
            ),
        );
        let output = daemon(&[
            "--config",
            config.to_str().expect("utf-8"),
            "--api-listen",
            "off",
        ]);
        assert_eq!(output.status.code(), Some(1));
        let message = stderr(&output);
        assert!(message.contains(key), "{message}");
        assert_eq!(message.trim_end().lines().count(), 1, "{message}");
    }
}

#[test]
fn bad_numbers_on_the_command_line_are_rejected() {
    let cases: [&[&str]; 5] = [
        &["--sim", "--speed", "0"],
        &["--sim", "--duration", "-1"],
        &["--sim", "--speed", "fast"],
        &["--sim", "--sim-duration", "0"],
        // Chip time means nothing on real chains.
        &["--duration", "5", "--sim-duration", "5"],
    ];
    for args in cases {
        let output = daemon(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(!output.stderr.is_empty());
    }
}

/// `--sim-duration` ends a run by the chips' clock: the summary covers that span, not less, and
/// the wall cap is not what ended it.
#[test]
fn a_run_by_chip_time_covers_exactly_that_span() {
    let output = daemon(&[
        "--sim",
        "--speed",
        "50",
        "--sim-duration",
        "40",
        "--duration",
        "120",
    ]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let ran_s = number(&summary(&output), "chip_s");
    // One loop round past the mark at most: rounds are milliseconds of wall time.
    assert!((40.0..45.0).contains(&ran_s), "ran {ran_s} chip seconds");
}
