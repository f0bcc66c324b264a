//! The slots on disk, under `<data_dir>/firmware/`:
//!
//! ```text
//! slot-a/hashwarden-fw   slot-a/manifest.json
//! slot-b/hashwarden-fw   slot-b/manifest.json
//! boot.json              {"active": "a" | "b" | null, "trial": {"slot": "b", "attempts": 1} | null}
//! ```
//!
//! `boot.json` is only ever replaced whole (written aside, synced, renamed, directory synced), so
//! a power cut leaves the old pointer or the new one, never half of either. With no pointer, or
//! an active slot that is missing, the supervisor runs the factory binary (itself): the board
//! always has something to start.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    fn dir_name(self) -> &'static str {
        match self {
            Slot::A => "slot-a",
            Slot::B => "slot-b",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    pub slot: Slot,
    /// Starts so far, counted before each start so a crash (or a power cut) mid-trial counts.
    pub attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Boot {
    /// The committed build; `None` = the factory binary.
    pub active: Option<Slot>,
    pub trial: Option<Trial>,
}

#[derive(Debug, Clone)]
pub struct Slots {
    root: PathBuf,
}

impl Slots {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("firmware"),
        }
    }

    pub fn binary(&self, slot: Slot) -> PathBuf {
        self.root.join(slot.dir_name()).join("hashwarden-fw")
    }

    pub fn manifest(&self, slot: Slot) -> PathBuf {
        self.root.join(slot.dir_name()).join("manifest.json")
    }

    /// The version of the build in `slot`, from the manifest installed beside it.
    pub fn version(&self, slot: Slot) -> Option<fleet_proto::image::Version> {
        let bytes = std::fs::read(self.manifest(slot)).ok()?;
        serde_json::from_slice::<fleet_proto::image::Manifest>(&bytes)
            .ok()
            .map(|m| m.version)
    }

    pub fn dir(&self, slot: Slot) -> PathBuf {
        self.root.join(slot.dir_name())
    }

    pub fn health_file(&self) -> PathBuf {
        self.root.join("healthy")
    }

    fn pointer(&self) -> PathBuf {
        self.root.join("boot.json")
    }

    /// The pointer; a missing or unreadable one reads as "factory, no trial" (and says so).
    pub fn boot(&self) -> Boot {
        match std::fs::read(self.pointer()) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "boot.json unreadable: starting the factory build");
                Boot::default()
            }),
            Err(_) => Boot::default(),
        }
    }

    pub fn set_boot(&self, boot: &Boot) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(boot).map_err(std::io::Error::other)?;
        write_atomically(&self.pointer(), &bytes, "pointer")
    }
}

/// Replaces `path` whole: written aside and synced, renamed over, the directory synced.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], step: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let aside = path.with_extension("tmp");
    let mut file = std::fs::File::create(&aside)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    super::crash_point(&format!("{step}-written"));
    std::fs::rename(&aside, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    super::crash_point(&format!("{step}-renamed"));
    Ok(())
}
