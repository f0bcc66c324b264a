//! Which miners the agent listens to: each miner's device key, enrolled from the site config
//! (`[[machines]] public_key`) or, with `[agent] enrol = "first-seen"`, from its first signed
//! report. After that only reports signed by that key are its word; anything else on its topics
//! is refused and counted. Miners the agent does not know are held, a few at most
//! (`[agent] max_unenrolled`), so that the operator can see them and enrol them — and a client
//! inventing miners on the broker cannot grow the agent.
//!
//! Pure bookkeeping: no I/O. The agent stores what changes (`Enrolment::take_new`).

use std::collections::{BTreeMap, HashMap};

use fleet_proto::report::{self, DeviceKey, ReportRefusal};
use serde::{Deserialize, Serialize};

/// How a miner the config does not name gets enrolled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnrolMode {
    /// Only the keys in `[[machines]] public_key`.
    #[default]
    Config,
    /// Also a miner's key on its first signed report (trust on first use, like SSH's).
    FirstSeen,
}

/// Unknown miners held for the operator to see, unless the site says.
pub const DEFAULT_MAX_UNENROLLED: usize = 16;

/// Where a miner's key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum How {
    Config,
    FirstSeen,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::Config => "config",
            How::FirstSeen => "first-seen",
        }
    }
}

/// A miner the agent listens to.
#[derive(Debug, Clone)]
struct Enrolled {
    key: DeviceKey,
    how: How,
}

/// A miner heard of but not listened to, as `hashwarden enrolment` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unenrolled {
    pub miner: String,
    pub first_seen: u64,
    pub last_seen: u64,
    /// The key it signs with, when it signs: what to put in `[[machines]] public_key`.
    pub public_key: Option<String>,
    /// Why it is not listened to, in words.
    pub why: String,
}

/// A key enrolled by first sight, for the store and the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEnrolment {
    pub miner: String,
    pub public_key: String,
    pub at: u64,
}

/// What became of a report.
#[derive(Debug, Clone, PartialEq)]
pub enum Opened {
    /// Its miner's word: the payload to read.
    Report(String),
    /// Its miner's first word: the key is enrolled from now on; `status` is what the miner's
    /// `…/status` said before (held while it was unknown).
    Enrolled {
        payload: String,
        status: Option<bool>,
    },
}

/// Why a report is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{miner}: {source}")]
    Envelope {
        miner: String,
        source: ReportRefusal,
    },
    #[error("{miner}: signed by key {found}, not by the one enrolled ({enrolled})")]
    OtherKey {
        miner: String,
        found: String,
        enrolled: String,
    },
    #[error("{miner}: key {key} is enrolled already, as {owner}")]
    KeyTaken {
        miner: String,
        key: String,
        owner: String,
    },
    /// Held for the operator; not an attack as such (a new machine, an old firmware). `first`
    /// for the first report from it: worth a log line, where every later one is only counted.
    #[error("{miner}: not enrolled ({why})")]
    Unenrolled {
        miner: String,
        why: String,
        first: bool,
    },
    /// More unknown miners than `max_unenrolled`: not even held. `first` for the first since
    /// the book filled.
    #[error("{miner}: not enrolled, and {max} unknown miners are held already")]
    Full {
        miner: String,
        max: usize,
        first: bool,
    },
}

/// The agent's enrolment book.
#[derive(Debug, Clone)]
pub struct Enrolment {
    mode: EnrolMode,
    enrolled: HashMap<String, Enrolled>,
    /// Key (hex) → miner, so one key cannot speak for two names.
    owners: HashMap<String, String>,
    unenrolled: BTreeMap<String, Unenrolled>,
    /// What unknown miners' `…/status` said, kept for when they enrol.
    status: HashMap<String, bool>,
    max_unenrolled: usize,
    /// Whether a refusal for a full book was reported since it last had room.
    full_reported: bool,
    new: Vec<NewEnrolment>,
}

/// A key in the config or the store that cannot be enrolled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{miner}: {source}")]
pub struct BadKey {
    pub miner: String,
    pub source: ReportRefusal,
}

impl Enrolment {
    pub fn new(mode: EnrolMode, max_unenrolled: usize) -> Self {
        Self {
            mode,
            enrolled: HashMap::new(),
            owners: HashMap::new(),
            unenrolled: BTreeMap::new(),
            status: HashMap::new(),
            max_unenrolled,
            full_reported: false,
            new: Vec::new(),
        }
    }

    /// Enrols `miner`'s key from the config or the store. The config's word is the last: a key
    /// given there replaces one enrolled at first sight (a machine reflashed or replaced).
    pub fn enrol(&mut self, miner: &str, public_key: &str, how: How) -> Result<(), BadKey> {
        let key = DeviceKey::from_hex(public_key).map_err(|source| BadKey {
            miner: miner.to_string(),
            source,
        })?;
        let configured = |book: &Self, name: &str| {
            book.enrolled
                .get(name)
                .is_some_and(|enrolled| enrolled.how == How::Config)
        };
        // A key taken at first sight never displaces the config's word, for this name or for
        // the name the config gives that key.
        let owner_in_config = self
            .owners
            .get(key.hex())
            .is_some_and(|owner| owner != miner && configured(self, owner));
        if how == How::FirstSeen && (configured(self, miner) || owner_in_config) {
            return Ok(());
        }
        if let Some(old) = self.enrolled.get(miner) {
            self.owners.remove(old.key.hex());
        }
        if let Some(previous_owner) = self.owners.insert(key.hex().to_string(), miner.to_string())
            && previous_owner != miner
        {
            self.enrolled.remove(&previous_owner);
        }
        self.enrolled
            .insert(miner.to_string(), Enrolled { key, how });
        self.unenrolled.remove(miner);
        Ok(())
    }

