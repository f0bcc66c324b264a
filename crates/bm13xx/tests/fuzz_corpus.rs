//! Replays the fuzzer's corpus through the same invariant checks the fuzz target runs, so the
//! inputs that once reached new code keep being checked on stable Rust in every test run.
//! Run the fuzzer itself with `cargo +nightly fuzz run decoder --fuzz-dir crates/bm13xx/fuzz`.

#[path = "../fuzz/check_decoder.rs"]
mod check_decoder;

#[test]
fn decoder_corpus_holds_its_invariants() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decoder");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus is committed") {
        let path = entry.expect("readable entry").path();
        let data = std::fs::read(&path).expect("readable file");
        check_decoder::check(&data);
        checked += 1;
    }
    assert!(checked >= 100, "corpus has only {checked} inputs");
}
