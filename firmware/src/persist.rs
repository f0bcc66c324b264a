//! What must survive a reboot: the operator's intent (a sleeping machine stays asleep) and the
//! last command sequence number per host key (a reboot must not reopen old commands to replay).
//!
//! Written to a temporary file, synced, then renamed over the old one: a power cut leaves either
//! the old state or the new one, never half of each.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::control::Intent;
use fleet_proto::command::TuneMode;
use fleet_proto::messages::CurvePoint;

const FORMAT: u32 = 1;
const FILE_NAME: &str = "state.json";

/// One host key's last accepted command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastCommand {
    pub key_id: String,
    pub seq: u64,
    pub id: String,
}

/// One chain's tuned settings and the curve its sweep measured, so a restart resumes from them
/// in minutes instead of sweeping again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunedChain {
    pub chain: u32,
    pub mode: TuneMode,
    /// The chip the profile was tuned on (`bm1397`, …): another board's profile is not used.
    pub chip: String,
    pub core_mv: u32,
    pub clocks_khz: Vec<u32>,
    /// Highest voltage first.
    pub curve: Vec<CurvePoint>,
    /// Unix time the tune finished.
    pub at: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurableState {
    pub v: u32,
    pub intent: Intent,
    pub commands: Vec<LastCommand>,
    #[serde(default)]
    pub tuned: Vec<TunedChain>,
}

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a state file this daemon wrote ({reason})")]
    Corrupt { path: PathBuf, reason: String },
}

/// The state file in a data directory.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// Creates the directory if needed, and checks it can be written, so a read-only or missing
    /// data directory is an error at start rather than a lost sleep later.
    pub fn open(dir: &Path) -> Result<Self, PersistError> {
        let io = |source| PersistError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let probe = dir.join(".write-test");
        std::fs::write(&probe, b"").map_err(io)?;
        std::fs::remove_file(&probe).map_err(io)?;
        Ok(Self {
            path: dir.join(FILE_NAME),
        })
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state; the default when none was ever saved.
    pub fn load(&self) -> Result<DurableState, PersistError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(DurableState {
                    v: FORMAT,
                    ..DurableState::default()
                });
            }
            Err(source) => {
                return Err(PersistError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let corrupt = |reason: String| PersistError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        let state: DurableState =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if state.v != FORMAT {
            return Err(corrupt(format!("format version {}", state.v)));
        }
        Ok(state)
    }

    pub fn save(&self, state: &DurableState) -> Result<(), PersistError> {
        let io = |source| PersistError::Io {
            path: self.path.clone(),
            source,
        };
        let state = DurableState {
            v: FORMAT,
            ..state.clone()
        };
        let json = serde_json::to_vec_pretty(&state).map_err(|e| io(std::io::Error::other(e)))?;
        let temporary = self.path.with_extension("json.new");
        let mut file = std::fs::File::create(&temporary).map_err(io)?;
        file.write_all(&json).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&temporary, &self.path).map_err(io)?;
        // The rename itself is durable only once the directory is synced.
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::SleepCause;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hw-persist-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn state_round_trips_and_starts_empty() {
        let dir = scratch("round-trip");
        let store = Store::open(&dir).expect("opens");
        assert_eq!(store.load().expect("loads").intent, Intent::default());
        let state = DurableState {
            v: FORMAT,
            intent: Intent {
                sleeping: Some(SleepCause::Failsafe),
                frequency_mhz: Some(487.5),
                core_mv: Some(1250),
                power_target_w: Some(3250.0),
                tune: None,
            },
            commands: vec![LastCommand {
                key_id: "host-2026a".into(),
                seq: 42,
                id: "cmd-000042".into(),
            }],
            tuned: vec![TunedChain {
                chain: 1,
                mode: TuneMode::Efficiency,
                chip: "bm1397".into(),
                core_mv: 1300,
                clocks_khz: vec![450_000, 437_500],
                curve: vec![CurvePoint {
                    core_mv: 1300,
                    hashrate_ths: 0.6,
                    power_w: 21.5,
                }],
                at: 1_767_225_600,
            }],
        };
        store.save(&state).expect("saves");
        assert_eq!(
            Store::open(&dir).expect("opens").load().expect("loads"),
            state
        );
        assert!(!dir.join("state.json.new").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_default() {
        let dir = scratch("damaged");
        let store = Store::open(&dir).expect("opens");
        for bad in [
            &b"{\"v\":1,\"intent\":"[..],
            b"\xff",
            b"{\"v\":9,\"intent\":{},\"commands\":[]}",
        ] {
            std::fs::write(store.path(), bad).expect("writes");
            assert!(
                matches!(store.load(), Err(PersistError::Corrupt { .. })),
                "{bad:?}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unwritable_directory_is_refused_at_open() {
        let file = scratch("not-a-dir");
        std::fs::write(&file, b"").expect("writes");
        assert!(matches!(Store::open(&file), Err(PersistError::Io { .. })));
        let _ = std::fs::remove_file(&file);
    }
}
