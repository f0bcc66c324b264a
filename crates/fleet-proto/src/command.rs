//! Commands to miners, signed end to end with Ed25519 so that a compromised broker cannot command a
//! miner, and the checks a miner makes before it obeys one.
//!
//! The signature covers the payload's exact bytes: the envelope carries the payload as a JSON
//! string, so no canonical form of JSON is needed — the miner verifies the bytes it received, then
//! parses them.

use std::collections::{HashMap, VecDeque};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::topic::Name;

/// The payload format version this crate writes and accepts.
pub const VERSION: u32 = 1;
/// How far in the future a command's issue time may be: clocks on a site drift.
pub const MAX_CLOCK_SKEW_S: u64 = 30;
/// Command ids remembered for telling a replay from an out-of-order command.
const RECENT_IDS: usize = 256;

/// What the host asks a miner to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Stop hashing: chains down, supply to standby, fans to minimum. Survives a reboot.
    Sleep,
    /// Back to the tuned point.
    Wake,
    SetPowerTarget {
        watts: f64,
    },
    SetMode {
        mode: TuneMode,
    },
    /// Expert: clamped to the board's limits by the miner.
    SetFrequency {
        mhz: f64,
    },
    /// Expert: per-chip core voltage, clamped to the board's limits by the miner.
    SetVoltage {
        millivolts: u32,
    },
    Reboot,
    /// Blink, beep: find this machine on the rack.
    Identify,
    /// Fetch a signed firmware image from `url` and install it on trial. The image carries its
    /// own release signature; `sha256` (of the payload, as in its manifest) and `version` pin
    /// which image the host meant, so whoever serves the URL cannot hand over another build
    /// that is also validly signed.
    Update {
        url: String,
        sha256: String,
        version: crate::image::Version,
    },
}

/// What the tuner optimises for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TuneMode {
    Efficiency,
    Power,
    Hashrate,
}

/// A command as the host means it; what the signature covers. (Unknown fields are refused by
/// [`Action`]; serde cannot also refuse them here next to `flatten`.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub v: u32,
    /// Unique per command; acks refer to it.
    pub id: String,
    pub site: Name,
    pub miner: Name,
    /// Unix seconds.
    pub issued_at: u64,
    pub expires_at: u64,
    /// Strictly increasing per signing key: what makes replays and reordering detectable.
    pub seq: u64,
    #[serde(flatten)]
    pub action: Action,
}

/// What travels on `…/cmd`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCommand {
    pub v: u32,
    /// Which trusted key signed it (several may be trusted during a key rotation).
    pub key_id: String,
    /// The command's JSON, exactly as signed.
    pub payload: String,
    /// Ed25519 signature of `payload`'s bytes, hex.
    pub sig: String,
}

/// Signs commands. Holds the private key; lives on the host only.
#[derive(Clone)]
pub struct CommandSigner {
    key_id: String,
    key: SigningKey,
}

impl std::fmt::Debug for CommandSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("CommandSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl CommandSigner {
    /// From a 32-byte Ed25519 seed.
    pub fn from_seed(key_id: &str, seed: &[u8; 32]) -> Self {
        Self {
            key_id: key_id.to_string(),
            key: SigningKey::from_bytes(seed),
        }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    pub fn sign(&self, command: &Command) -> Result<SignedCommand, serde_json::Error> {
        self.sign_json(command)
    }

    /// Any payload in the commands' envelope (a feed reading: `crate::feed`).
    pub(crate) fn sign_json(
        &self,
        payload: &impl Serialize,
    ) -> Result<SignedCommand, serde_json::Error> {
        let payload = serde_json::to_string(payload)?;
        let sig = self.key.sign(payload.as_bytes());
        Ok(SignedCommand {
            v: VERSION,
            key_id: self.key_id.clone(),
            payload,
            sig: hex(&sig.to_bytes()),
        })
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (slot, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let digits = std::str::from_utf8(pair).ok()?;
        *slot = u8::from_str_radix(digits, 16).ok()?;
    }
    Some(out)
}

/// Why a signed envelope (a feed's reading, a miner's report) could not be read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EnvelopeError {
    /// Bare JSON, no envelope: what an unsigned sender publishes.
    Unsigned,
    Malformed(String),
    Version(u32),
}

/// Reads a signed envelope off the wire, nothing verified yet.
pub(crate) fn read_envelope(bytes: &[u8]) -> Result<SignedCommand, EnvelopeError> {
    let envelope: SignedCommand = serde_json::from_slice(bytes).map_err(|e| {
        // A bare message parses as JSON but is no envelope.
        match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(v) if v.get("sig").is_none() => EnvelopeError::Unsigned,
            _ => EnvelopeError::Malformed(e.to_string()),
        }
    })?;
    if envelope.v != VERSION {
        return Err(EnvelopeError::Version(envelope.v));
    }
    Ok(envelope)
}

