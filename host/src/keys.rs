//! The host's command-signing key: a key file (`cli_common::keyfile`) and its key id.

use std::path::Path;

pub use cli_common::keyfile::{KeyError, hex};
use fleet_proto::CommandSigner;

/// Creates a new key at `path` (0600, never over an existing file) and returns its public half.
pub fn init(path: &Path, key_id: &str) -> Result<[u8; 32], KeyError> {
    let seed = cli_common::keyfile::create_seed(path)?;
    Ok(CommandSigner::from_seed(key_id, &seed).public_key())
}

/// The signer for the key at `path`, refused if others can read it.
pub fn load(path: &Path, key_id: &str) -> Result<CommandSigner, KeyError> {
    let seed = cli_common::keyfile::read_seed(path)?;
    Ok(CommandSigner::from_seed(key_id, &seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_key_printed_is_the_one_that_signs() {
        let dir = std::env::temp_dir().join(format!("hw-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("host.key");
        let public = init(&path, "host-1").expect("created");
        let signer = load(&path, "host-1").expect("loads");
        assert_eq!(signer.public_key(), public);
        assert_eq!(signer.key_id(), "host-1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
