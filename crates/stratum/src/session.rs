//! One connection to one pool, sans-IO: lines in, lines out, events for the miner.

use std::collections::{HashMap, VecDeque};

use bm13xx::BlockHeader;
use serde_json::{Value, json};

use crate::PoolError;
use crate::work::{Notify, hex_bytes};

/// The longest line accepted from a pool; a pool that sends more is dropped.
pub const MAX_LINE: usize = 256 * 1024;
/// Jobs kept for late shares; older ones make a share stale.
const KEPT_JOBS: usize = 16;

/// What a request was, to make sense of its response.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Configure,
    Subscribe,
    Authorize,
    Submit { job_id: String },
}

/// Where the handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Handshake,
    /// Subscribed and authorized: work flows.
    Ready,
}

/// Something the miner should know.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// New work; `clean` means earlier jobs are void.
    Work {
        job_id: String,
        clean: bool,
    },
    Difficulty(f64),
    VersionMask(u32),
    Authorized,
    ShareResult {
        job_id: String,
        accepted: bool,
        reason: Option<String>,
    },
}

/// Accepted / rejected / stale shares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Accounting {
    pub accepted: u64,
    pub rejected: u64,
    /// Found for a job the pool had already voided; not sent.
    pub stale: u64,
}

/// Work ready for the chips: a header for one extranonce2, and what the pool wants.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolWork {
    pub job_id: String,
    pub extranonce2: Vec<u8>,
    pub header: BlockHeader,
    pub version_mask: u32,
    pub difficulty: f64,
}

/// The session with one pool.
#[derive(Debug, Clone)]
pub struct Session {
    user: String,
    password: String,
    /// The version bits we ask to roll (BIP320).
    wanted_mask: u32,
    phase: Phase,
    next_id: u64,
    pending: HashMap<u64, Pending>,
    subscribed: bool,
    authorized: bool,
    extranonce1: Vec<u8>,
    extranonce2_size: usize,
    extranonce2_counter: u64,
    difficulty: f64,
    version_mask: u32,
    jobs: VecDeque<Notify>,
    accounting: Accounting,
}

impl Session {
    pub fn new(user: &str, password: &str) -> Self {
        Self {
            user: user.to_string(),
            password: password.to_string(),
            wanted_mask: 0x1FFF_E000,
            phase: Phase::Handshake,
            next_id: 1,
            pending: HashMap::new(),
            subscribed: false,
            authorized: false,
            extranonce1: Vec::new(),
            extranonce2_size: 0,
            extranonce2_counter: 0,
            difficulty: 1.0,
            version_mask: 0,
            jobs: VecDeque::new(),
            accounting: Accounting::default(),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn accounting(&self) -> Accounting {
        self.accounting
    }

    pub fn difficulty(&self) -> f64 {
        self.difficulty
    }

    fn request(&mut self, method: &str, params: Value, pending: Pending) -> String {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, pending);
        json!({"id": id, "method": method, "params": params}).to_string()
    }

    /// The opening lines: version rolling, subscribe, authorize.
    pub fn start(&mut self) -> Vec<String> {
        let mask = format!("{:08x}", self.wanted_mask);
        let (user, password) = (self.user.clone(), self.password.clone());
        vec![
            self.request(
                "mining.configure",
                json!([["version-rolling"], {"version-rolling.mask": mask, "version-rolling.min-bit-count": 2}]),
                Pending::Configure,
            ),
            self.request("mining.subscribe", json!(["hashwarden/0.1"]), Pending::Subscribe),
            self.request("mining.authorize", json!([user, password]), Pending::Authorize),
        ]
    }

    /// One line from the pool. An error means the pool broke the protocol: drop it.
    pub fn handle_line(&mut self, line: &str) -> Result<Vec<Event>, PoolError> {
        if line.len() > MAX_LINE {
            return Err(PoolError::Malformed(format!(
                "line of {} bytes",
                line.len()
            )));
        }
        let message: Value = serde_json::from_str(line)
            .map_err(|e| PoolError::Malformed(format!("not JSON: {e}")))?;
        if let Some(method) = message.get("method").and_then(Value::as_str) {
            let params = message.get("params").cloned().unwrap_or(Value::Null);
            return self.notification(method, &params);
        }
        let id = message
            .get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| PoolError::Malformed("a response without a numeric id".into()))?;
        let Some(pending) = self.pending.remove(&id) else {
            // A response to nothing we asked: harmless, ignore it.
            return Ok(Vec::new());
        };
        let result = message.get("result").cloned().unwrap_or(Value::Null);
        let error = message
            .get("error")
            .filter(|e| !e.is_null())
            .map(|e| e.to_string());
        self.response(pending, &result, error)
    }

    fn notification(&mut self, method: &str, params: &Value) -> Result<Vec<Event>, PoolError> {
        match method {
            "mining.notify" => {
                let notify = Notify::from_params(params)?;
                let event = Event::Work {
                    job_id: notify.job_id.clone(),
                    clean: notify.clean_jobs,
                };
                if notify.clean_jobs {
                    self.jobs.clear();
                }
                if self.jobs.len() == KEPT_JOBS {
                    self.jobs.pop_front();
                }
                self.jobs.push_back(notify);
                Ok(vec![event])
            }
            "mining.set_difficulty" => {
                let difficulty = params
                    .get(0)
                    .and_then(Value::as_f64)
                    .filter(|d| d.is_finite() && *d > 0.0)
                    .ok_or_else(|| {
                        PoolError::Malformed("set_difficulty needs a positive number".into())
                    })?;
                self.difficulty = difficulty;
                Ok(vec![Event::Difficulty(difficulty)])
            }
            "mining.set_version_mask" => {
                let mask = params
                    .get(0)
                    .map(|m| hex_bytes(m, "version mask", 4))
                    .transpose()?
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(u32::from_be_bytes)
                    .ok_or_else(|| {
                        PoolError::Malformed("set_version_mask needs a 4-byte hex mask".into())
                    })?;
                self.version_mask = mask & self.wanted_mask;
                Ok(vec![Event::VersionMask(self.version_mask)])
            }
            "mining.set_extranonce" => {
                self.set_extranonce(params.get(0), params.get(1))?;
                Ok(Vec::new())
            }
            // Pools send others (client.show_message, client.reconnect…): not errors.
            _ => Ok(Vec::new()),
        }
    }

