//! The cgminer-compatible API of a running daemon, read the way fleet tools read it: connect,
//! send one request, read to the NUL, the daemon closes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

fn ask(address: &str, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).expect("connect to the API");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.write_all(request).expect("send");
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .expect("the daemon answers and closes");
    reply
}

fn ask_json(address: &str, request: &str) -> Value {
    let reply = ask(address, request.as_bytes());
    assert_eq!(reply.last(), Some(&0), "NUL-terminated");
    serde_json::from_slice(&reply[..reply.len() - 1]).expect("JSON reply")
}

#[test]
fn a_running_daemon_reports_live_figures_on_the_cgminer_api() {
    let common::Listening {
        mut child,
        address,
        log: drain,
    } = common::start_listening(
        &[
            "--sim",
            "--speed",
            "50",
            "--duration",
            "120",
            "--api-listen",
            "127.0.0.1:0",
            "--http-listen",
            "off",
        ],
        "cgminer API",
    );
    // Asked once the API says two seconds of mining have passed, however slowly the daemon
    // started on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(60);
    let reply = loop {
        let reply = ask_json(&address, r#"{"command":"summary+devs+pools"}"#);
        let elapsed = reply["summary"][0]["SUMMARY"][0]["Elapsed"].as_u64();
        if elapsed.is_some_and(|s| s >= 2) {
            break reply;
        }
        assert!(Instant::now() < deadline, "never 2 s of mining: {reply}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let summary = &reply["summary"][0]["SUMMARY"][0];
    assert_eq!(reply["summary"][0]["STATUS"][0]["STATUS"], "S", "{reply}");
    // The 12-chip BM1397 board at 425 MHz: 3.43 TH/s = 3 427 200 MH/s.
    let mhs = summary["MHS av"].as_f64().expect("MHS av");
    assert!((0.6..1.4).contains(&(mhs / 3_427_200.0)), "MHS av {mhs}");
    assert!(
        summary["MHS 5s"].as_f64().is_some_and(|r| r > 0.0),
        "{summary}"
    );
    assert_eq!(summary["Hardware Errors"], 0);
    let dev = &reply["devs"][0]["DEVS"][0];
    assert_eq!(dev["Chips"], 12);
    assert_eq!(dev["Frequency"], 425.0);
    assert!(
        dev["Temperature"]
            .as_f64()
            .is_some_and(|t| t > 25.0 && t < 110.0),
        "{dev}"
    );
    assert_eq!(reply["pools"][0]["STATUS"][0]["Msg"], "0 Pool(s)");

    let denied = ask_json(&address, r#"{"command":"restart"}"#);
    assert_eq!(denied["STATUS"][0]["Code"], 45);
    let garbage = ask(&address, b"\xff\xfe{{{ not a command\n");
    assert!(String::from_utf8_lossy(&garbage).starts_with("STATUS=E,"));
    let text = String::from_utf8(ask(&address, b"version\n")).expect("text reply");
    assert!(
        text.contains("|VERSION,") && text.contains("Miner=hashwarden"),
        "{text}"
    );

    // Stopped as systemd stops it: a clean exit.
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signalled");
    let status = child.wait().expect("the daemon exits");
    assert!(status.success());
    let log = drain.join().expect("log");
    assert!(!log.iter().any(|l| l.contains("panicked")), "{log:?}");
}