/// Why a miner refused a command; the text goes into the ack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("malformed command: {0}")]
    Malformed(String),
    #[error("unsigned command")]
    Unsigned,
    #[error("unsupported format version {0}")]
    Version(u32),
    #[error("signed by unknown key {0:?}")]
    UnknownKey(String),
    #[error("signed by revoked key {0:?}")]
    RevokedKey(String),
    #[error("bad signature")]
    BadSignature,
    #[error("for miner {site}/{miner}, not this one")]
    OtherMiner { site: String, miner: String },
    #[error("expired at {expires_at} (now {now})")]
    Expired { expires_at: u64, now: u64 },
    #[error("issued at {issued_at}, in the future (now {now})")]
    FromTheFuture { issued_at: u64, now: u64 },
    #[error("replayed: sequence {seq} was already used")]
    Replayed { seq: u64 },
    #[error("out of order: sequence {seq} after {last}")]
    OutOfOrder { seq: u64, last: u64 },
}

/// The outcome of checking a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Obey it.
    Accept(Command),
    /// The same command again (an MQTT redelivery): acknowledge, change nothing.
    Duplicate { id: String },
    Reject {
        id: Option<String>,
        reason: Rejection,
    },
}

/// Keys a miner trusts, by key id; a revoked id is refused even if its key is still listed.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: HashMap<String, VerifyingKey>,
    revoked: Vec<String>,
}

/// A public key that is not a valid Ed25519 point.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key {0:?} is not a valid Ed25519 public key")]
pub struct InvalidKey(pub String);

impl TrustedKeys {
    pub fn trust(&mut self, key_id: &str, public_key: &[u8; 32]) -> Result<(), InvalidKey> {
        let key =
            VerifyingKey::from_bytes(public_key).map_err(|_| InvalidKey(key_id.to_string()))?;
        self.keys.insert(key_id.to_string(), key);
        Ok(())
    }

    /// Trusts a key given as 64 hex digits (as in a config file).
    pub fn trust_hex(&mut self, key_id: &str, public_key_hex: &str) -> Result<(), InvalidKey> {
        let bytes = unhex::<32>(public_key_hex).ok_or_else(|| InvalidKey(key_id.to_string()))?;
        self.trust(key_id, &bytes)
    }

    pub fn revoke(&mut self, key_id: &str) {
        self.revoked.push(key_id.to_string());
    }

    /// Whether `signature` over `message` is by the trusted, unrevoked key `key_id`.
    pub fn verify(
        &self,
        key_id: &str,
        message: &[u8],
        signature: &[u8; 64],
    ) -> Result<(), KeyRefusal> {
        if self.revoked.iter().any(|r| r == key_id) {
            return Err(KeyRefusal::Revoked(key_id.to_string()));
        }
        let key = self
            .keys
            .get(key_id)
            .ok_or_else(|| KeyRefusal::Unknown(key_id.to_string()))?;
        key.verify_strict(message, &Signature::from_bytes(signature))
            .map_err(|_| KeyRefusal::BadSignature)
    }
}

/// Why a signature is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefusal {
    #[error("signed by unknown key {0:?}")]
    Unknown(String),
    #[error("signed by revoked key {0:?}")]
    Revoked(String),
    #[error("bad signature")]
    BadSignature,
}

impl From<KeyRefusal> for Rejection {
    fn from(refusal: KeyRefusal) -> Self {
        match refusal {
            KeyRefusal::Unknown(id) => Rejection::UnknownKey(id),
            KeyRefusal::Revoked(id) => Rejection::RevokedKey(id),
            KeyRefusal::BadSignature => Rejection::BadSignature,
        }
    }
}

/// What a miner remembers to check commands: who it is, whom it trusts, and the last sequence
/// number each key used. Persist it (`last_seq`) so a reboot does not reopen old commands.
#[derive(Debug, Clone)]
pub struct CommandVerifier {
    site: Name,
    miner: Name,
    keys: TrustedKeys,
    last: HashMap<String, (u64, String)>,
    recent_ids: VecDeque<String>,
}

impl CommandVerifier {
    pub fn new(site: Name, miner: Name, keys: TrustedKeys) -> Self {
        Self {
            site,
            miner,
            keys,
            last: HashMap::new(),
            recent_ids: VecDeque::new(),
        }
    }

