// Each fuzz target uses one of the two checks.
#![allow(dead_code)]

//! The invariants the fleet-proto fuzz targets check, shared with the corpus replay in
//! `tests/fuzz_corpus.rs` so they run on stable in every test run.

use fleet_proto::image::{self, Policy};
use fleet_proto::{CommandVerifier, Name, TrustedKeys, Verdict};

/// The release key the corpus's valid images are signed with.
pub const IMAGE_SEED: [u8; 32] = [9; 32];
/// The host key the miner trusts. Nothing in the corpus is signed with it (the corpus's commands
/// are signed by another key under the same id), so an accepted command is a forgery found.
const HOST_SEED: [u8; 32] = [11; 32];

fn trusting(key_id: &str, seed: &[u8; 32]) -> TrustedKeys {
    let mut keys = TrustedKeys::default();
    let public = fleet_proto::CommandSigner::from_seed(key_id, seed).public_key();
    let _ = keys.trust(key_id, &public);
    keys
}

/// An image from the outside: refused or accepted, never a panic; accepted means exactly the
/// declared payload came out, and checking it again gives the same answer.
pub fn check_image(data: &[u8]) {
    let keys = trusting("release", &IMAGE_SEED);
    let policy = Policy {
        keys: &keys,
        board: Some("fuzz-board"),
        min_version: None,
        max_size: 1 << 20,
    };
    let mut payload = Vec::new();
    if let Ok(manifest) = image::verify(data, &policy, &mut payload) {
        assert_eq!(payload.len() as u64, manifest.size);
        let again = image::verify(data, &policy, &mut std::io::sink()).expect("deterministic");
        assert_eq!(again, manifest);
    }
}

/// Anything a miner takes off the broker: a command to check, or a message the agent parses.
pub fn check_inbound(data: &[u8]) {
    let site = Name::new("site").expect("valid");
    let miner = Name::new("m1").expect("valid");
    let mut verifier = CommandVerifier::new(site, miner, trusting("host", &HOST_SEED));
    match verifier.check(data, 1_771_891_200) {
        Verdict::Accept(command) => panic!("accepted a command nobody signed: {command:?}"),
        Verdict::Duplicate { .. } | Verdict::Reject { .. } => {}
    }
    let _ = serde_json::from_slice::<fleet_proto::Telemetry>(data);
    let _ = serde_json::from_slice::<fleet_proto::State>(data);
    let _ = serde_json::from_slice::<fleet_proto::Market>(data);
    let _ = serde_json::from_slice::<fleet_proto::PowerPrice>(data);
    let _ = serde_json::from_slice::<fleet_proto::GridSignal>(data);
    let _ = serde_json::from_slice::<fleet_proto::Ack>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = fleet_proto::MinerTopic::parse(text);
    }
}
