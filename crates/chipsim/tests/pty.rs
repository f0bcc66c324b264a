//! The `chipsim` binary over a real pseudo-terminal: ESP-Miner's BM1397 bring-up (protocol.md §6.2) sent
//! byte for byte gets exactly what a real chain answers, and mining works end to end.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use bm13xx::{
    BlockHeader, ChipAddressing, ChipModel, Command, Destination, Event, InitConfig, InitSequence,
    Job, JobId, MidstateJob, NonceLayout, Response, ResponseDecoder, ResponseFormat, Step,
    VersionMask, decode_nonce,
};
use nix::sys::termios::{BaudRate, SetArg, cfmakeraw, cfsetspeed, tcgetattr, tcsetattr};

struct Served {
    child: Child,
    paths: Vec<String>,
}

impl Served {
    fn start(args: &[&str]) -> Self {
        let mut child = Process::new(env!("CARGO_BIN_EXE_chipsim"))
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chipsim starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let chains = args
            .windows(2)
            .find(|w| w[0] == "--chains")
            .map_or(1, |w| w[1].parse().expect("number"));
        let paths = (0..chains)
            .map(|_| lines.next().expect("a path per chain").expect("utf-8"))
            .collect();
        Self { child, paths }
    }

    fn stop(mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("signals");
        self.child.wait().expect("exits")
    }
}

/// Opens a PTY path the way a serial library would: raw, at a given rate.
fn open_port(path: &str, baud: BaudRate) -> std::fs::File {
    let port = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("opens");
    set_baud(&port, baud);
    port
}

fn set_baud(port: &std::fs::File, baud: BaudRate) {
    let mut termios = tcgetattr(port.as_fd()).expect("termios");
    cfmakeraw(&mut termios);
    // Reads return what is there after at most 0.1 s, so a test never blocks for good.
    termios.control_chars[nix::libc::VMIN] = 0;
    termios.control_chars[nix::libc::VTIME] = 1;
    cfsetspeed(&mut termios, baud).expect("speed");
    tcsetattr(port.as_fd(), SetArg::TCSADRAIN, &termios).expect("sets");
}

/// An arbitrary rate through TCSETS2, as serialport (and so tokio-serial) sets one.
fn set_exact_baud(port: &std::fs::File, baud: u32) {
    let mut termios = rustix::termios::tcgetattr(port).expect("termios2");
    termios.set_speed(baud).expect("speed");
    rustix::termios::tcsetattr(port, rustix::termios::OptionalActions::Drain, &termios)
        .expect("sets");
    assert_eq!(
        rustix::termios::tcgetattr(port)
            .expect("termios2")
            .output_speed(),
        baud
    );
}

/// Reads until `want` bytes arrived or the deadline passed.
fn read_bytes(port: &mut std::fs::File, want: usize, within: Duration) -> Vec<u8> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    while out.len() < want && Instant::now() < deadline {
        let n = port.read(&mut buf).expect("reads");
        out.extend_from_slice(&buf[..n]);
    }
    out
}

