//! Firmware rollouts inside the agent. `hashwarden flash` queues one in the store; the agent
//! takes it up on its next round, checks the image file again, serves it on its HTTP listener
//! (`/images/<sha256>.img`) and moves the rollout on every round. Its update commands are signed
//! and numbered with the plan's, from the one counter: a miner refuses any sequence number at or
//! below the last it accepted, whichever kind of command carried it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use fleet_proto::image::Manifest;
use fleet_proto::{Ack, Command};
use tracing::{info, warn};

use super::Agent;
use crate::rollout::{Image, Request, Rollout};
use crate::store::{AuditEntry, AuditKind, StoredRollout};

/// The images being rolled out, by file name, as the HTTP listener serves them.
pub type Shelf = Arc<Mutex<HashMap<String, Bytes>>>;

#[derive(Debug, Default)]
pub(super) struct Rollouts {
    shelf: Shelf,
    /// How the miners reach the agent's HTTP listener; no rollout can run without it.
    base_url: Option<String>,
    active: Vec<Active>,
}

#[derive(Debug)]
struct Active {
    id: i64,
    rollout: Rollout,
    /// The image's name on the shelf.
    file: String,
    /// What the store last got, to write only what changed.
    saved: String,
}

impl Rollouts {
    pub(super) fn new(base_url: Option<String>) -> Self {
        Self {
            base_url: base_url.map(|url| url.trim_end_matches('/').to_string()),
            ..Self::default()
        }
    }

    pub(super) fn shelf(&self) -> Shelf {
        self.shelf.clone()
    }
}

fn file_name(manifest: &Manifest) -> String {
    format!("{}.img", manifest.sha256.to_ascii_lowercase())
}

/// Reads and checks the image the request names, as the operator checked it: signed by the same
/// key, the same payload and version.
fn load(request: &Request) -> Result<Bytes, String> {
    let path = &request.image_path;
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let manifest =
        crate::rollout::check_image(bytes.as_slice(), &request.key_id, &request.public_key)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    if manifest != request.manifest {
        return Err(format!(
            "{}: changed since the rollout was asked for (now {} {})",
            path.display(),
            manifest.version,
            manifest.sha256
        ));
    }
    Ok(Bytes::from(bytes))
}

impl Agent {
    /// Takes up the oldest rollout queued (or left unfinished by the last run) once none is
    /// under way, and moves it on: the update commands to sign and send.
    pub(super) fn rollouts_round(&mut self, now: u64) -> Vec<Command> {
        self.take_up_rollouts();
        let mut commands = Vec::new();
        let mut audit = Vec::new();
        let seq = self.executor.seq_counter();
        for active in &mut self.rollouts.active {
            let (sent, moved) = active.rollout.tick(now, &self.fleet, &self.site, seq);
            commands.extend(sent);
            audit.extend(moved.into_iter().map(|m| (m.miner, m.step.to_string())));
        }
        for (miner, detail) in audit {
            info!(%miner, %detail, "update");
            self.records
                .audit(AuditEntry::new(now, &miner, AuditKind::Update, detail));
        }
        self.save_rollouts();
        commands
    }

    /// An ack that may answer an update command.
    pub(super) fn rollout_ack(&mut self, miner: &str, ack: &Ack, now: u64) {
        let mut moved = None;
        for active in &mut self.rollouts.active {
            if let Some(m) = active.rollout.on_ack(miner, ack, now) {
                moved = Some(m);
            }
        }
        if let Some(m) = moved {
            self.records.audit(AuditEntry::new(
                now,
                &m.miner,
                AuditKind::Update,
                m.step.to_string(),
            ));
        }
    }

    /// One rollout at a time, oldest first: two at once would send a miner two updates, and
    /// it installs one at a time. A newer one waits in the store (`flash` shows it waiting).
    fn take_up_rollouts(&mut self) {
        let Some(store) = self.records.store() else {
            return;
        };
        if !self.rollouts.active.is_empty() {
            return;
        }
        let new: Result<Vec<StoredRollout>, _> = store.open_rollout_ids().and_then(|ids| {
            // A row that no longer parses is passed over, not allowed to block the queue.
            ids.into_iter()
                .filter_map(|id| store.rollout(id).transpose())
                .take(1)
                .collect()
        });
        let new = match new {
            Ok(new) => new,
            Err(e) => {
                warn!(error = %e, "cannot read the rollouts");
                return;
            }
        };
        for stored in new {
            let active = self.take_up(stored);
            info!(
                id = active.id,
                version = %active.rollout.image.version,
                miners = active.rollout.targets.len(),
                halted = ?active.rollout.halted,
                "rollout taken up"
            );
            self.rollouts.active.push(active);
        }
    }

    fn take_up(&mut self, stored: StoredRollout) -> Active {
        let request = &stored.request;
        let file = file_name(&request.manifest);
        let url = self
            .rollouts
            .base_url
            .as_ref()
            .map(|base| format!("{base}/images/{file}"));
        let image = Image {
            version: request.manifest.version,
            sha256: request.manifest.sha256.clone(),
            boards: request.manifest.boards.clone(),
            url: url.clone().unwrap_or_default(),
        };
        let mut rollout = match stored.progress {
            // Resumed after a restart: the miners still fetch from wherever this agent is now.
            Some(mut progress) => {
                progress.image.url = image.url;
                progress
            }
            None => Rollout::new(image, request.staging, &request.miners),
        };
        let loaded = match url {
            None => Err(
                "the agent serves no images: set [agent] metrics_listen (and public_url \
                         where the miners reach it by another address)"
                    .to_string(),
            ),
            Some(_) => load(request),
        };
        match loaded {
            Ok(bytes) => {
                if let Ok(mut shelf) = self.rollouts.shelf.lock() {
                    shelf.insert(file.clone(), bytes);
                }
            }
            Err(reason) => {
                warn!(id = stored.id, %reason, "rollout cannot run");
                // Nothing new starts; miners already updating are still followed to the end.
                rollout.halted.get_or_insert(reason);
            }
        }
        Active {
            id: stored.id,
            rollout,
            file,
            saved: String::new(),
        }
    }

    /// Writes what changed; a finished rollout is written once more and let go, its image
    /// taken off the shelf unless another rollout still serves it.
    fn save_rollouts(&mut self) {
        let Some(store) = self.records.store() else {
            return;
        };
        for active in &mut self.rollouts.active {
            let json = serde_json::to_string(&active.rollout).unwrap_or_default();
            if json == active.saved {
                continue;
            }
            match store.save_rollout(active.id, &active.rollout, active.rollout.finished()) {
                Ok(()) => active.saved = json,
                Err(e) => warn!(error = %e, id = active.id, "cannot store a rollout"),
            }
        }
        let (finished, active): (Vec<Active>, Vec<Active>) =
            std::mem::take(&mut self.rollouts.active)
                .into_iter()
                .partition(|a| a.rollout.finished() && !a.saved.is_empty());
        self.rollouts.active = active;
        for done in finished {
            let tally = done.rollout.tally();
            info!(id = done.id, ?tally, halted = ?done.rollout.halted, "rollout finished");
            if self.rollouts.active.iter().all(|a| a.file != done.file)
                && let Ok(mut shelf) = self.rollouts.shelf.lock()
            {
                shelf.remove(&done.file);
            }
        }
    }
}
