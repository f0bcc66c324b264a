//! Firmware updates on the board: two slots (A and B) beside the factory binary, a boot pointer
//! written atomically, an installer that verifies an image before anything is switched, and the
//! supervisor that boots a new slot on trial and rolls back by itself when it does not come up
//! healthy. `docs/flashing.md` has the whole story.

mod fetch;
mod install;
mod slots;
mod supervise;

use serde::Deserialize;

pub use fetch::{Fetch, Updater};
pub use install::{Expected, install};
pub use supervise::{HEALTH_FILE_VAR, HealthReport, Supervision, VERSION_VAR, supervise};

/// `[update]`: what this board accepts and how long a new build gets to prove itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSection {
    /// Release keys whose images this board installs.
    pub release_keys: Vec<crate::config::TrustedKeySection>,
    /// Key ids refused even while listed (a release key that leaked).
    #[serde(default)]
    pub revoked_keys: Vec<String>,
    /// No image older than this (MAJOR.MINOR.PATCH).
    pub min_version: Option<String>,
    #[serde(default = "default_max_size")]
    pub max_size: u64,
    /// How long a new build has to report healthy (chains up, broker connected), s.
    #[serde(default = "default_health_deadline")]
    pub health_deadline_s: f64,
    /// Starts of a new build (crashes included) before it is given up.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

fn default_max_size() -> u64 {
    fleet_proto::image::DEFAULT_MAX_PAYLOAD
}

fn default_health_deadline() -> f64 {
    180.0
}

fn default_max_attempts() -> u32 {
    3
}

impl UpdateSection {
    pub fn trusted_keys(&self) -> Result<fleet_proto::TrustedKeys, String> {
        let mut keys = fleet_proto::TrustedKeys::default();
        for (i, key) in self.release_keys.iter().enumerate() {
            keys.trust_hex(&key.id, &key.public_key)
                .map_err(|e| format!("update.release_keys[{i}]: {e}"))?;
        }
        for id in &self.revoked_keys {
            keys.revoke(id);
        }
        Ok(keys)
    }

    pub fn min_version(&self) -> Result<Option<fleet_proto::image::Version>, String> {
        self.min_version
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| format!("update.min_version: {e}"))
    }
}

/// A test hook: `HASHWARDEN_UPDATE_ABORT_AT=<step>` aborts the process at that step, as a power
/// cut would, so the tests can show every step leaves a board that starts.
pub(crate) fn crash_point(step: &str) {
    if std::env::var("HASHWARDEN_UPDATE_ABORT_AT").is_ok_and(|at| at == step) {
        std::process::abort();
    }
}
