//! A firmware rollout, staged: a canary wave first, then waves of `batch` miners, never more than
//! `max_offline` of them updating at once, and no new wave once the failures outrun the
//! threshold. Each miner is sent a signed `update` naming the image's URL, payload hash and
//! version; it is *updated* only when its own reports show the new version and it stays up for
//! `settle_s` (a build that crashes after its first report, or that the board's supervisor rolls
//! back, fails here). Nothing here does I/O: [`Rollout::tick`] returns the commands to sign and
//! publish, and acks and the fleet's reports come back through [`Rollout::on_ack`] and the
//! [`FleetView`].

use fleet_proto::command::VERSION;
use fleet_proto::image::Version;
use fleet_proto::{Ack, AckStatus, Action, Command, Name};
use serde::{Deserialize, Serialize};

use crate::fleet::FleetView;

/// The image being rolled out, as the miners are told to fetch it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub version: Version,
    /// Payload SHA-256 (hex), as in the signed manifest: what the miner must find.
    pub sha256: String,
    /// The boards the manifest names; a miner of another board is skipped, not failed.
    pub boards: Vec<String>,
    /// Where the miners fetch it.
    pub url: String,
}

/// A rollout asked for by `hashwarden flash`, for the running agent to carry out: the image as
/// the operator checked it, and the key that checked it, so the agent checks the file again
/// when it loads it (it may have changed since).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub image_path: std::path::PathBuf,
    pub manifest: fleet_proto::image::Manifest,
    /// The release public key (hex) the image was verified against, by its id.
    pub key_id: String,
    pub public_key: String,
    pub miners: Vec<String>,
    pub staging: Staging,
}

/// Checks an image as a board would, for no board in particular, against the release key
/// `key_id` (`public_key`, hex): its manifest, or why not.
pub fn check_image(
    image: impl std::io::Read,
    key_id: &str,
    public_key: &str,
) -> Result<fleet_proto::image::Manifest, String> {
    let mut keys = fleet_proto::TrustedKeys::default();
    keys.trust_hex(key_id, public_key)
        .map_err(|e| format!("release key: {e}"))?;
    let policy = fleet_proto::image::Policy {
        keys: &keys,
        board: None,
        min_version: None,
        max_size: fleet_proto::image::DEFAULT_MAX_PAYLOAD,
    };
    fleet_proto::image::verify(image, &policy, &mut std::io::sink())
        .map_err(|e| format!("refused: {e}"))
}

/// How cautiously it goes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Staging {
    /// Miners in the first wave; every one must succeed before any other is touched.
    pub canary: usize,
    /// Miners in each later wave; a wave starts once the one before it has finished.
    pub batch: usize,
    /// Miners updating (between the command and the settled new version) at once, at most.
    pub max_offline: usize,
    /// No new miner is started once failed / finished exceeds this.
    pub max_failure_rate: f64,
    /// From the command to the new version reported; past it the miner has failed.
    pub deadline_s: u64,
    /// How long the new version must stay up before the miner counts as updated.
    pub settle_s: u64,
    /// A command not even accepted by then is sent again.
    pub ack_timeout_s: u64,
    /// Sends of the command before the miner counts as unresponsive.
    pub max_attempts: u32,
    /// Once only unreachable miners are left waiting, how long before they are left out (an
    /// agent that has just started has not heard its fleet yet).
    pub offline_grace_s: u64,
    /// How long a command stays valid for the miner.
    pub command_ttl_s: u64,
}

impl Default for Staging {
    fn default() -> Self {
        Self {
            canary: 1,
            batch: 10,
            max_offline: 10,
            max_failure_rate: 0.1,
            // A download over a site's LAN, the install, a restart and the chains' bring-up; the
            // board's own trial deadline (`health_deadline_s`, 180 s by default) fits inside.
            deadline_s: 600,
            settle_s: 60,
            ack_timeout_s: 15,
            max_attempts: 3,
            offline_grace_s: 120,
            command_ttl_s: 120,
        }
    }
}

/// Where one miner's update stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Not started yet.
    Waiting,
    /// Command `id` sent (its `attempt`-th send) at `at`; `accepted` once the miner said so.
    Sent {
        id: String,
        attempt: u32,
        at: u64,
        accepted: bool,
    },
    /// Installed on trial at `since`; waiting for it to come back as the new version.
    Installing {
        since: u64,
    },
    /// Reporting the new version since `since`; updated once that has lasted `settle_s`.
    Settling {
        since: u64,
    },
    Updated {
        at: u64,
    },
    /// Running the version already when its turn came.
    AlreadyThere,
    /// Not this image's miner (another board), or not reachable all through the rollout.
    Skipped {
        reason: String,
    },
    Failed {
        reason: String,
    },
}

