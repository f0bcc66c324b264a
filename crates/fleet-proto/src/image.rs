//! hashwarden firmware images: the binary and a signed manifest in one file, so a miner (or an
//! operator before a rollout) can check everything — signer, board, version, size, hash — before
//! a single byte is switched to.
//!
//! Layout, all of it covered by the checks:
//!
//! ```text
//! "HWIMAGE1"                 8 bytes, the format
//! manifest length            u32, little-endian, at most MAX_MANIFEST
//! manifest                   JSON (`Manifest`)
//! signature                  64 bytes, Ed25519 by `manifest.key_id` over everything above
//! payload                    `manifest.size` bytes whose SHA-256 is `manifest.sha256`
//! ```
//!
//! The signature covers the manifest, the manifest names the payload's hash: one signature
//! check up front, then the payload is hashed as it streams to the inactive slot, and nothing
//! may follow it.

use std::fmt;
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::command::{KeyRefusal, TrustedKeys};

pub const MAGIC: &[u8; 8] = b"HWIMAGE1";
/// A manifest is a few hundred bytes; a larger one is an attack on the parser, not an image.
pub const MAX_MANIFEST: usize = 16 * 1024;
/// The largest payload a board takes unless configured otherwise.
pub const DEFAULT_MAX_PAYLOAD: u64 = 64 << 20;
pub const FORMAT: u32 = 1;

/// `MAJOR.MINOR.PATCH`, compared numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u32, pub u32, pub u32);

impl std::str::FromStr for Version {
    type Err = ImageError;

    fn from_str(text: &str) -> Result<Self, ImageError> {
        let bad = || ImageError::BadVersion(text.to_string());
        let mut parts = text.split('.').map(|p| {
            (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<u32>().ok())
                .flatten()
        });
        let mut next = || parts.next().flatten().ok_or_else(bad);
        let version = Version(next()?, next()?, next()?);
        match parts.next() {
            None => Ok(version),
            Some(_) => Err(bad()),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub version: Version,
    /// Board names (`[board] name`) this build runs on.
    pub boards: Vec<String>,
    /// Payload bytes.
    pub size: u64,
    /// Payload SHA-256, hex.
    pub sha256: String,
    /// The release key that signed it.
    pub key_id: String,
    /// Unix seconds.
    pub built_at: u64,
}

/// What a board accepts.
#[derive(Debug, Clone)]
pub struct Policy<'a> {
    pub keys: &'a TrustedKeys,
    /// This board's name; `None` checks an image for no board in particular (an operator's
    /// look before a rollout).
    pub board: Option<&'a str>,
    /// Refuse anything older (a downgrade to a build with a known hole).
    pub min_version: Option<Version>,
    pub max_size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("reading the image: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a hashwarden image (bad magic)")]
    BadMagic,
    #[error("truncated: the {0} is cut short")]
    Truncated(&'static str),
    #[error("manifest of {0} bytes is over the {MAX_MANIFEST}-byte limit")]
    ManifestTooLarge(usize),
    #[error("manifest: {0}")]
    Manifest(String),
    #[error("image format {0} is not one this build reads ({FORMAT})")]
    Format(u32),
    #[error("{0:?} is not a MAJOR.MINOR.PATCH version")]
    BadVersion(String),
    #[error("signature: {0}")]
    Signature(#[from] KeyRefusal),
    #[error("built for {supported:?}, not for this board ({board})")]
    WrongBoard {
        board: String,
        supported: Vec<String>,
    },
    #[error("payload of {size} bytes is over the {max}-byte limit")]
    TooLarge { size: u64, max: u64 },
    #[error("version {version} is below the minimum {min}")]
    Downgrade { version: Version, min: Version },
    #[error("payload is {actual} bytes, the manifest says {declared}")]
    SizeMismatch { declared: u64, actual: u64 },
    #[error("payload hash {actual} is not the manifest's {declared}")]
    HashMismatch { declared: String, actual: String },
    #[error("bytes after the payload")]
    TrailingBytes,
    #[error("writing the payload: {0}")]
    Sink(std::io::Error),
}

/// The signed front of an image: its checked manifest.
fn read_header(image: &mut impl Read, policy: &Policy<'_>) -> Result<Manifest, ImageError> {
    let mut magic = [0u8; 8];
    read_exact(image, &mut magic, "magic")?;
    if &magic != MAGIC {
        return Err(ImageError::BadMagic);
    }
    let mut length = [0u8; 4];
    read_exact(image, &mut length, "manifest length")?;
    let manifest_len = u32::from_le_bytes(length) as usize;
    if manifest_len > MAX_MANIFEST {
        return Err(ImageError::ManifestTooLarge(manifest_len));
    }
    let mut manifest_bytes = vec![0u8; manifest_len];
    read_exact(image, &mut manifest_bytes, "manifest")?;
    let mut signature = [0u8; 64];
    read_exact(image, &mut signature, "signature")?;
    // Nothing in the manifest is believed before the signature over it checks out — but the
    // signer's id is in it, so it is parsed first and trusted only after.
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| ImageError::Manifest(e.to_string()))?;
    let signed = [&magic[..], &length[..], &manifest_bytes[..]].concat();
    policy.keys.verify(&manifest.key_id, &signed, &signature)?;
    if manifest.format != FORMAT {
        return Err(ImageError::Format(manifest.format));
    }
    if let Some(board) = policy.board
        && !manifest.boards.iter().any(|b| b == board)
    {
        return Err(ImageError::WrongBoard {
            board: board.to_string(),
            supported: manifest.boards.clone(),
        });
    }
    if manifest.size > policy.max_size {
        return Err(ImageError::TooLarge {
            size: manifest.size,
            max: policy.max_size,
        });
    }
    if let Some(min) = policy.min_version
        && manifest.version < min
    {
        return Err(ImageError::Downgrade {
            version: manifest.version,
            min,
        });
    }
    Ok(manifest)
}

fn read_exact(image: &mut impl Read, buf: &mut [u8], what: &'static str) -> Result<(), ImageError> {
    image.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => ImageError::Truncated(what),
        _ => ImageError::Io(e),
    })
}

