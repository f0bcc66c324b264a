//! Replays the API fuzzer's corpus through the same invariant checks the fuzz target runs
//! (`fuzz/check_api.rs`), so inputs that once reached new code keep being checked on stable Rust
//! in every test run. Run the fuzzer with
//! `cargo +nightly fuzz run api --fuzz-dir firmware/fuzz`;
//! `FUZZ_SEEDS=1 cargo test -p hashwarden-fw --test fuzz_corpus` rewrites the hand-made seeds.

#[path = "../fuzz/check_api.rs"]
mod check_api;

use std::path::{Path, PathBuf};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/api")
}

/// Requests as tools send them: cgminer's plain and JSON forms (byte 0), AxeOS PATCH bodies
/// (byte 1).
fn write_seeds() {
    let dir = corpus();
    std::fs::create_dir_all(&dir).expect("dir");
    let seeds: [(&str, u8, &str); 9] = [
        ("seed-summary-text", 0, "summary"),
        ("seed-stats-json", 0, r#"{"command":"stats"}"#),
        (
            "seed-multi-json",
            0,
            r#"{"command":"summary+pools+devs","parameter":""}"#,
        ),
        ("seed-version-nul", 0, "{\"command\":\"version\"}\0"),
        (
            "seed-write-refused",
            0,
            r#"{"command":"ascset","parameter":"0,freq,500"}"#,
        ),
        (
            "seed-patch-clock",
            1,
            r#"{"frequency":485,"coreVoltage":1200}"#,
        ),
        ("seed-patch-fan", 1, r#"{"fanspeed":80,"autofanspeed":0}"#),
        ("seed-patch-auto-fan", 1, r#"{"autofanspeed":1}"#),
        ("seed-patch-unknown", 1, r#"{"stratumPassword":"x"}"#),
    ];
    for (name, api, request) in seeds {
        let mut data = vec![api];
        data.extend_from_slice(request.as_bytes());
        std::fs::write(dir.join(name), data).expect("writes");
    }
}

#[test]
fn api_corpus_holds_its_invariants() {
    if std::env::var_os("FUZZ_SEEDS").is_some() {
        write_seeds();
    }
    let mut checked = 0;
    for entry in std::fs::read_dir(corpus()).expect("the corpus is committed") {
        let data = std::fs::read(entry.expect("entry").path()).expect("readable");
        check_api::check_api(&data);
        checked += 1;
    }
    assert!(checked >= 9, "only {checked} inputs");
}
