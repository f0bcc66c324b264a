//! Hardware in the loop: the built daemon opens real serial devices — three PTYs, each with a
//! simulated 12-chip BM1397 chain behind it (the same server as `chipsim serve`) — brings the
//! chains up side by side through the real enumeration and the switch to 3.125 Mbaud (termios2
//! on the daemon's side, read back exactly by the simulator), mines a scripted pool's job on all
//! three with distinct extranonce2s, and submits shares the pool re-verifies from its own job
//! (a share two chains both found would be refused as a duplicate).

mod common;

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::pool::serve_pool;
use common::ptys::Chains;
use common::{stderr, summary, write_config};

const CHIPS: u32 = 12;

const CHAINS: usize = 3;

fn run_daemon(config: &std::path::Path, seconds: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hashwarden-fw"))
        .args([
            "--config",
            config.to_str().expect("utf-8"),
            "--duration",
            seconds,
        ])
        .args(["--api-listen", "off", "--http-listen", "off"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .output()
        .expect("the daemon runs")
}

#[test]
fn the_daemon_mines_a_pool_job_on_three_serial_chains() {
    let machine = Chains::serve(&[CHIPS; CHAINS]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (report_tx, report_rx) = mpsc::channel();
    let pool = thread::spawn(move || serve_pool(listener, report_tx));

    let config = write_config(
        "hil-pty.toml",
        &format!(
            "[board]\nname = \"bm1397-hashboard-12\"\nchains = {CHAINS}\n{}\
             [[pools]]\nurl = \"stratum+tcp://127.0.0.1:{port}\"\nuser = \"bc1qtest.rig7\"\n",
            machine.config_sections()
        ),
    );
    let output = run_daemon(&config, "8");
    let truth = machine.finish();
    pool.join().expect("pool thread");
    let report = report_rx.recv().expect("pool report");
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");

    // Every chain up through the real bring-up, at the fast rate.
    for chain in 0..CHAINS {
        assert!(
            log.lines().any(|l| l.contains("chain up")
                && l.contains(&format!("chain={chain}"))
                && l.contains("chips=12")
                && l.contains("baud=3125000")),
            "chain {chain}: {log}"
        );
    }
    assert!(truth.iter().all(|(_, chips)| *chips == CHIPS as usize));
    let summary = summary(&output);
    assert_eq!(summary["chains"], CHAINS, "{summary}");
    assert_eq!(summary["hardware_errors"], 0, "{summary}");
    assert_eq!(summary["uart_errors"], 0, "{summary}");
    // Every share the daemon found reached the pool, which accepted it on its own check: none
    // was found twice, so no two chains hashed the same header.
    assert!(report.bad_shares.is_empty(), "{:?}", report.bad_shares);
    assert!(
        report.good_shares >= 5,
        "{} shares; {summary}",
        report.good_shares
    );
    assert_eq!(
        summary["shares"].as_u64(),
        Some(u64::from(report.good_shares))
    );
    // Nothing the chips sent was lost on the way (a few may still have been in flight at stop).
    let classified = summary["nonces"].as_u64().expect("nonces");
    let sent: u64 = truth.iter().map(|(n, _)| n).sum();
    assert!(
        classified <= sent && classified + 3 * CHAINS as u64 >= sent,
        "daemon {classified} vs chips {sent}"
    );
}

/// A hashboard that does not come up (here one chip short) is reported and left down; the
/// machine's other chains mine on.
#[test]
fn a_chain_that_does_not_come_up_leaves_the_others_mining() {
    let machine = Chains::serve(&[CHIPS, CHIPS - 1]);
    let config = write_config(
        "hil-pty-broken.toml",
        &format!(
            "[board]\nname = \"bm1397-hashboard-12\"\nchains = 2\n{}",
            machine.config_sections()
        ),
    );
    let output = run_daemon(&config, "5");
    let truth = machine.finish();
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("chain did not come up") && l.contains("chain=1")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("chain up") && l.contains("chain=0")),
        "{log}"
    );
    let summary = summary(&output);
    assert!(
        summary["nonces"].as_u64().is_some_and(|n| n > 0),
        "{summary}"
    );
    assert_eq!(truth[1].0, 0, "the broken chain got no work");
}

/// A chain whose serial device disappears while mining (the PTY closes) is marked failed; the
/// daemon mines on with the other one and still stops cleanly.
#[test]
fn a_chain_lost_while_mining_leaves_the_others_mining() {
    // Bring-up takes about ten seconds of real time (the clock ramp); pull the cable after it.
    let machine = Chains::serve_and_unplug(&[CHIPS, CHIPS], (1, Duration::from_secs(13)));
    let config = write_config(
        "hil-pty-unplugged.toml",
        &format!(
            "[board]\nname = \"bm1397-hashboard-12\"\nchains = 2\n{}",
            machine.config_sections()
        ),
    );
    let output = run_daemon(&config, "17");
    let truth = machine.finish();
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("chain up") && l.contains("chain=1")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("chain failed; the others mine on") && l.contains("chain=1")),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    let summary = summary(&output);
    // Chain 0 mined throughout: its nonces are all accounted for.
    let classified = summary["nonces"].as_u64().expect("nonces");
    assert!(classified >= truth[0].0, "{summary} vs {truth:?}");
}
