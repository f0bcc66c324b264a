//! The daemon mining a Stratum pool's work on its simulated board, against the scripted pool of
//! `common::pool` that re-verifies every share from its own job.

use std::net::TcpListener;

mod common;

use common::pool::serve_pool;
use common::{sim_with_config, stderr, summary};
use std::sync::mpsc;
use std::thread;

#[test]
fn shares_found_on_pool_work_are_submitted_and_accepted() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (report_tx, report_rx) = mpsc::channel();
    let pool = thread::spawn(move || serve_pool(listener, report_tx));

    let output = sim_with_config(
        "pool.toml",
        &format!(
            "[board]\nname = \"bm1397-hashboard-12\"\n[[pools]]\nurl = \"stratum+tcp://127.0.0.1:{port}\"\nuser = \"bc1qtest.rig7\"\n"
        ),
        "4",
    );
    // The daemon has exited, so its socket is closed and the pool's read loop ends.
    pool.join().expect("pool thread");
    let report = report_rx.recv().expect("pool report");

    assert_eq!(
        report.methods[..3],
        ["mining.configure", "mining.subscribe", "mining.authorize"]
    );
    assert!(
        report.bad_shares.is_empty(),
        "bad shares: {:?}",
        report.bad_shares
    );
    assert!(
        report.good_shares >= 10,
        "only {} shares reached the pool",
        report.good_shares
    );

    let summary = summary(&output);
    // The daemon flushes its queued shares before it exits: every share found reached the pool.
    assert_eq!(
        summary["shares"].as_u64(),
        Some(u64::from(report.good_shares)),
        "{summary}"
    );
    let accepted = summary["pool"]["accepted"].as_u64().expect("accepted");
    assert!(
        accepted > 0 && accepted <= u64::from(report.good_shares),
        "{summary}"
    );
    assert_eq!(summary["pool"]["rejected"], 0);
    assert_eq!(summary["hardware_errors"], 0);
}

#[test]
fn an_unreachable_pool_is_retried_and_the_daemon_still_stops_cleanly() {
    // Bound and dropped: nothing listens on the port any more, so connecting is refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port();
    let output = sim_with_config(
        "nopool.toml",
        &format!(
            "[board]\nname = \"bitaxe-max\"\n[[pools]]\nurl = \"stratum+tcp://127.0.0.1:{port}\"\nuser = \"u\"\n"
        ),
        "2",
    );
    let stderr = stderr(&output);
    assert!(stderr.contains("pool connection lost"), "{stderr}");
    let summary = summary(&output);
    // No pool, no work: the chips found nothing and nothing was counted as accepted.
    assert_eq!(summary["nonces"], 0, "{summary}");
    assert_eq!(summary["pool"]["accepted"], 0, "{summary}");
}
