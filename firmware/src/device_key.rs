//! The miner's device key: an Ed25519 key made at first start in the data directory
//! (`device.key`, mode 0600, refused when others can read it, like the host's keys). The miner
//! signs its `state`, `telemetry` and acks with it, and the agent enrols its public half
//! (`hashwarden-fw device-key` prints it), so nobody else on the broker can speak for the miner.

use std::path::{Path, PathBuf};

use cli_common::keyfile::{self, KeyError};
use fleet_proto::report::DeviceSigner;

/// The key's file in the data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("device.key")
}

/// The device key in `data_dir`, made there if it has none yet.
pub fn load_or_create(data_dir: &Path) -> Result<DeviceSigner, KeyError> {
    let path = path(data_dir);
    let seed = match keyfile::read_seed(&path) {
        Ok(seed) => seed,
        Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(|source| KeyError::Io {
                path: data_dir.to_path_buf(),
                source,
            })?;
            match keyfile::create_seed(&path) {
                Ok(seed) => {
                    tracing::info!(path = %path.display(), "device key created");
                    seed
                }
                // Another process (the supervisor's daemon, `device-key`) made it meanwhile.
                Err(KeyError::Exists { .. }) => keyfile::read_seed(&path)?,
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    Ok(DeviceSigner::from_seed(&seed))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn made_once_kept_after_and_refused_when_exposed() {
        let dir = std::env::temp_dir().join(format!("hw-device-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = load_or_create(&dir.join("data")).expect("made");
        let again = load_or_create(&dir.join("data")).expect("read back");
        assert_eq!(first.public_key(), again.public_key());
        let file = path(&dir.join("data"));
        let mode = std::fs::metadata(&file)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            load_or_create(&dir.join("data")),
            Err(KeyError::Exposed { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