    /// How `miner` was enrolled, if it is.
    pub fn how(&self, miner: &str) -> Option<How> {
        self.enrolled.get(miner).map(|e| e.how)
    }

    pub fn enrolled_count(&self) -> usize {
        self.enrolled.len()
    }

    /// The unknown miners held, by name.
    pub fn unenrolled(&self) -> impl Iterator<Item = &Unenrolled> {
        self.unenrolled.values()
    }

    /// Keys enrolled at first sight since the last call, for the store and the audit log.
    pub fn take_new(&mut self) -> Vec<NewEnrolment> {
        std::mem::take(&mut self.new)
    }

    /// A miner's `…/status` (`online`/`offline`, unsigned: the broker publishes the will).
    /// `true` when the fleet view should take it; an unknown miner's is held for when it
    /// enrols, within the same bound as the miners themselves.
    pub fn status(&mut self, miner: &str, online: bool) -> bool {
        if self.enrolled.contains_key(miner) {
            return true;
        }
        if self.status.contains_key(miner) || self.status.len() < self.max_unenrolled {
            self.status.insert(miner.to_string(), online);
        }
        false
    }

    /// A report that arrived on `topic` for `miner` at `now`: its payload when it is the
    /// miner's word. Checks the signature itself; [`Enrolment::open_checked`] takes one checked
    /// elsewhere.
    pub fn open(
        &mut self,
        miner: &str,
        topic: &str,
        bytes: &[u8],
        now: u64,
    ) -> Result<Opened, Refused> {
        self.open_checked(miner, report::check(topic, bytes), now)
    }

    /// A report whose envelope and signature were checked already (`report::check`, or
    /// `report::check_many` on the agent's verifier thread): the decision is only whose word it
    /// is.
    pub fn open_checked(
        &mut self,
        miner: &str,
        checked: Result<report::Checked, ReportRefusal>,
        now: u64,
    ) -> Result<Opened, Refused> {
        let refused = |source| Refused::Envelope {
            miner: miner.to_string(),
            source,
        };
        let checked = match checked {
            Ok(checked) => checked,
            Err(ReportRefusal::Unsigned) if !self.enrolled.contains_key(miner) => {
                return Err(self.hold(miner, None, "it does not sign its reports", now));
            }
            Err(source) => return Err(refused(source)),
        };
        let envelope = checked.envelope;
        if let Some(enrolled) = self.enrolled.get(miner) {
            if !envelope.key_id.eq_ignore_ascii_case(enrolled.key.hex()) {
                return Err(Refused::OtherKey {
                    miner: miner.to_string(),
                    found: short(&envelope.key_id),
                    enrolled: short(enrolled.key.hex()),
                });
            }
            if !checked.verified {
                return Err(refused(ReportRefusal::BadSignature));
            }
            return Ok(Opened::Report(envelope.payload));
        }
        // Not enrolled: the key must at least have signed this report, or the operator would be
        // shown (and asked to trust) a key nobody holds.
        if !checked.verified {
            return Err(refused(ReportRefusal::BadSignature));
        }
        let key = DeviceKey::from_hex(&envelope.key_id).map_err(refused)?;
        if let Some(owner) = self.owners.get(key.hex()) {
            return Err(Refused::KeyTaken {
                miner: miner.to_string(),
                key: short(key.hex()),
                owner: owner.clone(),
            });
        }
        if self.mode == EnrolMode::Config {
            let why = "its key is not in the site config ([[machines]] public_key)";
            return Err(self.hold(miner, Some(key.hex()), why, now));
        }
        let public_key = key.hex().to_string();
        self.owners.insert(public_key.clone(), miner.to_string());
        self.enrolled.insert(
            miner.to_string(),
            Enrolled {
                key,
                how: How::FirstSeen,
            },
        );
        self.unenrolled.remove(miner);
        self.new.push(NewEnrolment {
            miner: miner.to_string(),
            public_key,
            at: now,
        });
        Ok(Opened::Enrolled {
            payload: envelope.payload,
            status: self.status.remove(miner),
        })
    }

    /// Notes an unknown miner for the operator, within the bound.
    fn hold(&mut self, miner: &str, key: Option<&str>, why: &str, now: u64) -> Refused {
        if let Some(held) = self.unenrolled.get_mut(miner) {
            held.last_seen = now;
            held.public_key = key.map(str::to_string);
            held.why = why.to_string();
            return Refused::Unenrolled {
                miner: miner.to_string(),
                why: why.to_string(),
                first: false,
            };
        }
        if self.unenrolled.len() >= self.max_unenrolled {
            let first = !self.full_reported;
            self.full_reported = true;
            return Refused::Full {
                miner: miner.to_string(),
                max: self.max_unenrolled,
                first,
            };
        }
        self.full_reported = false;
        self.unenrolled.insert(
            miner.to_string(),
            Unenrolled {
                miner: miner.to_string(),
                first_seen: now,
                last_seen: now,
                public_key: key.map(str::to_string),
                why: why.to_string(),
            },
        );
        Refused::Unenrolled {
            miner: miner.to_string(),
            why: why.to_string(),
            first: true,
        }
    }
}

/// A key's first 16 hex digits: enough to tell keys apart in a log line.
fn short(key: &str) -> String {
    key.chars().take(16).collect()
}

#[cfg(test)]
mod tests;
