//! What a miner publishes — its `state`, `telemetry` and acks — signed with the miner's own
//! device key, so that nobody else on the broker can speak for it: a forged "sleeping" state, a
//! ghost miner, an ack that fails the agent's real command.
//!
//! The envelope is the commands' (`SignedCommand`), with the signer's public key (64 hex digits)
//! as its `key_id`: a report names the key that signed it, and the agent compares that with the
//! key it enrolled for the miner. The signature covers the topic and the payload — the bytes
//! `topic`, one zero byte, `payload` — so a report signed for one miner or kind cannot be
//! replayed on another's topic.
//!
//! ```
//! use fleet_proto::report::{DeviceKey, DeviceSigner, open};
//!
//! let miner = DeviceSigner::from_seed(&[9; 32]);
//! let topic = "hashwarden/v1/tx-west/m1/telemetry";
//! let wire = miner.wire(topic, &serde_json::json!({"v": 1, "power_w": 3.5}))?;
//!
//! // The agent enrolled this miner's public key, and opens what arrives on its topic.
//! let enrolled = DeviceKey::from_hex(miner.public_hex())?;
//! let report = open(&wire)?;
//! enrolled.verify(topic, &report)?;
//! let telemetry: serde_json::Value = serde_json::from_str(&report.payload)?;
//! assert_eq!(telemetry["power_w"], 3.5);
//! // The same bytes on another miner's topic do not verify.
//! assert!(enrolled.verify("hashwarden/v1/tx-west/m2/telemetry", &report).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::Serialize;

use crate::command::{EnvelopeError, SignedCommand, VERSION, hex, read_envelope, unhex};

/// A signed report on the wire: the commands' envelope, `key_id` holding the public key.
pub type SignedReport = SignedCommand;

/// The bytes a report's signature covers.
fn signed_bytes(topic: &str, payload: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(topic.len() + 1 + payload.len());
    bytes.extend_from_slice(topic.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(payload.as_bytes());
    bytes
}

/// A miner's signing side: its device key. Lives on the miner only.
#[derive(Clone)]
pub struct DeviceSigner {
    key: SigningKey,
    public_hex: String,
}

impl std::fmt::Debug for DeviceSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key itself.
        f.debug_struct("DeviceSigner")
            .field("public", &self.public_hex)
            .finish_non_exhaustive()
    }
}

impl DeviceSigner {
    /// From a 32-byte Ed25519 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let public_hex = hex(&key.verifying_key().to_bytes());
        Self { key, public_hex }
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The public key as the envelope and the site config write it: 64 hex digits.
    pub fn public_hex(&self) -> &str {
        &self.public_hex
    }

    /// `payload` (a report's JSON, exactly as it will be read) for `topic`, signed.
    pub fn sign(&self, topic: &str, payload: String) -> SignedReport {
        let sig = self.key.sign(&signed_bytes(topic, &payload));
        SignedReport {
            v: VERSION,
            key_id: self.public_hex.clone(),
            payload,
            sig: hex(&sig.to_bytes()),
        }
    }

    /// `report` encoded, signed for `topic`, as the bytes to publish.
    pub fn wire(&self, topic: &str, report: &impl Serialize) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&self.sign(topic, serde_json::to_string(report)?))
    }
}

/// Why a report is not taken as its miner's word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportRefusal {
    #[error("unsigned")]
    Unsigned,
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("unsupported format version {0}")]
    Version(u32),
    #[error("not an Ed25519 public key: {0:?}")]
    BadKey(String),
    #[error("bad signature")]
    BadSignature,
}

/// A miner's public key, as the agent enrols it: checked and decompressed once, so each report
/// costs one signature check and nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKey {
    key: VerifyingKey,
    hex: String,
}