impl Step {
    fn in_flight(&self) -> bool {
        matches!(
            self,
            Step::Sent { .. } | Step::Installing { .. } | Step::Settling { .. }
        )
    }

    /// Ended, one way or another.
    pub fn is_final(&self) -> bool {
        !self.in_flight() && *self != Step::Waiting
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub miner: String,
    pub step: Step,
    /// The wave it was started in (0 is the canary).
    pub wave: Option<u32>,
}

/// One miner's step changed, for the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct Moved {
    pub miner: String,
    pub step: Step,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub image: Image,
    pub staging: Staging,
    pub targets: Vec<Target>,
    /// Why no further miner is started, once the failures say stop.
    pub halted: Option<String>,
    /// Since when only unreachable miners have been left waiting.
    pub stuck_since: Option<u64>,
}

/// The counts a progress bar and the final table want.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub updated: usize,
    pub already: usize,
    pub skipped: usize,
    pub failed: usize,
    pub in_flight: usize,
    pub waiting: usize,
}

impl Tally {
    pub fn done(&self) -> usize {
        self.updated + self.already + self.skipped + self.failed
    }
}

impl Rollout {
    pub fn new(image: Image, staging: Staging, miners: &[String]) -> Self {
        let mut named = std::collections::HashSet::with_capacity(miners.len());
        let targets: Vec<Target> = miners
            .iter()
            .filter(|miner| named.insert(miner.as_str()))
            .map(|miner| Target {
                miner: miner.clone(),
                step: Step::Waiting,
                wave: None,
            })
            .collect();
        Self {
            image,
            staging: Staging {
                canary: staging.canary.max(1),
                batch: staging.batch.max(1),
                max_offline: staging.max_offline.max(1),
                ..staging
            },
            targets,
            halted: None,
            stuck_since: None,
        }
    }

    pub fn tally(&self) -> Tally {
        let mut tally = Tally::default();
        for target in &self.targets {
            match target.step {
                Step::Waiting => tally.waiting += 1,
                Step::Updated { .. } => tally.updated += 1,
                Step::AlreadyThere => tally.already += 1,
                Step::Skipped { .. } => tally.skipped += 1,
                Step::Failed { .. } => tally.failed += 1,
                _ => tally.in_flight += 1,
            }
        }
        tally
    }

    /// Nothing more will happen: every miner has ended, or it halted and none is in flight.
    pub fn finished(&self) -> bool {
        let tally = self.tally();
        tally.in_flight == 0 && (tally.waiting == 0 || self.halted.is_some())
    }

    /// An ack from `miner`; the steps that changed.
    pub fn on_ack(&mut self, miner: &str, ack: &Ack, now: u64) -> Option<Moved> {
        let target = self.targets.iter_mut().find(|t| t.miner == miner)?;
        let Step::Sent { id, accepted, .. } = &mut target.step else {
            return None;
        };
        if ack.id.as_deref() != Some(id.as_str()) {
            return None;
        }
        target.step = match ack.status {
            AckStatus::Accepted => {
                *accepted = true;
                return None;
            }
            // A duplicate is a resend of a command the miner already carried out.
            AckStatus::Applied | AckStatus::Duplicate => Step::Installing { since: now },
            AckStatus::Failed | AckStatus::Rejected => Step::Failed {
                reason: ack
                    .reason
                    .clone()
                    .unwrap_or_else(|| format!("{:?} without a reason", ack.status)),
            },
        };
        let moved = Moved {
            miner: miner.to_string(),
            step: target.step.clone(),
        };
        self.check_failures();
        Some(moved)
    }

