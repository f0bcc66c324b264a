//! Hardware in the loop: the built daemon opens a real serial device — a PTY with a simulated
//! 12-chip BM1397 chain behind it (the same server as `chipsim serve`) — brings the chain up
//! through the real enumeration and the switch to 3.125 Mbaud (termios2 on the daemon's side,
//! read back exactly by the simulator), mines a scripted pool's job and submits shares the pool
//! re-verifies from its own job.

mod common;

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;

use bm13xx::ChipModel;
use chipsim::pty::Pty;
use chipsim::{ChainConfig, ChainSim, SimLink};
use common::pool::serve_pool;
use common::{stderr, summary, write_config};

const CHIPS: u32 = 12;

#[test]
fn the_daemon_mines_a_pool_job_on_a_serial_chain() {
    // The simulated chain behind a PTY, served on its own runtime for the whole test.
    let (path_tx, path_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (stats_tx, stats_rx) = mpsc::channel();
    let server = thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let mut config = ChainConfig::new(ChipModel::Bm1397, CHIPS, 5);
            config.share_floor_log2 = 26;
            let (uart, control) = SimLink::open(ChainSim::new(config).expect("valid"));
            let pty = Pty::open().expect("a PTY");
            path_tx.send(pty.path.clone()).expect("sends");
            let probe = control.clone();
            tokio::select! {
                served = pty.serve(uart, control, 1.0) => served.expect("serves"),
                _ = stop_rx => {}
            }
            let truth = probe.with_sim(|s| (s.stats().nonces_sent, s.chips().len()));
            stats_tx.send(truth).expect("sends");
        });
    });
    let pty_path = path_rx.recv().expect("PTY path");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (report_tx, report_rx) = mpsc::channel();
    let pool = thread::spawn(move || serve_pool(listener, report_tx));

    let config = write_config(
        "hil-pty.toml",
        &format!(
            "[board]\nname = \"bm1397-hashboard-12\"\n\
             [[chains]]\nserial = \"{}\"\nsimulated_share_floor_log2 = 26\n\
             [[pools]]\nurl = \"stratum+tcp://127.0.0.1:{port}\"\nuser = \"bc1qtest.rig7\"\n",
            pty_path.display()
        ),
    );
    let output = Command::new(env!("CARGO_BIN_EXE_hashwarden-fw"))
        .args([
            "--config",
            config.to_str().expect("utf-8"),
            "--duration",
            "8",
        ])
        .args(["--api-listen", "off"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .output()
        .expect("the daemon runs");
    let _ = stop_tx.send(());
    let (nonces_sent, chips) = stats_rx.recv().expect("simulator stats");
    server.join().expect("server thread");
    pool.join().expect("pool thread");
    let report = report_rx.recv().expect("pool report");
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");

    // Up through the real bring-up, at the fast rate.
    assert!(
        log.contains("chain up") && log.contains("chips=12") && log.contains("baud=3125000"),
        "{log}"
    );
    assert_eq!(chips, CHIPS as usize);
    let summary = summary(&output);
    assert_eq!(summary["hardware_errors"], 0, "{summary}");
    assert_eq!(summary["uart_errors"], 0, "{summary}");
    // Every share the daemon found reached the pool, which accepted it on its own check.
    assert!(report.bad_shares.is_empty(), "{:?}", report.bad_shares);
    assert!(
        report.good_shares >= 3,
        "{} shares; {summary}",
        report.good_shares
    );
    assert_eq!(
        summary["shares"].as_u64(),
        Some(u64::from(report.good_shares))
    );
    // Nothing the chips sent was lost on the way (a few may still have been in flight at stop).
    let classified = summary["nonces"].as_u64().expect("nonces");
    assert!(
        classified <= nonces_sent && classified + 3 >= nonces_sent,
        "daemon {classified} vs chips {nonces_sent}"
    );
}
