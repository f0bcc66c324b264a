//! Replays the stratum fuzzer's corpus through the same invariant check the fuzz target runs
//! (`fuzz/check_stratum.rs`), so inputs that once reached new code keep being checked on stable
//! Rust in every test run. Run the fuzzer with
//! `cargo +nightly fuzz run pool --fuzz-dir crates/stratum/fuzz`;
//! `FUZZ_SEEDS=1 cargo test -p stratum --test fuzz_corpus` rewrites the hand-made seeds.

#[path = "../fuzz/check_stratum.rs"]
mod check_stratum;

use std::path::{Path, PathBuf};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/pool")
}

/// A pool's job (a mainnet-shaped notify from the session tests).
const NOTIFY: &str = r#"{"id":null,"method":"mining.notify","params":["j1","bf44fd3513dc7b837d60e5c628b572b448d204a8000007490000000000000000","01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008","072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000",[],"20000004","1705dd01","64658bd8",true]}"#;

/// Pool conversations for the fuzzer to start from: the first byte 0 (after the canned
/// handshake) or 1 (the pool's own handshake), then its lines.
fn write_seeds() {
    let dir = corpus();
    std::fs::create_dir_all(&dir).expect("dir");
    let handshake = check_stratum::HANDSHAKE.join("\n");
    let seeds: [(&str, u8, String); 5] = [
        ("seed-work", 0, NOTIFY.to_string()),
        (
            "seed-difficulty-then-work",
            0,
            format!(
                "{{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[512]}}\n{NOTIFY}"
            ),
        ),
        ("seed-own-handshake", 1, format!("{handshake}\n{NOTIFY}")),
        (
            "seed-share-answers",
            0,
            format!(
                "{NOTIFY}\n{{\"id\":4,\"result\":true,\"error\":null}}\n\
                 {{\"id\":5,\"result\":null,\"error\":[23,\"Low difficulty share\",null]}}"
            ),
        ),
        (
            "seed-reconnect-and-extranonce",
            0,
            format!(
                "{{\"id\":null,\"method\":\"mining.set_extranonce\",\"params\":[\"0badf00d\",4]}}\n\
                 {NOTIFY}\n{{\"id\":null,\"method\":\"client.reconnect\",\"params\":[]}}"
            ),
        ),
    ];
    for (name, mode, lines) in seeds {
        let mut data = vec![mode];
        data.extend_from_slice(lines.as_bytes());
        std::fs::write(dir.join(name), data).expect("writes");
    }
}

#[test]
fn pool_corpus_holds_its_invariants() {
    if std::env::var_os("FUZZ_SEEDS").is_some() {
        write_seeds();
    }
    let mut checked = 0;
    for entry in std::fs::read_dir(corpus()).expect("the corpus is committed") {
        let data = std::fs::read(entry.expect("entry").path()).expect("readable");
        check_stratum::check_pool(&data);
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} inputs");
}

/// The seed that reaches work really does: without it the corpus would exercise only refusals.
#[test]
fn the_canned_handshake_and_a_notify_give_work() {
    let mut session = stratum::Session::new("bc1qworker.rig1", "x");
    let _ = session.start();
    for line in check_stratum::HANDSHAKE {
        session.handle_line(line).expect("a good handshake");
    }
    session.handle_line(NOTIFY).expect("a good notify");
    let work = session.next_work().expect("work");
    assert_eq!(work.job_id, "j1");
    assert_eq!(work.extranonce2.len(), 4);
    assert_eq!(work.version_mask, 0x1fff_e000);
}