    /// The last sequence number accepted from `key_id`, for persisting.
    pub fn last_seq(&self, key_id: &str) -> Option<u64> {
        self.last.get(key_id).map(|(seq, _)| *seq)
    }

    /// Every key's last accepted (sequence number, command id), for persisting.
    pub fn accepted(&self) -> impl Iterator<Item = (&str, u64, &str)> {
        self.last
            .iter()
            .map(|(key, (seq, id))| (key.as_str(), *seq, id.as_str()))
    }

    /// Restores a persisted (sequence number, command id): after a reboot the last command is
    /// still recognised as a duplicate and everything older is still refused.
    pub fn restore(&mut self, key_id: &str, seq: u64, id: &str) {
        self.last.insert(key_id.to_string(), (seq, id.to_string()));
        if !id.is_empty() && !self.recent_ids.iter().any(|known| known == id) {
            if self.recent_ids.len() == RECENT_IDS {
                self.recent_ids.pop_front();
            }
            self.recent_ids.push_back(id.to_string());
        }
    }

    /// Checks raw bytes from `…/cmd` at time `now` (unix seconds). Every check happens before
    /// anything is remembered, so a rejected command changes nothing.
    pub fn check(&mut self, bytes: &[u8], now: u64) -> Verdict {
        match self.check_inner(bytes, now) {
            Ok(verdict) => verdict,
            Err((id, reason)) => Verdict::Reject { id, reason },
        }
    }

    fn check_inner(
        &mut self,
        bytes: &[u8],
        now: u64,
    ) -> Result<Verdict, (Option<String>, Rejection)> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| (None, Rejection::Malformed(e.to_string())))?;
        // A bare command, without an envelope, is unsigned whatever else it is.
        // Nothing unverified is echoed, not even the id: an ack naming the agent's real command
        // would let anyone who can publish on `…/cmd` fail that command at the agent.
        if value.get("payload").is_none() || value.get("sig").is_none() {
            return Err((None, Rejection::Unsigned));
        }
        let envelope: SignedCommand = serde_json::from_value(value)
            .map_err(|e| (None, Rejection::Malformed(e.to_string())))?;
        if envelope.v != VERSION {
            return Err((None, Rejection::Version(envelope.v)));
        }
        // Key first: an unknown or revoked signer is named even when its signature is garbage.
        let sig = unhex::<64>(&envelope.sig).unwrap_or([0; 64]);
        self.keys
            .verify(&envelope.key_id, envelope.payload.as_bytes(), &sig)
            .map_err(|refusal| (None, refusal.into()))?;
        // Signed by a trusted key from here on: its id may be echoed.
        let claimed_id = serde_json::from_str::<serde_json::Value>(&envelope.payload)
            .ok()
            .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string));
        let command: Command = serde_json::from_str(&envelope.payload)
            .map_err(|e| (claimed_id, Rejection::Malformed(e.to_string())))?;
        let id = Some(command.id.clone());
        if command.v != VERSION {
            return Err((id, Rejection::Version(command.v)));
        }
        if command.site != self.site || command.miner != self.miner {
            return Err((
                id,
                Rejection::OtherMiner {
                    site: command.site.to_string(),
                    miner: command.miner.to_string(),
                },
            ));
        }
        if now >= command.expires_at {
            return Err((
                id,
                Rejection::Expired {
                    expires_at: command.expires_at,
                    now,
                },
            ));
        }
        if command.issued_at > now + MAX_CLOCK_SKEW_S {
            return Err((
                id,
                Rejection::FromTheFuture {
                    issued_at: command.issued_at,
                    now,
                },
            ));
        }
        if let Some((last_seq, last_id)) = self.last.get(&envelope.key_id) {
            if command.seq == *last_seq && command.id == *last_id {
                return Ok(Verdict::Duplicate { id: command.id });
            }
            if command.seq <= *last_seq {
                let reason = if self.recent_ids.contains(&command.id) {
                    Rejection::Replayed { seq: command.seq }
                } else {
                    Rejection::OutOfOrder {
                        seq: command.seq,
                        last: *last_seq,
                    }
                };
                return Err((id, reason));
            }
        }
        self.last
            .insert(envelope.key_id, (command.seq, command.id.clone()));
        if self.recent_ids.len() == RECENT_IDS {
            self.recent_ids.pop_front();
        }
        self.recent_ids.push_back(command.id.clone());
        Ok(Verdict::Accept(command))
    }
}

/// Ed25519 over raw bytes, for checking the library against RFC 8032's vectors.
pub fn sign_bytes(seed: &[u8; 32], message: &[u8]) -> [u8; 64] {
    SigningKey::from_bytes(seed).sign(message).to_bytes()
}
