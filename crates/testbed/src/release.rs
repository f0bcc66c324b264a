//! A release key for the suites and images signed with it: what a board under test trusts, and
//! builds for it to install.

use std::path::Path;

use fleet_proto::CommandSigner;
use fleet_proto::image::Version;

/// The release key's id, as boards' `[update] release_keys` name it.
pub const KEY_ID: &str = "release";
const SEED: [u8; 32] = [21; 32];

/// The release key's public half, hex.
pub fn public_key() -> String {
    CommandSigner::from_seed(KEY_ID, &SEED)
        .public_key()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The boards' trust in it, as their configuration holds it.
pub fn trusted() -> fleet_proto::TrustedKeys {
    let mut keys = fleet_proto::TrustedKeys::default();
    keys.trust_hex(KEY_ID, &public_key()).expect("a valid key");
    keys
}

/// An image of `script` (a shell script standing in for a build) at `version`, for `board`,
/// signed with the release key.
pub fn image(script: &str, version: Version, board: &str) -> Vec<u8> {
    fleet_proto::image::build(
        script.as_bytes(),
        version,
        &[board.to_string()],
        KEY_ID,
        &SEED,
        0,
    )
}

/// A build script that runs `binary` with whatever it is given: a "new build" that mines like
/// the old one, told apart only by its manifest's version (named in it, so each version's
/// payload differs).
pub fn script_running(binary: &Path, version: Version) -> String {
    format!(
        "#!/bin/sh\n# {version}\nexec '{}' \"$@\"\n",
        binary.display()
    )
}