    /// One round at `now`: every miner moved on by what the fleet shows, then the commands to
    /// sign and publish, their sequence numbers taken from `next_seq` (the agent's one counter:
    /// a miner refuses any number at or below the last it accepted, from any command).
    pub fn tick(
        &mut self,
        now: u64,
        fleet: &FleetView,
        site: &Name,
        next_seq: &mut u64,
    ) -> (Vec<Command>, Vec<Moved>) {
        let mut commands = Vec::new();
        let mut moved = Vec::new();
        for index in 0..self.targets.len() {
            let before = self.targets[index].step.clone();
            if let Some(command) = self.advance(index, now, fleet, site, next_seq) {
                commands.push(command);
            }
            let target = &self.targets[index];
            if target.step != before && !matches!(target.step, Step::Sent { attempt: 1, .. }) {
                moved.push(Moved {
                    miner: target.miner.clone(),
                    step: target.step.clone(),
                });
            }
        }
        self.check_failures();
        for index in self.choose_starters(fleet, now) {
            let target = &mut self.targets[index];
            if let Some(command) = send(&self.image, &self.staging, target, site, next_seq, 1, now)
            {
                commands.push(command);
            }
        }
        self.skip_the_unreachable(fleet, now, &mut moved);
        (commands, moved)
    }

    fn advance(
        &mut self,
        index: usize,
        now: u64,
        fleet: &FleetView,
        site: &Name,
        next_seq: &mut u64,
    ) -> Option<Command> {
        let staging = self.staging;
        let wanted = self.image.version;
        let target = &mut self.targets[index];
        let heard = fleet.get(&target.miner);
        let running = heard.and_then(|h| h.firmware());
        let reachable = fleet.reachable(&target.miner, now);
        let on_new = reachable && running == Some(wanted);
        match target.step.clone() {
            Step::Waiting => {
                if on_new {
                    target.step = Step::AlreadyThere;
                } else if let Some(board) = heard.and_then(|h| h.state.as_ref()) {
                    let board = &board.nameplate.model;
                    if !self.image.boards.iter().any(|b| b == board) {
                        target.step = Step::Skipped {
                            reason: format!("board {board} is not one the image is built for"),
                        };
                    }
                }
            }
            Step::Sent {
                attempt,
                at,
                accepted,
                ..
            } => {
                // Its ack may be lost in the restart; its reports are what count.
                if on_new {
                    target.step = Step::Settling { since: now };
                } else if accepted {
                    if now >= at + staging.deadline_s {
                        target.step = Step::Failed {
                            reason: format!(
                                "accepted, but not installed within {} s",
                                staging.deadline_s
                            ),
                        };
                    }
                } else if now >= at + staging.ack_timeout_s {
                    if attempt >= staging.max_attempts {
                        target.step = Step::Failed {
                            reason: format!("unresponsive: no ack after {attempt} sends"),
                        };
                    } else if reachable {
                        return send(
                            &self.image,
                            &staging,
                            target,
                            site,
                            next_seq,
                            attempt + 1,
                            now,
                        );
                    }
                }
            }
            Step::Installing { since } => {
                if on_new {
                    target.step = Step::Settling { since: now };
                } else if now >= since + staging.deadline_s {
                    target.step = Step::Failed {
                        reason: match running {
                            Some(version) if reachable => format!(
                                "installed, but running {version} after {} s (rolled back)",
                                staging.deadline_s
                            ),
                            _ => format!("installed, but not back within {} s", staging.deadline_s),
                        },
                    };
                }
            }
            Step::Settling { since } => {
                if !on_new {
                    target.step = Step::Failed {
                        reason: match running {
                            Some(version) if reachable && version != wanted => {
                                format!("came back as {wanted}, then ran {version} (rolled back)")
                            }
                            _ => format!("came back as {wanted}, then went offline"),
                        },
                    };
                } else if now >= since + staging.settle_s {
                    target.step = Step::Updated { at: now };
                }
            }
            Step::Updated { .. }
            | Step::AlreadyThere
            | Step::Skipped { .. }
            | Step::Failed { .. } => {}
        }
        None
    }

    /// Halts once the canary has lost a miner or the failures outrun the threshold.
    fn check_failures(&mut self) {
        if self.halted.is_some() {
            return;
        }
        let (mut failed, mut finished, mut canary_failed) = (0usize, 0usize, false);
        for target in &self.targets {
            match target.step {
                Step::Updated { .. } => finished += 1,
                Step::Failed { .. } => {
                    finished += 1;
                    failed += 1;
                    canary_failed |= target.wave == Some(0);
                }
                _ => {}
            }
        }
        if canary_failed {
            self.halted = Some("a canary failed".into());
        } else if finished > 0 && failed as f64 / finished as f64 > self.staging.max_failure_rate {
            self.halted = Some(format!(
                "{failed} of {finished} failed, over the {:.0} % allowed",
                self.staging.max_failure_rate * 100.0
            ));
        }
    }

