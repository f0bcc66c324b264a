//! Site inputs signed by a feed key: a market reading, a power price or a grid signal, in the
//! commands' envelope and under the same rules (a key the site trusts, the exact bytes signed,
//! an expiry, a bounded clock skew, a sequence number that only grows). Without this, anyone who
//! can publish on the broker can move the site's hashprice or cap it at 0 W.
//!
//! ```
//! use fleet_proto::feed::{Feed, FeedKind, FeedVerifier};
//! use fleet_proto::{CommandSigner, Name, TrustedKeys};
//!
//! let feed_key = CommandSigner::from_seed("prices", &[5; 32]);
//! let mut keys = TrustedKeys::default();
//! keys.trust("prices", &feed_key.public_key())?;
//! let mut agent = FeedVerifier::new(Name::new("tx-west")?, keys);
//!
//! let reading = serde_json::json!({"v": 1, "at": 1_767_225_600u64, "usd_per_kwh": 0.05});
//! let feed = Feed::new(Name::new("tx-west")?, FeedKind::Power, 1_767_225_600, 900, 1, reading);
//! let wire = serde_json::to_vec(&feed.sign(&feed_key)?)?;
//! let opened = agent.check(&wire, FeedKind::Power, 1_767_225_601)?;
//! assert_eq!(opened.map(|f| f.reading["usd_per_kwh"].clone()), Some(0.05.into()));
//! // The same bytes again (a retained message redelivered) are nothing new.
//! assert_eq!(agent.check(&wire, FeedKind::Power, 1_767_225_602)?, None);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::command::{
    CommandSigner, EnvelopeError, KeyRefusal, MAX_CLOCK_SKEW_S, SignedCommand, TrustedKeys,
    VERSION, read_envelope, unhex,
};
use crate::topic::Name;

/// The envelope is a command's: key id, the payload's exact JSON, its Ed25519 signature.
pub type SignedFeed = SignedCommand;

/// Which input a feed message carries, and so the topic it must arrive on: a signed market
/// reading re-published on `…/grid` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedKind {
    Market,
    Power,
    Grid,
    /// The agent is there: signed with its command key, so a miner's failsafe counts only the
    /// agent's own word (`topic::agent_heartbeat`).
    Heartbeat,
}

impl FeedKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedKind::Market => "market",
            FeedKind::Power => "power",
            FeedKind::Grid => "grid",
            FeedKind::Heartbeat => "heartbeat",
        }
    }

    /// The topic a message of this kind travels on for `site`.
    pub fn topic(self, site: &Name) -> String {
        match self {
            FeedKind::Market => crate::topic::market(site),
            FeedKind::Power => crate::topic::power(site),
            FeedKind::Grid => crate::topic::grid(site),
            FeedKind::Heartbeat => crate::topic::agent_heartbeat(site),
        }
    }
}

/// What a feed key signs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feed {
    pub v: u32,
    pub site: Name,
    pub kind: FeedKind,
    /// Unix seconds.
    pub issued_at: u64,
    pub expires_at: u64,
    /// Strictly increasing per key and kind: a captured reading replayed later is refused.
    pub seq: u64,
    /// The reading as the unsigned topic takes it (`Market`, `PowerPrice` or `GridSignal`).
    pub reading: serde_json::Value,
}

impl Feed {
    /// A reading for `site`, issued at `now`, good for `ttl_s`.
    pub fn new(
        site: Name,
        kind: FeedKind,
        now: u64,
        ttl_s: u64,
        seq: u64,
        reading: serde_json::Value,
    ) -> Self {
        Self {
            v: VERSION,
            site,
            kind,
            issued_at: now,
            expires_at: now.saturating_add(ttl_s),
            seq,
            reading,
        }
    }

    pub fn sign(&self, key: &CommandSigner) -> Result<SignedFeed, serde_json::Error> {
        key.sign_json(self)
    }
}

/// A feed's signing side: its key, its site, and a sequence that only grows — from the clock in
/// milliseconds at start, so a restarted feed is still above every number it used (nobody sends
/// a thousand readings a second).
pub struct FeedSigner {
    site: Name,
    key: CommandSigner,
    next_seq: u64,
}

