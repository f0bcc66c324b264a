//! The `bm13xx` binary end to end: its JSON contract, spec vectors, and how it fails.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn bm13xx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bm13xx"))
        .args(args)
        .output()
        .expect("runs")
}

fn bm13xx_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bm13xx"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("writes");
    child.wait_with_output().expect("finishes")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8")
}

fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

#[track_caller]
fn fails_with_one_line(output: &Output) {
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line, got {stderr:?}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn decodes_the_spec_command_examples() {
    let out = json_lines(&bm13xx(&[
        "decode",
        "--json",
        "55AA5305000003",
        "55AA400500001C",
        "55AA520500000A",
        "55AA4109401800007A3111",
    ]));
    assert_eq!(
        out,
        vec![
            json!({"dir":"tx","kind":"chain_inactive","broadcast":true,"chip_address":0,"crc_ok":true,"offset":0}),
            json!({"dir":"tx","kind":"set_address","broadcast":false,"chip_address":0,"crc_ok":true,"offset":7}),
            json!({"dir":"tx","kind":"read_register","broadcast":true,"chip_address":0,"register":0,"crc_ok":true,"offset":14}),
            json!({"dir":"tx","kind":"write_register","broadcast":false,"chip_address":0x40,"register":0x18,"value":0x7A31,"crc_ok":true,"offset":21}),
        ]
    );
}

#[test]
fn decodes_chip_id_responses_and_reports_damage() {
    // §3.5 BM1397 chip id, line noise, the same frame with a flipped CRC bit, the frame again.
    let out = json_lines(&bm13xx(&[
        "decode",
        "--json",
        "--dir",
        "rx",
        "AA 55 13 97 18 00 00 00 06  13 37  AA 55 13 97 18 00 00 00 07  AA 55 13 97 18 00 00 00 06",
    ]));
    assert_eq!(
        out[0],
        json!({"dir":"rx","kind":"register","chip_address":0,"register":0,"value":0x1397_1800u32,"crc_ok":true,"offset":0})
    );
    assert_eq!(out[1]["kind"], "error");
    assert_eq!(out[1]["reason"], "preamble");
    assert_eq!(out[1]["offset"], 9);
    assert_eq!(out[2]["reason"], "crc");
    assert_eq!(out[2]["offset"], 11);
    assert_eq!(out[3]["value"], 0x1397_1800u32);
    assert_eq!(out[3]["offset"], 20);
    assert_eq!(out.len(), 4);
}

#[test]
fn bm1368_long_chip_id_quoted_by_esp_miner() {
    let out = json_lines(&bm13xx(&[
        "decode",
        "--json",
        "--chip",
        "bm1368",
        "--version-rolling",
        "AA 55 13 68 00 00 00 00 00 00 0F",
    ]));
    assert_eq!(out[0]["value"], 0x1368_0000u32);
    assert_eq!(out[0]["crc_ok"], true);
}

/// Nonce fields per model: the BM1397 capture (job 0x18, midstate 2), and BM1370 version bits
/// 0x94FB → 0x129F6000 (§3.3).
#[test]
fn nonce_fields_per_model() {
    let bm1397_nonce = bm13xx::Response::Nonce(bm13xx::NonceResponse {
        nonce_bytes: [0x9B, 0x04, 0x4C, 0x0A],
        byte6: 0,
        byte7: 0x1A,
        version_bits: None,
    });
    let hex: String = bm1397_nonce
        .encode()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let out = json_lines(&bm13xx(&["decode", "--json", "--chip", "bm1397", &hex]));
    assert_eq!(
        out[0],
        json!({"dir":"rx","kind":"nonce","nonce":0x0A4C_049Bu32,"job_id":0x18,"midstate":2,"chip_index":0,"core":0x4D,"crc_ok":true,"offset":0})
    );

    let bm1370_nonce = bm13xx::Response::Nonce(bm13xx::NonceResponse {
        nonce_bytes: [0x01, 0x00, 0x00, 0x00],
        byte6: 0x02,
        byte7: (120 >> 3) << 4 | 0x0B,
        version_bits: Some(0x94FB),
    });
    let hex: String = bm1370_nonce
        .encode()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let out = json_lines(&bm13xx(&[
        "decode",
        "--json",
        "--chip",
        "bm1370",
        "--version-rolling",
        "--chips",
        "2",
        &hex,
    ]));
    assert_eq!(out[0]["job_id"], 120);
    assert_eq!(out[0]["small_core"], 0x0B);
    assert_eq!(out[0]["version_bits"], 0x129F_6000u32);
    assert_eq!(
        out[0]["chip_index"], 1,
        "address bit 7 is the header nonce's bit 0"
    );
    assert!(
        out[0].get("midstate").is_none(),
        "fields that do not apply are omitted"
    );
}

#[test]
fn encodes_frames_as_upper_case_hex() {
    let line = |args: &[&str]| stdout(&bm13xx(args)).trim().to_string();
    assert_eq!(line(&["encode", "chain-inactive"]), "55AA5305000003");
    assert_eq!(
        line(&["encode", "set-address", "--addr", "0"]),
        "55AA400500001C"
    );
    assert_eq!(
        line(&["encode", "read-register", "--reg", "0", "--broadcast"]),
        "55AA520500000A"
    );
    assert_eq!(
        line(&[
            "encode",
            "write-register",
            "--reg",
            "0x18",
            "--value",
            "0x00007A31",
            "--addr",
            "0x40"
        ]),
        "55AA4109401800007A3111"
    );
    assert_eq!(
        line(&[
            "encode",
            "write-register",
            "--reg",
            "0xA4",
            "--value",
            "0x9000FFFF",
            "--broadcast"
        ]),
        "55AA510900A49000FFFF1C"
    );
    assert_eq!(line(&["crc5", "53 05 00 00"]), "0x03");
    assert_eq!(line(&["crc5", "51", "09", "00", "80", "00000000"]), "0x1C");
    assert_eq!(line(&["crc16", "313233343536373839"]), "0x29B1");
}

#[test]
fn pll_table_from_the_spec() {
    let rows: [(&str, &str, u32, u32); 8] = [
        ("bm1397", "425", 0x4044_0221, 850),
        ("bm1397", "450", 0x4048_0221, 900),
        ("bm1397", "485", 0x40C2_0251, 2425),
        ("bm1366", "485", 0x50C2_0240, 2425),
        ("bm1366", "525", 0x40A8_0230, 2100),
        ("bm1368", "490", 0x50C4_0240, 2450),
        ("bm1370", "525", 0x40A8_0230, 2100),
        ("bm1370", "600", 0x50C0_0230, 2400),
    ];
    for (chip, mhz, register, vco) in rows {
        let out = json_lines(&bm13xx(&[
            "encode", "pll", "--chip", chip, "--mhz", mhz, "--json",
        ]));
        assert_eq!(out[0]["register"], register, "{chip} {mhz}");
        assert_eq!(out[0]["vco_mhz"], f64::from(vco));
        let frame = out[0]["frame"].as_str().expect("frame");
        assert_eq!(&frame[..12], "55AA51090008");
        assert_eq!(&frame[12..20], format!("{register:08X}"));
    }
    let out = json_lines(&bm13xx(&[
        "encode", "pll", "--chip", "bm1397", "--mhz", "450", "--json",
    ]));
    assert_eq!(
        (
            out[0]["fbdiv"].clone(),
            out[0]["refdiv"].clone(),
            out[0]["postdiv1"].clone(),
            out[0]["postdiv2"].clone()
        ),
        (json!(72), json!(2), json!(2), json!(1))
    );
}

#[test]
fn ticket_mask_table_from_the_spec() {
    for (difficulty, register) in [
        ("1", 0u32),
        ("256", 0xFF),
        ("512", 0x80FF),
        ("1000", 0x80FF),
        ("65536", 0xFFFF),
    ] {
        let out = json_lines(&bm13xx(&[
            "encode",
            "ticket-mask",
            "--difficulty",
            difficulty,
            "--json",
        ]));
        assert_eq!(out[0]["register"], register, "difficulty {difficulty}");
    }
}

/// `bm13xx encode job` on ESP-Miner's pinned Stratum work (test_mining.c), plus `extra` arguments.
fn encode_esp_miner_job(extra: &[&str]) -> Output {
    let mut args = vec![
        "encode",
        "job",
        "--version",
        "0x20000004",
        "--prev-hash",
        "bf44fd3513dc7b837d60e5c628b572b448d204a8000007490000000000000000",
        "--merkle-root",
        "cd1be82132ef0d12053dcece1fa0247fcfdb61d4dbd3eb32ea9ef9b4c604a846",
        "--ntime",
        "0x64658bd8",
        "--nbits",
        "0x1705dd01",
    ];
    args.extend_from_slice(extra);
    bm13xx(&args)
}

/// A BM1397 job built from ESP-Miner's pinned Stratum work carries the pinned midstate, and the
/// decoder reads the frame back.
#[test]
fn job_from_stratum_work() {
    let job = stdout(&encode_esp_miner_job(&[
        "--chip", "bm1397", "--job-id", "4",
    ]));
    let job = job.trim();
    assert_eq!(job.len(), 152 * 2);
    assert_eq!(&job[..20], "55AA2196040100000000");
    assert_eq!(&job[20..44], "01DD0517D88B6564C604A846");
    assert_eq!(
        &job[44..108],
        "4D3185F25F7D5DE0E3591741CB21CAE11574DDD65D490D3D68739F8A52EADF91"
    );
    let out = json_lines(&bm13xx(&["decode", "--json", "--chip", "bm1397", job]));
    assert_eq!(
        out[0],
        json!({"dir":"tx","kind":"job","job_id":4,"midstates":1,"starting_nonce":0,"nbits":0x1705_dd01u32,"ntime":0x6465_8bd8u32,"crc_ok":true,"offset":0})
    );

    let asicboost = stdout(&encode_esp_miner_job(&[
        "--chip",
        "bm1397",
        "--job-id",
        "8",
        "--midstates",
        "4",
    ]));
    let decoded = json_lines(&bm13xx(&[
        "decode",
        "--json",
        "--chip",
        "bm1397",
        asicboost.trim(),
    ]));
    assert_eq!(decoded[0]["midstates"], 4);

    let bm1370 = stdout(&encode_esp_miner_job(&[
        "--chip", "bm1370", "--job-id", "24",
    ]));
    assert_eq!(&bm1370.trim()[..20], "55AA2156180100000000");
    assert_eq!(bm1370.trim().len(), 88 * 2);
}

#[test]
fn reads_binary_and_hex_from_files_and_stdin() {
    let dir = std::env::temp_dir().join(format!("bm13xx-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let binary = dir.join("capture.bin");
    std::fs::write(
        &binary,
        [0xAA, 0x55, 0x13, 0x97, 0x18, 0x00, 0x00, 0x00, 0x06],
    )
    .expect("writes");
    let out = json_lines(&bm13xx(&[
        "decode",
        "--json",
        "--file",
        binary.to_str().expect("utf-8"),
    ]));
    assert_eq!(out[0]["value"], 0x1397_1800u32);

    let out = json_lines(&bm13xx_stdin(
        &["decode", "--json", "-"],
        b"# comment\n55 AA 53 05\n00 00 03\n",
    ));
    assert_eq!(out[0]["kind"], "chain_inactive");
    let out = json_lines(&bm13xx_stdin(
        &["decode", "--json"],
        &[0x55, 0xAA, 0x53, 0x05, 0x00, 0x00, 0x03],
    ));
    assert_eq!(out[0]["kind"], "chain_inactive");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    fails_with_one_line(&bm13xx(&["decode", "55A"]));
    fails_with_one_line(&bm13xx(&["decode", "--chip", "bm9999", "00"]));
    fails_with_one_line(&bm13xx(&[
        "decode",
        "--chip",
        "bm1397",
        "--version-rolling",
        "00",
    ]));
    fails_with_one_line(&bm13xx(&["decode", "--chips", "0", "AA55"]));
    fails_with_one_line(&bm13xx(&["decode", "--file", "/nonexistent/capture"]));
    fails_with_one_line(&bm13xx(&["encode", "set-address", "--addr", "256"]));
    fails_with_one_line(&bm13xx(&[
        "encode",
        "write-register",
        "--reg",
        "0x18",
        "--value",
        "0x1FFFFFFFF",
    ]));
    fails_with_one_line(&bm13xx(&[
        "encode",
        "read-register",
        "--reg",
        "0",
        "--addr",
        "1",
        "--broadcast",
    ]));
    fails_with_one_line(&bm13xx(&[
        "encode", "pll", "--chip", "bm1366", "--mhz", "-5",
    ]));
    fails_with_one_line(&bm13xx(&[
        "encode", "pll", "--chip", "bm1366", "--mhz", "99999",
    ]));
    fails_with_one_line(&bm13xx(&["encode", "ticket-mask", "--difficulty", "abc"]));
    fails_with_one_line(&bm13xx(&["crc16", "zz"]));
    let job = encode_esp_miner_job;
    fails_with_one_line(&job(&["--chip", "bm1397", "--job-id", "6"]));
    fails_with_one_line(&job(&["--chip", "bm1366", "--job-id", "4"]));
    fails_with_one_line(&job(&[
        "--chip",
        "bm1397",
        "--job-id",
        "4",
        "--midstates",
        "2",
    ]));
    fails_with_one_line(&job(&[
        "--chip",
        "bm1370",
        "--job-id",
        "8",
        "--midstates",
        "4",
    ]));
    fails_with_one_line(&bm13xx(&[
        "encode",
        "job",
        "--chip",
        "bm1397",
        "--job-id",
        "4",
        "--version",
        "1",
        "--ntime",
        "1",
        "--nbits",
        "1",
        "--prev-hash",
        "abc",
        "--merkle-root",
        "00",
    ]));
}