impl DeviceKey {
    /// From 64 hex digits (a config file, an envelope's `key_id`, the store).
    pub fn from_hex(text: &str) -> Result<Self, ReportRefusal> {
        let bad = || ReportRefusal::BadKey(text.chars().take(80).collect());
        let bytes = unhex::<32>(&text.to_ascii_lowercase()).ok_or_else(bad)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad())?;
        // Weak keys (small order) would let a signature verify for many messages.
        if key.is_weak() {
            return Err(bad());
        }
        Ok(Self {
            key,
            hex: hex(&bytes),
        })
    }

    /// 64 lowercase hex digits.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Whether `report` arrived on `topic` signed by this key (and names this key).
    pub fn verify(&self, topic: &str, report: &SignedReport) -> Result<(), ReportRefusal> {
        let sig = unhex::<64>(&report.sig).ok_or(ReportRefusal::BadSignature)?;
        self.key
            .verify_strict(
                &signed_bytes(topic, &report.payload),
                &Signature::from_bytes(&sig),
            )
            .map_err(|_| ReportRefusal::BadSignature)
    }
}

/// Reads the envelope off the wire (nothing verified yet). A bare report, without one, is
/// `Unsigned`: what a miner whose firmware predates device keys sends.
pub fn open(bytes: &[u8]) -> Result<SignedReport, ReportRefusal> {
    read_envelope(bytes).map_err(|e| match e {
        EnvelopeError::Unsigned => ReportRefusal::Unsigned,
        EnvelopeError::Malformed(reason) => ReportRefusal::Malformed(reason),
        EnvelopeError::Version(v) => ReportRefusal::Version(v),
    })
}

/// Checks many reports at once with Ed25519 batch verification: about half the cost of one by
/// one when all are good. `false` when any is bad — then check them one by one to find which.
pub fn verify_all(reports: &[(&str, &SignedReport, &DeviceKey)]) -> bool {
    let mut messages = Vec::with_capacity(reports.len());
    let mut signatures = Vec::with_capacity(reports.len());
    let mut keys = Vec::with_capacity(reports.len());
    for (topic, report, key) in reports {
        let Some(sig) = unhex::<64>(&report.sig) else {
            return false;
        };
        messages.push(signed_bytes(topic, &report.payload));
        signatures.push(Signature::from_bytes(&sig));
        keys.push(key.key);
    }
    let messages: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
}

/// A report's envelope, and whether its signature is good under the key it names. Who that key
/// may speak for is the reader's decision (the agent's enrolment); this is the arithmetic, which
/// can run anywhere — on another thread than the one that decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub envelope: SignedReport,
    /// Signed by the key in `envelope.key_id`, over this topic and payload.
    pub verified: bool,
}

/// Parses and checks one report that arrived on `topic`.
pub fn check(topic: &str, bytes: &[u8]) -> Result<Checked, ReportRefusal> {
    let envelope = open(bytes)?;
    let key = DeviceKey::from_hex(&envelope.key_id)?;
    let verified = key.verify(topic, &envelope).is_ok();
    Ok(Checked { envelope, verified })
}

/// Public keys already decompressed, by their hex: a point decompression costs about as much as
/// a third of a verification. Bounded: emptied when full, so a flood of made-up keys costs time,
/// not memory.
#[derive(Debug, Clone)]
pub struct KeyCache {
    keys: HashMap<String, DeviceKey>,
    max: usize,
}

impl KeyCache {
    pub fn new(max: usize) -> Self {
        Self {
            keys: HashMap::new(),
            max,
        }
    }

    fn get(&mut self, hex: &str) -> Result<DeviceKey, ReportRefusal> {
        if let Some(key) = self.keys.get(hex) {
            return Ok(key.clone());
        }
        let key = DeviceKey::from_hex(hex)?;
        if self.keys.len() >= self.max {
            self.keys.clear();
        }
        self.keys.insert(hex.to_string(), key.clone());
        Ok(key)
    }
}