impl FeedSigner {
    pub fn new(site: Name, key: CommandSigner) -> Self {
        let next_seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64);
        Self {
            site,
            key,
            next_seq,
        }
    }

    /// `reading` as a `kind` message issued at `now`, good for `ttl_s`, signed.
    pub fn sign(
        &mut self,
        kind: FeedKind,
        reading: serde_json::Value,
        now: u64,
        ttl_s: u64,
    ) -> Result<SignedFeed, serde_json::Error> {
        let seq = self.next_seq;
        self.next_seq += 1;
        Feed::new(self.site.clone(), kind, now, ttl_s, seq, reading).sign(&self.key)
    }

    /// The same, as the bytes to publish.
    pub fn wire(
        &mut self,
        kind: FeedKind,
        reading: serde_json::Value,
        now: u64,
        ttl_s: u64,
    ) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&self.sign(kind, reading, now, ttl_s)?)
    }
}

impl std::fmt::Debug for FeedSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedSigner")
            .field("site", &self.site)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Why a feed message is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedRefusal {
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("unsigned, and only signed messages are taken here")]
    Unsigned,
    #[error("unsupported format version {0}")]
    Version(u32),
    #[error(transparent)]
    Key(#[from] KeyRefusal),
    #[error("for site {0}, not this one")]
    OtherSite(String),
    #[error("a {signed} reading on the {topic} topic")]
    WrongTopic { signed: String, topic: String },
    #[error("expired at {expires_at} (now {now})")]
    Expired { expires_at: u64, now: u64 },
    #[error("issued at {issued_at}, in the future (now {now})")]
    FromTheFuture { issued_at: u64, now: u64 },
    #[error("replayed: sequence {seq}, after {last} from this key")]
    Replayed { seq: u64, last: u64 },
}

/// What the agent remembers to check feed messages: its site, the feed keys it trusts, and the
/// last sequence number each key used for each kind.
#[derive(Debug, Clone)]
pub struct FeedVerifier {
    site: Name,
    keys: TrustedKeys,
    last: HashMap<(String, FeedKind), u64>,
}

impl FeedVerifier {
    pub fn new(site: Name, keys: TrustedKeys) -> Self {
        Self {
            site,
            keys,
            last: HashMap::new(),
        }
    }

    /// Checks raw bytes that arrived on the `topic` feed topic at `now`. `Ok(None)` for the
    /// reading already taken (the same sequence number again: a retained message redelivered
    /// after a reconnect). Nothing is remembered unless the reading is taken.
    pub fn check(
        &mut self,
        bytes: &[u8],
        topic: FeedKind,
        now: u64,
    ) -> Result<Option<Feed>, FeedRefusal> {
        let envelope: SignedFeed = read_envelope(bytes).map_err(|e| match e {
            EnvelopeError::Unsigned => FeedRefusal::Unsigned,
            EnvelopeError::Malformed(reason) => FeedRefusal::Malformed(reason),
            EnvelopeError::Version(v) => FeedRefusal::Version(v),
        })?;
        let sig = unhex::<64>(&envelope.sig).unwrap_or([0; 64]);
        self.keys
            .verify(&envelope.key_id, envelope.payload.as_bytes(), &sig)?;
        let feed: Feed = serde_json::from_str(&envelope.payload)
            .map_err(|e| FeedRefusal::Malformed(e.to_string()))?;
        if feed.v != VERSION {
            return Err(FeedRefusal::Version(feed.v));
        }
        if feed.site != self.site {
            return Err(FeedRefusal::OtherSite(feed.site.to_string()));
        }
        if feed.kind != topic {
            return Err(FeedRefusal::WrongTopic {
                signed: feed.kind.as_str().into(),
                topic: topic.as_str().into(),
            });
        }
        if now >= feed.expires_at {
            return Err(FeedRefusal::Expired {
                expires_at: feed.expires_at,
                now,
            });
        }
        if feed.issued_at > now.saturating_add(MAX_CLOCK_SKEW_S) {
            return Err(FeedRefusal::FromTheFuture {
                issued_at: feed.issued_at,
                now,
            });
        }
        let slot = (envelope.key_id, feed.kind);
        match self.last.get(&slot) {
            Some(&last) if feed.seq == last => return Ok(None),
            Some(&last) if feed.seq < last => {
                return Err(FeedRefusal::Replayed {
                    seq: feed.seq,
                    last,
                });
            }
            _ => {}
        }
        self.last.insert(slot, feed.seq);
        Ok(Some(feed))
    }
}

#[cfg(test)]
mod tests;
