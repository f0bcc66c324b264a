//! Signing keys on disk — the host's command key, the release key that signs firmware images —
//! as a 32-byte Ed25519 seed in hex, readable by its owner only. A key file anyone else can read
//! is refused: it would let them command the fleet or ship it firmware.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: readable by others (mode {mode:o}): chmod 600 it")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("{path}: not a key file (64 hex characters; for a token, one line of printable text)")]
    Malformed { path: PathBuf },
    #[error("{path}: exists; refusing to overwrite a signing key")]
    Exists { path: PathBuf },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates a new random seed at `path` (0600, never over an existing file) and returns it.
pub fn create_seed(path: &Path) -> Result<[u8; 32], KeyError> {
    let mut seed = [0u8; 32];
    let mut random = std::fs::File::open("/dev/urandom").map_err(io(path))?;
    std::io::Read::read_exact(&mut random, &mut seed).map_err(io(path))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => KeyError::Exists {
                path: path.to_path_buf(),
            },
            _ => io(path)(source),
        })?;
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    writeln!(file, "{hex}").map_err(io(path))?;
    file.sync_all().map_err(io(path))?;
    Ok(seed)
}

/// The text of a file only its owner may read, refused otherwise.
fn read_private(path: &Path) -> Result<String, KeyError> {
    let metadata = std::fs::metadata(path).map_err(io(path))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    std::fs::read_to_string(path).map_err(io(path))
}

/// An API key or token kept in a file (one line, printable ASCII, as an HTTP header carries it),
/// refused if others can read it.
pub fn read_token(path: &Path) -> Result<String, KeyError> {
    let text = read_private(path)?;
    let token = text.trim();
    if token.is_empty() || token.len() > 512 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(KeyError::Malformed {
            path: path.to_path_buf(),
        });
    }
    Ok(token.to_string())
}

/// The seed at `path`, refused if others can read it.
pub fn read_seed(path: &Path) -> Result<[u8; 32], KeyError> {
    let text = read_private(path)?;
    let malformed = || KeyError::Malformed {
        path: path.to_path_buf(),
    };
    let hex = text.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(malformed());
    }
    let mut seed = [0u8; 32];
    for (byte, pair) in seed.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).map_err(|_| malformed())?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| malformed())?;
    }
    Ok(seed)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hw-keyfile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    #[test]
    fn a_new_key_is_private_reads_back_and_is_never_overwritten() {
        let dir = scratch("init");
        let path = dir.join("host.key");
        let seed = create_seed(&path).expect("created");
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_seed(&path).expect("reads"), seed);
        assert!(matches!(create_seed(&path), Err(KeyError::Exists { .. })));
        assert_eq!(read_seed(&path).expect("unchanged"), seed);
        assert_ne!(create_seed(&dir.join("other.key")).expect("created"), seed);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tokens_are_one_private_printable_line() {
        let dir = scratch("token");
        let path = dir.join("api.key");
        std::fs::write(&path, "hi.0123abcd\n").expect("writes");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(read_token(&path).expect("reads"), "hi.0123abcd");
        for text in ["", "  \n", "two words", "line\r\nX-Injected: 1"] {
            std::fs::write(&path, text).expect("writes");
            assert!(
                matches!(read_token(&path), Err(KeyError::Malformed { .. })),
                "{text:?}"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(matches!(read_token(&path), Err(KeyError::Exposed { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn exposed_or_malformed_keys_are_refused() {
        let dir = scratch("refuse");
        let path = dir.join("host.key");
        create_seed(&path).expect("created");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            read_seed(&path),
            Err(KeyError::Exposed { mode: 0o644, .. })
        ));
        let bad = dir.join("bad.key");
        for text in ["", "zz", &"g".repeat(64), &"é".repeat(32)] {
            std::fs::write(&bad, text).expect("writes");
            std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            assert!(
                matches!(read_seed(&bad), Err(KeyError::Malformed { .. })),
                "{text:?}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