#[test]
fn bm1397_bring_up_and_mining_over_a_pty() {
    let served = Served::start(&[
        "--model",
        "bm1397",
        "--chips",
        "4",
        "--seed",
        "3",
        "--share-floor",
        "2^-32",
        "--speed",
        "20",
    ]);
    let mut port = open_port(&served.paths[0], BaudRate::B115200);
    let mut enumeration = Vec::new();
    for step in InitSequence::new(InitConfig::esp_miner(ChipModel::Bm1397, 4)).expect("valid") {
        match step.expect("solvable") {
            Step::Send { frame, .. } => port.write_all(frame.as_bytes()).expect("writes"),
            Step::Enumerate { frame, .. } => {
                port.write_all(frame.as_bytes()).expect("writes");
                enumeration = read_bytes(&mut port, 36, Duration::from_secs(5));
            }
            // Linux has no 3.125 Mbaud constant: the exact rate goes through termios2 (BOTHER),
            // as serialport sets it, and the simulator reads it back exactly.
            Step::SetHostBaud { baud, wait_ms } => {
                assert_eq!(baud, 3_125_000);
                set_exact_baud(&port, baud);
                // §7: let the new rate settle before the next frame.
                std::thread::sleep(Duration::from_millis(u64::from(wait_ms)));
            }
        }
    }
    // Exactly one chip-id frame per chip, byte for byte, and nothing else.
    let chip_id = [0xAA, 0x55, 0x13, 0x97, 0x18, 0x00, 0x00, 0x00, 0x06];
    assert_eq!(enumeration, chip_id.repeat(4));

    // Addressed at the 256/4 interval: each address answers for itself, at the new rate.
    let mut decoder = ResponseDecoder::chip_to_host(ResponseFormat::Short);
    for address in [0u8, 64, 128, 192] {
        port.write_all(
            Command::read(Destination::Chip(address), 0x14)
                .encode()
                .as_bytes(),
        )
        .expect("writes");
        let bytes = read_bytes(&mut port, 9, Duration::from_secs(5));
        let events: Vec<_> = decoder.feed(&bytes).collect();
        assert!(
            matches!(events[..], [Event::Frame { frame: Response::Register(r), .. }] if r.chip_address == address && r.value == 0xFF),
            "chip {address}: {events:?}"
        );
    }

    // Work: genuine AsicBoost nonces from every chip.
    let header = BlockHeader {
        version: 0x2000_0000,
        prev_hash: [0x11; 32],
        merkle_root: [0x22; 32],
        ntime: 0x6470_25b5,
        nbits: 0x1705_ae3a,
        nonce: 0,
    };
    let job = MidstateJob::from_header(
        JobId::new(ChipModel::Bm1397, 12).expect("valid"),
        &header,
        Some(VersionMask::BIP320),
    );
    port.write_all(Job::Midstate(job).encode().as_bytes())
        .expect("writes");
    let addressing = ChipAddressing::for_chain(4).expect("valid");
    let mut nonces = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while nonces < 8 && Instant::now() < deadline {
        let bytes = read_bytes(&mut port, 9, Duration::from_millis(200));
        for event in decoder.feed(&bytes) {
            let Event::Frame {
                frame: Response::Nonce(nonce),
                ..
            } = event
            else {
                panic!("unexpected {event:?}");
            };
            let fields = decode_nonce(
                ChipModel::Bm1397,
                &nonce,
                NonceLayout::ESP_MINER,
                addressing,
            );
            assert_eq!(fields.job_id, 12);
            let solved = BlockHeader {
                version: VersionMask::BIP320.roll(
                    header.version,
                    u32::from(fields.midstate.expect("midstate")),
                ),
                nonce: fields.nonce,
                ..header
            };
            assert!(solved.share_difficulty() >= 2f64.powi(-24), "{fields:?}");
            nonces += 1;
        }
    }
    assert!(nonces >= 8, "only {nonces} nonces in 30 s");
    assert!(served.stop().success(), "clean exit on SIGTERM");
}

#[test]
fn several_chains_and_their_links() {
    let link = std::env::temp_dir().join(format!("chipsim-test-{}-", std::process::id()));
    let link_arg = link.to_str().expect("utf-8").to_string();
    let served = Served::start(&["--chips", "2", "--chains", "3", "--link", &link_arg]);
    assert_eq!(served.paths.len(), 3);
    for (i, path) in served.paths.iter().enumerate() {
        let linked = std::fs::read_link(format!("{link_arg}{i}")).expect("symlink");
        assert_eq!(linked.to_str(), Some(path.as_str()));
        let mut port = open_port(path, BaudRate::B115200);
        port.write_all(Command::read(Destination::All, 0x00).encode().as_bytes())
            .expect("writes");
        assert_eq!(
            read_bytes(&mut port, 18, Duration::from_secs(5)).len(),
            18,
            "chain {i}"
        );
    }
    assert!(served.stop().success());
    assert!(
        std::fs::symlink_metadata(format!("{link_arg}0")).is_err(),
        "links removed on exit"
    );
}

#[test]
fn bad_arguments_fail_with_one_line() {
    for args in [
        vec!["serve", "--share-floor", "3"],
        vec!["serve", "--share-floor", "2^-40"],
        vec!["serve", "--chips", "0"],
        vec!["serve", "--faults", "/nonexistent.json"],
        vec!["oracle", "--model", "bm9999"],
    ] {
        let output = Process::new(env!("CARGO_BIN_EXE_chipsim"))
            .args(&args)
            .output()
            .expect("runs");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    }
}

#[test]
fn oracle_prints_the_truth_as_json() {
    let output = Process::new(env!("CARGO_BIN_EXE_chipsim"))
        .args([
            "oracle", "--model", "bm1370", "--chips", "3", "--seed", "9", "--json",
        ])
        .output()
        .expect("runs");
    assert!(output.status.success());
    let oracle: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(oracle["model"], "bm1370");
    assert_eq!(oracle["chips"].as_array().map(Vec::len), Some(3));
    let curve = oracle["chips"][0]["points"].as_array().expect("curve");
    let f = |i: usize| curve[i]["max_stable_mhz"].as_f64().expect("mhz");
    assert!(f(8) > f(0), "more voltage, more stable clock");
}
