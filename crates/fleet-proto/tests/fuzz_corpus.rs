//! Replays the fleet-proto fuzzers' corpora through the same invariant checks the fuzz targets
//! run (`fuzz/check_fleet.rs`), so inputs that once reached new code keep being checked on
//! stable Rust in every test run. Run the fuzzers with
//! `cargo +nightly fuzz run image --fuzz-dir crates/fleet-proto/fuzz` (and `inbound`);
//! `FUZZ_SEEDS=1 cargo test -p fleet-proto --test fuzz_corpus` rewrites the hand-made seeds.

#[path = "../fuzz/check_fleet.rs"]
mod check_fleet;

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// Valid inputs of each kind, for the fuzzers to start from.
fn write_seeds() {
    use fleet_proto::image::{self, Version};
    let images = corpus("image");
    std::fs::create_dir_all(&images).expect("dir");
    for (i, size) in [0usize, 1, 300].into_iter().enumerate() {
        let payload: Vec<u8> = (0..size).map(|b| b as u8).collect();
        let boards = ["fuzz-board".to_string(), "other".to_string()];
        let image = image::build(
            &payload,
            Version(1, 2, 3),
            &boards,
            "release",
            &check_fleet::IMAGE_SEED,
            0,
        );
        std::fs::write(images.join(format!("seed-{i}")), image).expect("writes");
    }
    let inbound = corpus("inbound");
    std::fs::create_dir_all(&inbound).expect("dir");
    // A command for the fuzz miner under the trusted id, signed by another key: the fuzzer starts
    // next to the signature check.
    let mut command = fleet_proto::examples::example_command(fleet_proto::Action::Sleep, 7);
    command.site = fleet_proto::Name::new("site").expect("valid");
    command.miner = fleet_proto::Name::new("m1").expect("valid");
    command.issued_at = 1_771_891_190;
    command.expires_at = 1_771_891_250;
    let forged = fleet_proto::CommandSigner::from_seed("host", &[12; 32])
        .sign(&command)
        .expect("signs");
    std::fs::write(
        inbound.join("seed-forged-command"),
        serde_json::to_vec(&forged).expect("encodes"),
    )
    .expect("writes");
    for (i, example) in fleet_proto::examples::all().into_iter().enumerate() {
        std::fs::write(inbound.join(format!("seed-{i:02}")), example.json).expect("writes");
        std::fs::write(inbound.join(format!("seed-topic-{i:02}")), example.topic).expect("writes");
    }
}

fn replay(target: &str, check: fn(&[u8]), at_least: usize) {
    let mut checked = 0;
    for entry in std::fs::read_dir(corpus(target)).expect("the corpus is committed") {
        let data = std::fs::read(entry.expect("entry").path()).expect("readable");
        check(&data);
        checked += 1;
    }
    assert!(checked >= at_least, "{target}: only {checked} inputs");
}

#[test]
fn image_corpus_holds_its_invariants() {
    replay("image", check_fleet::check_image, 3);
}

#[test]
fn inbound_corpus_holds_its_invariants() {
    if std::env::var_os("FUZZ_SEEDS").is_some() {
        write_seeds();
    }
    replay("inbound", check_fleet::check_inbound, 20);
}