/// [`check`] for many reports, each `(topic, bytes)`, results in the same order and the same as
/// one by one: the good envelopes are verified together in one batch, and only when that batch
/// fails are they verified one by one to find the bad ones.
pub fn check_many(
    reports: &[(&str, &[u8])],
    keys: &mut KeyCache,
) -> Vec<Result<Checked, ReportRefusal>> {
    let mut results: Vec<Result<(SignedReport, DeviceKey), ReportRefusal>> = reports
        .iter()
        .map(|(_, bytes)| {
            let envelope = open(bytes)?;
            let key = keys.get(&envelope.key_id)?;
            Ok((envelope, key))
        })
        .collect();
    let batch: Vec<(&str, &SignedReport, &DeviceKey)> = reports
        .iter()
        .zip(&results)
        .filter_map(|((topic, _), result)| {
            let (envelope, key) = result.as_ref().ok()?;
            Some((*topic, envelope, key))
        })
        .collect();
    let all_good = !batch.is_empty() && verify_all(&batch);
    reports
        .iter()
        .zip(results.drain(..))
        .map(|((topic, _), result)| {
            let (envelope, key) = result?;
            let verified = all_good || key.verify(topic, &envelope).is_ok();
            Ok(Checked { envelope, verified })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "hashwarden/v1/tx-west/m1/state";

    fn signed() -> (DeviceSigner, SignedReport) {
        let miner = DeviceSigner::from_seed(&[3; 32]);
        let report = miner.sign(TOPIC, r#"{"v":1,"mode":"mining"}"#.into());
        (miner, report)
    }

    #[test]
    fn a_report_verifies_under_its_own_key_on_its_own_topic_only() {
        let (miner, report) = signed();
        let key = DeviceKey::from_hex(miner.public_hex()).expect("a key");
        assert_eq!(report.key_id, miner.public_hex());
        assert_eq!(key.verify(TOPIC, &report), Ok(()));
        let other =
            DeviceKey::from_hex(DeviceSigner::from_seed(&[4; 32]).public_hex()).expect("a key");
        assert_eq!(
            other.verify(TOPIC, &report),
            Err(ReportRefusal::BadSignature)
        );
        for elsewhere in [
            "hashwarden/v1/tx-west/m2/state",
            "hashwarden/v1/tx-west/m1/telemetry",
            "hashwarden/v1/tx-east/m1/state",
        ] {
            assert_eq!(
                key.verify(elsewhere, &report),
                Err(ReportRefusal::BadSignature),
                "{elsewhere}"
            );
        }
        let mut altered = report.clone();
        altered.payload = r#"{"v":1,"mode":"sleeping"}"#.into();
        assert_eq!(
            key.verify(TOPIC, &altered),
            Err(ReportRefusal::BadSignature)
        );
    }

    #[test]
    fn the_signature_is_ed25519_over_topic_nul_payload() {
        // Checked with the RFC 8032 signer (`command::sign_bytes`) over the documented bytes,
        // so a miner written in another language can sign what the agent verifies.
        let (_, report) = signed();
        let mut message = TOPIC.as_bytes().to_vec();
        message.push(0);
        message.extend_from_slice(report.payload.as_bytes());
        assert_eq!(
            report.sig,
            hex(&crate::command::sign_bytes(&[3; 32], &message))
        );
    }

    #[test]
    fn bare_and_broken_envelopes_are_told_apart() {
        assert_eq!(
            open(br#"{"v":1,"mode":"mining"}"#),
            Err(ReportRefusal::Unsigned)
        );
        assert!(matches!(
            open(b"\xff\x00garbage"),
            Err(ReportRefusal::Malformed(_))
        ));
        assert!(matches!(
            open(br#"{"v":1,"key_id":"k","sig":"00"}"#),
            Err(ReportRefusal::Malformed(_))
        ));
        let (_, mut report) = signed();
        report.v = 2;
        let wire = serde_json::to_vec(&report).expect("encodes");
        assert_eq!(open(&wire), Err(ReportRefusal::Version(2)));
    }

    #[test]
    fn keys_that_are_not_keys_are_refused() {
        for text in [
            "",
            "zz",
            &"0".repeat(63),
            // The identity point: small order, a weak key.
            &format!("01{}", "0".repeat(62)),
        ] {
            assert!(DeviceKey::from_hex(text).is_err(), "{text:?}");
        }
        let miner = DeviceSigner::from_seed(&[3; 32]);
        let upper = miner.public_hex().to_ascii_uppercase();
        assert_eq!(
            DeviceKey::from_hex(&upper)
                .expect("case does not matter")
                .hex(),
            miner.public_hex()
        );
    }

    #[test]
    fn many_at_once_is_the_same_as_one_by_one() {
        let miners: Vec<DeviceSigner> = (0..10u8)
            .map(|i| DeviceSigner::from_seed(&[i + 40; 32]))
            .collect();
        let topics: Vec<String> = (0..10)
            .map(|i| format!("hashwarden/v1/s/m{i}/state"))
            .collect();
        let mut wires: Vec<Vec<u8>> = miners
            .iter()
            .zip(&topics)
            .map(|(m, t)| m.wire(t, &serde_json::json!({"t": t})).expect("encodes"))
            .collect();
        // One altered, one garbage, one bare report, one naming a key that is no key.
        let mut altered: SignedReport = serde_json::from_slice(&wires[2]).expect("parses");
        altered.payload = "{}".into();
        wires[2] = serde_json::to_vec(&altered).expect("encodes");
        wires[4] = b"\x01garbage".to_vec();
        wires[6] = br#"{"v":1}"#.to_vec();
        let mut nokey: SignedReport = serde_json::from_slice(&wires[8]).expect("parses");
        nokey.key_id = "00".repeat(32);
        wires[8] = serde_json::to_vec(&nokey).expect("encodes");
        let items: Vec<(&str, &[u8])> = topics
            .iter()
            .zip(&wires)
            .map(|(t, w)| (t.as_str(), w.as_slice()))
            .collect();
        let one_by_one: Vec<_> = items.iter().map(|(t, w)| check(t, w)).collect();
        let mut cache = KeyCache::new(4);
        assert_eq!(check_many(&items, &mut cache), one_by_one);
        let verified: Vec<usize> = one_by_one
            .iter()
            .enumerate()
            .filter(|(_, r)| r.as_ref().is_ok_and(|c| c.verified))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(verified, [0, 1, 3, 5, 7, 9]);
        assert!(matches!(
            one_by_one[2],
            Ok(Checked {
                verified: false,
                ..
            })
        ));
        // All good: one batch, the same answers.
        let good: Vec<(&str, &[u8])> = [0, 1, 3].iter().map(|&i| items[i]).collect();
        assert!(
            check_many(&good, &mut cache)
                .iter()
                .all(|r| r.as_ref().is_ok_and(|c| c.verified))
        );
    }

    #[test]
    fn a_batch_verifies_only_when_every_report_does() {
        let miners: Vec<DeviceSigner> = (0..8u8)
            .map(|i| DeviceSigner::from_seed(&[i; 32]))
            .collect();
        let keys: Vec<DeviceKey> = miners
            .iter()
            .map(|m| DeviceKey::from_hex(m.public_hex()).expect("a key"))
            .collect();
        let topics: Vec<String> = (0..8)
            .map(|i| format!("hashwarden/v1/s/m{i}/telemetry"))
            .collect();
        let reports: Vec<SignedReport> = miners
            .iter()
            .zip(&topics)
            .map(|(m, t)| m.sign(t, format!(r#"{{"v":1,"n":{}}}"#, t.len())))
            .collect();
        let batch = |reports: &[SignedReport]| {
            let items: Vec<(&str, &SignedReport, &DeviceKey)> = topics
                .iter()
                .zip(reports)
                .zip(&keys)
                .map(|((t, r), k)| (t.as_str(), r, k))
                .collect();
            verify_all(&items)
        };
        assert!(batch(&reports));
        let mut one_bad = reports.clone();
        one_bad[5].payload = r#"{"v":1,"n":0}"#.into();
        assert!(!batch(&one_bad));
    }
}