    fn set_extranonce(
        &mut self,
        extranonce1: Option<&Value>,
        size: Option<&Value>,
    ) -> Result<(), PoolError> {
        let extranonce1 = extranonce1
            .map(|e| hex_bytes(e, "extranonce1", 32))
            .transpose()?
            .ok_or_else(|| PoolError::Malformed("missing extranonce1".into()))?;
        let size = size
            .and_then(Value::as_u64)
            .filter(|s| (1..=16).contains(s))
            .ok_or_else(|| PoolError::Malformed("extranonce2 size must be 1 to 16".into()))?;
        self.extranonce1 = extranonce1;
        self.extranonce2_size = size as usize;
        self.extranonce2_counter = 0;
        Ok(())
    }

    fn response(
        &mut self,
        pending: Pending,
        result: &Value,
        error: Option<String>,
    ) -> Result<Vec<Event>, PoolError> {
        match pending {
            Pending::Configure => {
                // Pools that do not know mining.configure answer with an error: mine without
                // version rolling then.
                self.version_mask = result
                    .get("version-rolling.mask")
                    .and_then(Value::as_str)
                    .and_then(|m| u32::from_str_radix(m, 16).ok())
                    .filter(|_| {
                        result.get("version-rolling").and_then(Value::as_bool) == Some(true)
                    })
                    .map_or(0, |m| m & self.wanted_mask);
                Ok(vec![Event::VersionMask(self.version_mask)])
            }
            Pending::Subscribe => {
                if let Some(error) = error {
                    return Err(PoolError::Refused(format!("subscribe: {error}")));
                }
                let list = result.as_array().filter(|r| r.len() >= 3).ok_or_else(|| {
                    PoolError::Malformed(
                        "subscribe result is not [subscriptions, extranonce1, size]".into(),
                    )
                })?;
                self.set_extranonce(list.get(1), list.get(2))?;
                self.subscribed = true;
                self.update_phase();
                Ok(Vec::new())
            }
            Pending::Authorize => {
                if result.as_bool() != Some(true) {
                    return Err(PoolError::Refused(format!(
                        "authorize: {}",
                        error.unwrap_or_else(|| "refused".into())
                    )));
                }
                self.authorized = true;
                self.update_phase();
                Ok(vec![Event::Authorized])
            }
            Pending::Submit { job_id } => {
                let accepted = result.as_bool() == Some(true) && error.is_none();
                if accepted {
                    self.accounting.accepted += 1;
                } else {
                    self.accounting.rejected += 1;
                }
                Ok(vec![Event::ShareResult {
                    job_id,
                    accepted,
                    reason: error,
                }])
            }
        }
    }

    fn update_phase(&mut self) {
        if self.subscribed && self.authorized {
            self.phase = Phase::Ready;
        }
    }

    /// Work on the newest job with a fresh extranonce2 (each call rolls it, so every call gives
    /// a different header). `None` before the pool has sent work.
    pub fn next_work(&mut self) -> Option<PoolWork> {
        if self.phase != Phase::Ready {
            return None;
        }
        let notify = self.jobs.back()?;
        let counter = self.extranonce2_counter;
        self.extranonce2_counter = self.extranonce2_counter.wrapping_add(1);
        // Little-endian, as ESP-Miner and most pools expect: 1 → "01000000".
        let extranonce2: Vec<u8> = counter
            .to_le_bytes()
            .iter()
            .copied()
            .chain(std::iter::repeat(0))
            .take(self.extranonce2_size)
            .collect();
        Some(PoolWork {
            job_id: notify.job_id.clone(),
            header: notify.header(&self.extranonce1, &extranonce2),
            extranonce2,
            version_mask: self.version_mask,
            difficulty: self.difficulty,
        })
    }

    /// The `mining.submit` line for a share, or `None` (counted stale) if the job is gone.
    /// `version` is the full version that was hashed; the pool gets the rolled bits.
    pub fn submit(
        &mut self,
        job_id: &str,
        extranonce2: &[u8],
        ntime: u32,
        nonce: u32,
        version: u32,
    ) -> Option<String> {
        let Some(job) = self.jobs.iter().find(|j| j.job_id == job_id) else {
            self.accounting.stale += 1;
            return None;
        };
        let rolled = version ^ job.version;
        let mut params = vec![
            json!(self.user),
            json!(job_id),
            json!(hex(extranonce2)),
            json!(format!("{ntime:08x}")),
            json!(format!("{nonce:08x}")),
        ];
        if self.version_mask != 0 {
            params.push(json!(format!("{rolled:08x}")));
        }
        Some(self.request(
            "mining.submit",
            Value::Array(params),
            Pending::Submit {
                job_id: job_id.to_string(),
            },
        ))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