/// Checks an image end to end, streaming its payload into `payload` as it goes (the inactive
/// slot, or `io::sink()` to only check). The caller must discard what was written unless this
/// returns `Ok`.
pub fn verify(
    mut image: impl Read,
    policy: &Policy<'_>,
    payload: &mut impl Write,
) -> Result<Manifest, ImageError> {
    let manifest = read_header(&mut image, policy)?;
    let mut hasher = Sha256::new();
    let mut remaining = manifest.size;
    let mut buf = vec![0u8; 64 * 1024];
    while remaining > 0 {
        let want = buf
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let n = image.read(&mut buf[..want])?;
        if n == 0 {
            return Err(ImageError::SizeMismatch {
                declared: manifest.size,
                actual: manifest.size - remaining,
            });
        }
        hasher.update(&buf[..n]);
        payload.write_all(&buf[..n]).map_err(ImageError::Sink)?;
        remaining -= n as u64;
    }
    if image.read(&mut buf[..1])? != 0 {
        return Err(ImageError::TrailingBytes);
    }
    let actual = hex(&hasher.finalize());
    if !actual.eq_ignore_ascii_case(&manifest.sha256) {
        return Err(ImageError::HashMismatch {
            declared: manifest.sha256.clone(),
            actual,
        });
    }
    Ok(manifest)
}

/// Builds and signs an image of `payload` with the release key `seed` (`key_id`).
pub fn build(
    payload: &[u8],
    version: Version,
    boards: &[String],
    key_id: &str,
    seed: &[u8; 32],
    built_at: u64,
) -> Vec<u8> {
    let manifest = Manifest {
        format: FORMAT,
        version,
        boards: boards.to_vec(),
        size: payload.len() as u64,
        sha256: hex(&Sha256::digest(payload)),
        key_id: key_id.to_string(),
        built_at,
    };
    // A manifest of strings and numbers always serialises.
    let manifest = serde_json::to_vec(&manifest).unwrap_or_default();
    let mut image = Vec::with_capacity(8 + 4 + manifest.len() + 64 + payload.len());
    image.extend_from_slice(MAGIC);
    image.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
    image.extend_from_slice(&manifest);
    let signature = crate::command::sign_bytes(seed, &image);
    image.extend_from_slice(&signature);
    image.extend_from_slice(payload);
    image
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
