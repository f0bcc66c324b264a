//! The bundled sample captures are generated from the protocol crate and checked here, so they
//! cannot drift from what the crate does. `BLESS=1 cargo test -p bm13xx-cli --test samples`
//! rewrites them after an intended change.

use std::fmt::Write as _;
use std::path::PathBuf;

use bm13xx::header::prev_hash_from_stratum;
use bm13xx::{
    BlockHeader, ChipModel, InitConfig, InitSequence, Job, JobId, MidstateJob, NonceResponse,
    RegisterResponse, Response, Step,
};

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn array<const N: usize>(text: &str) -> [u8; N] {
    bm13xx::hex::decode_array(text).expect("valid hex")
}

/// ESP-Miner's pinned Stratum work (test_mining.c).
fn esp_miner_header() -> BlockHeader {
    BlockHeader {
        version: 0x2000_0004,
        prev_hash: prev_hash_from_stratum(&array(
            "bf44fd3513dc7b837d60e5c628b572b448d204a8000007490000000000000000",
        )),
        merkle_root: array("cd1be82132ef0d12053dcece1fa0247fcfdb61d4dbd3eb32ea9ef9b4c604a846"),
        ntime: 0x6465_8bd8,
        nbits: 0x1705_dd01,
        nonce: 0,
    }
}

fn tx_sample() -> String {
    let mut out = String::from(
        "# BM1397 single-chip bring-up as hashwarden sends it (protocol.md §6.2: enumerate, address,\n\
         # configure, ramp 50 -> 425 MHz, switch to 3.125 Mbaud), then work.\n\
         # Synthesised from the bm13xx crate; regenerate with BLESS=1 (tests/samples.rs).\n",
    );
    for step in InitSequence::new(InitConfig::esp_miner(ChipModel::Bm1397, 1)).expect("valid") {
        match step.expect("solvable") {
            Step::Send { frame, .. } | Step::Enumerate { frame, .. } => {
                writeln!(out, "{}", hex(frame.as_bytes())).expect("string");
            }
            Step::SetHostBaud { baud, .. } => {
                writeln!(out, "# host switches to {baud} Bd").expect("string");
            }
        }
    }
    let id = JobId::new(ChipModel::Bm1397, 4).expect("valid");
    let job = Job::Midstate(MidstateJob::from_header(
        id,
        &esp_miner_header(),
        Some(bm13xx::VersionMask::BIP320),
    ));
    writeln!(
        out,
        "# job 4, four AsicBoost midstates from ESP-Miner's pinned Stratum work"
    )
    .expect("string");
    writeln!(out, "{}", hex(job.encode().as_bytes())).expect("string");
    writeln!(
        out,
        "# a glitch on the line, then a register write whose CRC was hit by it"
    )
    .expect("string");
    writeln!(out, "FF 00 55 55 AA 51 09 00 14 00 00 00 FF 0E").expect("string");
    writeln!(out, "# read the hash-rate register of chip 0").expect("string");
    let read = bm13xx::Command::read(bm13xx::Destination::Chip(0), 0x04);
    writeln!(out, "{}", hex(read.encode().as_bytes())).expect("string");
    out
}

fn rx_sample() -> String {
    let mut out = String::from(
        "# What a single BM1397 answers: its chip id, nonces, a hash-rate reading, and line damage.\n\
         # Synthesised from the bm13xx crate; regenerate with BLESS=1 (tests/samples.rs).\n",
    );
    let frame = |response: Response| hex(response.encode().as_bytes());
    writeln!(out, "# chip id 0x1397, 0x18 core groups (protocol.md §3.5)").expect("string");
    writeln!(out, "AA 55 13 97 18 00 00 00 06").expect("string");
    writeln!(
        out,
        "# nonce 0x0A4C049B for job 0x18, midstate 2 (the hardware capture in ESP-Miner's tests)"
    )
    .expect("string");
    let nonce = Response::Nonce(NonceResponse {
        nonce_bytes: [0x9B, 0x04, 0x4C, 0x0A],
        byte6: 0,
        byte7: 0x1A,
        version_bits: None,
    });
    writeln!(out, "{}", frame(nonce)).expect("string");
    writeln!(out, "# hash-rate register 0x04 (units of 2^20 H/s)").expect("string");
    let rate = Response::Register(RegisterResponse {
        value: 272_368,
        chip_address: 0,
        register: 0x04,
        extra: None,
    });
    writeln!(out, "{}", frame(rate)).expect("string");
    writeln!(out, "# a nonce cut short by the next frame, then noise").expect("string");
    let second = Response::Nonce(NonceResponse {
        nonce_bytes: [0x11, 0x22, 0x33, 0x44],
        byte6: 0,
        byte7: 0x05,
        version_bits: None,
    });
    let second_hex = frame(second);
    writeln!(out, "{}", &second_hex[..14]).expect("string");
    writeln!(out, "{second_hex}").expect("string");
    writeln!(out, "00 13 37").expect("string");
    out
}

fn check(name: &str, expected: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("samples")
        .join(name);
    if std::env::var_os("BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("samples dir");
        std::fs::write(&path, expected).expect("writes sample");
    }
    let actual = std::fs::read_to_string(&path).expect("sample is committed");
    assert_eq!(actual, expected, "{name} is stale: rerun with BLESS=1");
}

#[test]
fn tx_sample_is_current() {
    check("bm1397-bringup-tx.hex", &tx_sample());
}

#[test]
fn rx_sample_is_current() {
    check("bm1397-rx.hex", &rx_sample());
}

/// The samples decode the way the README says: frames, the glitch and the bad CRC reported, and
/// decoding carrying on after them.
#[test]
fn samples_decode_with_their_damage_reported() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples");
    let run = |file: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_bm13xx"))
            .args(["decode", "--json", "--file"])
            .arg(dir.join(file))
            .output()
            .expect("runs");
        assert!(output.status.success());
        String::from_utf8(output.stdout)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
            .collect::<Vec<_>>()
    };
    let tx = run("bm1397-bringup-tx.hex");
    assert_eq!(tx[0]["kind"], "read_register");
    assert!(tx.iter().any(|r| r["kind"] == "job" && r["midstates"] == 4));
    assert!(tx.iter().any(|r| r["reason"] == "preamble"));
    assert!(
        tx.iter()
            .any(|r| r["kind"] == "write_register" && r["crc_ok"] == false)
    );
    assert_eq!(tx.last().expect("records")["kind"], "read_register");

    let rx = run("bm1397-rx.hex");
    assert_eq!(rx[0]["value"], 0x1397_1800u32);
    assert_eq!(rx[1]["nonce"], 0x0A4C_049Bu32);
    assert_eq!(rx[1]["midstate"], 2);
    assert_eq!(rx[2]["register"], 4);
    assert_eq!(rx[3]["reason"], "truncated");
    assert_eq!(rx[4]["kind"], "nonce");
    assert_eq!(rx[5]["reason"], "preamble");
}