    /// The waiting miners to start now: the current wave's missing members while there is room
    /// under `max_offline`, or the next wave once this one has ended.
    fn choose_starters(&mut self, fleet: &FleetView, now: u64) -> Vec<usize> {
        if self.halted.is_some() {
            return Vec::new();
        }
        let wave = self.targets.iter().filter_map(|t| t.wave).max();
        let (wave, size) = match wave {
            None => (0, self.staging.canary),
            Some(wave) => {
                let size = self.wave_size(wave);
                let members = self.targets.iter().filter(|t| t.wave == Some(wave));
                let started = members.clone().count();
                let startable = self
                    .targets
                    .iter()
                    .any(|t| t.step == Step::Waiting && fleet.reachable(&t.miner, now));
                if started < size && startable {
                    (wave, size)
                } else if members.clone().all(|t| t.step.is_final()) {
                    (wave + 1, self.wave_size(wave + 1))
                } else {
                    return Vec::new();
                }
            }
        };
        let started = self.targets.iter().filter(|t| t.wave == Some(wave)).count();
        let in_flight = self.targets.iter().filter(|t| t.step.in_flight()).count();
        let room = size
            .saturating_sub(started)
            .min(self.staging.max_offline.saturating_sub(in_flight));
        let chosen: Vec<usize> = self
            .targets
            .iter()
            .enumerate()
            .filter(|(_, t)| t.step == Step::Waiting && fleet.reachable(&t.miner, now))
            .map(|(index, _)| index)
            .take(room)
            .collect();
        for &index in &chosen {
            self.targets[index].wave = Some(wave);
        }
        chosen
    }

    fn wave_size(&self, wave: u32) -> usize {
        if wave == 0 {
            self.staging.canary
        } else {
            self.staging.batch
        }
    }

    /// Once nothing has been in flight and no waiting miner could be reached for
    /// `offline_grace_s`, the waiting ones are left out so the rollout ends; a later one
    /// catches them.
    fn skip_the_unreachable(&mut self, fleet: &FleetView, now: u64, moved: &mut Vec<Moved>) {
        if self.halted.is_some() {
            return;
        }
        let stuck = self.targets.iter().all(|t| {
            !t.step.in_flight() && (t.step != Step::Waiting || !fleet.reachable(&t.miner, now))
        });
        if !stuck {
            self.stuck_since = None;
            return;
        }
        let since = *self.stuck_since.get_or_insert(now);
        if now < since + self.staging.offline_grace_s {
            return;
        }
        for target in &mut self.targets {
            if target.step == Step::Waiting {
                target.step = Step::Skipped {
                    reason: "not reachable when its turn came".into(),
                };
                moved.push(Moved {
                    miner: target.miner.clone(),
                    step: target.step.clone(),
                });
            }
        }
    }
}

/// Sends (or sends again) `target` its update command.
fn send(
    image: &Image,
    staging: &Staging,
    target: &mut Target,
    site: &Name,
    next_seq: &mut u64,
    attempt: u32,
    now: u64,
) -> Option<Command> {
    let Ok(miner) = Name::new(&target.miner) else {
        target.step = Step::Skipped {
            reason: "not a name a command can address".into(),
        };
        return None;
    };
    let seq = *next_seq;
    *next_seq += 1;
    let id = format!("fw-{seq}");
    target.step = Step::Sent {
        id: id.clone(),
        attempt,
        at: now,
        accepted: false,
    };
    Some(Command {
        v: VERSION,
        id,
        site: site.clone(),
        miner,
        issued_at: now,
        expires_at: now + staging.command_ttl_s,
        seq,
        action: Action::Update {
            url: image.url.clone(),
            sha256: image.sha256.clone(),
            version: image.version,
        },
    })
}

/// An update step in the audit log's and the operator's words.
impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Waiting => f.write_str("waiting"),
            Step::Sent { id, attempt, .. } => write!(f, "sent {id} (attempt {attempt})"),
            Step::Installing { .. } => f.write_str("installed on trial"),
            Step::Settling { .. } => f.write_str("running the new version"),
            Step::Updated { .. } => f.write_str("updated"),
            Step::AlreadyThere => f.write_str("already on this version"),
            Step::Skipped { reason } => write!(f, "skipped: {reason}"),
            Step::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests;
