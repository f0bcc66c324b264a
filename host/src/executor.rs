//! Carrying a plan out, one miner at a time, and knowing it worked: each target becomes the
//! commands that reach it; each command is tracked until its `applied` ack, retried with backoff
//! when the ack does not come, and the change is only *verified* when the miner's own telemetry
//! shows it (power actually down to a share of where it was, or up, or at the target). A miner
//! that never answers is marked unresponsive and reported, not retried forever; an offline one
//! gets its target when it returns. Nothing here does I/O: [`Executor::tick`] returns the
//! commands to sign and publish, and acks and telemetry come back in through
//! [`Executor::on_ack`] and the [`FleetView`].

use std::collections::BTreeMap;

use fleet_proto::command::VERSION;
use fleet_proto::{Ack, AckStatus, Action, Command, Mode, Name};
use serde::Serialize;

use crate::fleet::FleetView;
use crate::planner::Setting;
use crate::units::Watts;

/// How patient the executor is: `[agent.commands]` in the site's configuration.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutorConfig {
    /// A command with no final ack by then is sent again.
    pub ack_timeout_s: u64,
    /// Attempts per command before the miner is marked unresponsive.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    pub backoff_s: u64,
    /// After `applied`, telemetry must show the change within this.
    pub verify_within_s: u64,
    /// Asleep is verified at or below this share of the power it drew before.
    pub asleep_share: f64,
    /// Awake at full is verified at or above this share of its full power.
    pub awake_share: f64,
    /// A power target is verified within this fraction of it.
    pub target_tolerance: f64,
    /// How long a command stays valid for the miner.
    pub command_ttl_s: u64,
    /// A change that failed or went unanswered is tried again after this; until then the planner
    /// leaves the machine as it runs and plans the rest of the site around it.
    pub retry_after_s: u64,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            ack_timeout_s: 10,
            max_attempts: 3,
            backoff_s: 5,
            // LuxOS reaches ~25 W within 5 s and full power within 10 s; a tuned S19 ramps in
            // tens of seconds. Two minutes leaves room for a telemetry interval or two.
            verify_within_s: 120,
            asleep_share: 0.1,
            awake_share: 0.5,
            target_tolerance: 0.1,
            command_ttl_s: 60,
            // Long enough that a miner stuck in a thermal stop or a reboot is not nagged, short
            // enough that a transient fault does not leave a curtailment undone for long.
            retry_after_s: 300,
        }
    }
}

impl ExecutorConfig {
    /// Refuses settings that would never send, never verify or never give up: the key under
    /// `agent.commands` and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let at_least_one = [
            ("agent.commands.ack_timeout_s", self.ack_timeout_s),
            ("agent.commands.max_attempts", u64::from(self.max_attempts)),
            ("agent.commands.verify_within_s", self.verify_within_s),
            ("agent.commands.command_ttl_s", self.command_ttl_s),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err((key, "must be at least 1".into()));
            }
        }
        // Every time here is added to a unix time, and the backoff doubles per attempt: a day
        // is patience enough, and keeps every sum far from overflowing.
        let at_most_a_day = [
            ("agent.commands.ack_timeout_s", self.ack_timeout_s),
            ("agent.commands.backoff_s", self.backoff_s),
            ("agent.commands.verify_within_s", self.verify_within_s),
            ("agent.commands.command_ttl_s", self.command_ttl_s),
            ("agent.commands.retry_after_s", self.retry_after_s),
        ];
        for (key, value) in at_most_a_day {
            if value > 86_400 {
                return Err((key, format!("{value} s is more than a day")));
            }
        }
        if self.max_attempts > 100 {
            return Err((
                "agent.commands.max_attempts",
                format!("{} is more than 100", self.max_attempts),
            ));
        }
        if self.command_ttl_s < self.ack_timeout_s {
            return Err((
                "agent.commands.command_ttl_s",
                format!(
                    "{} s expires before the ack timeout of {} s",
                    self.command_ttl_s, self.ack_timeout_s
                ),
            ));
        }
        let shares = [
            ("agent.commands.asleep_share", self.asleep_share),
            ("agent.commands.awake_share", self.awake_share),
            ("agent.commands.target_tolerance", self.target_tolerance),
        ];
        for (key, share) in shares {
            if !(share > 0.0 && share < 1.0) {
                return Err((key, format!("{share} is not a fraction in 0..1")));
            }
        }
        Ok(())
    }
}

/// Where one miner's change stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for its batch time, or for the miner to come back.
    Queued,
    /// Command `id` sent (attempt `attempt`), no final ack yet.
    Sent {
        id: String,
        attempt: u32,
        at: u64,
    },
    /// Every command applied at `at`; waiting for telemetry to show it.
    Applied {
        at: u64,
    },
    /// Telemetry shows the change.
    Verified {
        at: u64,
    },
    Failed {
        reason: String,
        at: u64,
    },
    /// No final ack after every attempt.
    Unresponsive {
        attempts: u32,
        at: u64,
    },
}

impl Phase {
    /// The phase's name, as logs, the audit log and the dashboard show it.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Sent { .. } => "sent",
            Phase::Applied { .. } => "applied",
            Phase::Verified { .. } => "verified",
            Phase::Failed { .. } => "failed",
            Phase::Unresponsive { .. } => "unresponsive",
        }
    }

    /// Whether the change is still on its way (not yet shown, failed or given up).
    pub fn in_flight(&self) -> bool {
        matches!(
            self,
            Phase::Queued | Phase::Sent { .. } | Phase::Applied { .. }
        )
    }
}

/// What [`Executor::want`] made of the plan's wish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// Already asked for (or it cannot be asked): nothing new.
    Unchanged,
    /// A new change, or one replacing another target.
    New,
    /// The same change again: the last try failed or went unanswered, and its retry time came.
    Retry,
    /// The same change again: it was verified, and the miner has since shown another setting.
    Drifted,
}

/// One miner's change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Op {
    pub miner: String,
    /// The miner's name as commands carry it (checked when the op was made).
    #[serde(skip)]
    name: Name,
    pub want: Setting,
    /// Not before this (the plan's batch time).
    pub due: u64,
    /// What it drew when the change was asked for, to verify a sleep against.
    pub baseline: Option<Watts>,
    /// Its full power, to verify a wake against and to ask for when leaving a power target.
    pub full: Watts,
    /// Commands still to send, in order.
    pub steps: Vec<Action>,
    pub phase: Phase,
    /// Commands sent for this change, including retries.
    pub sent: u32,
    /// It replaced a change still in flight, whose command the miner may yet carry out: what
    /// the miner shows now proves nothing, so this one is sent even if it looks in effect.
    pub after_in_flight: bool,
    /// The ids of every attempt at the current step: a late `applied` to an earlier attempt
    /// (a congested broker, an agent behind on its queue) proves the step as well as the
    /// latest one's would.
    #[serde(skip)]
    attempt_ids: Vec<String>,
}

/// The commands that take a miner from `from` to `to`. A power target set while asleep applies
/// at wake, so it goes first.
pub fn steps(from: Setting, to: Setting, full: Watts) -> Vec<Action> {
    match (from, to) {
        (a, b) if a == b => Vec::new(),
        (_, Setting::Sleep) => vec![Action::Sleep],
        (Setting::Sleep, Setting::Full) => vec![Action::Wake],
        (Setting::Sleep, Setting::PowerTarget(w)) => {
            vec![Action::SetPowerTarget { watts: w.0 }, Action::Wake]
        }
        (_, Setting::PowerTarget(w)) => vec![Action::SetPowerTarget { watts: w.0 }],
        // Leaving a power target for full power: the limiter is told the full watts.
        (_, Setting::Full) => vec![Action::SetPowerTarget { watts: full.0 }],
    }
}

#[derive(Debug)]
pub struct Executor {
    site: Name,
    config: ExecutorConfig,
    ops: BTreeMap<String, Op>,
    /// Strictly increasing across the host's restarts: miners refuse a sequence number at or
    /// below the last they accepted.
    next_seq: u64,
    /// When each miner was last switched on or off (verified), for the planner's dwell.
    switched: BTreeMap<String, (u64, bool)>,
}

impl Executor {
    /// `seq_floor`: a number above every sequence number this signing key has used (the store's,
    /// or the clock in milliseconds at start, which only grows).
    pub fn new(site: Name, config: ExecutorConfig, seq_floor: u64) -> Self {
        Self {
            site,
            config,
            ops: BTreeMap::new(),
            next_seq: seq_floor,
            switched: BTreeMap::new(),
        }
    }

    /// The plan wants `miner` at `to` from `due` on, the miner showing `from`. Asking again for
    /// what is already asked changes nothing — unless it failed or went unanswered and its retry
    /// time has come, or it was verified and the miner has since drifted off it by itself (its
    /// failsafe, a reboot, a local action); a different target replaces the old one.
    pub fn want(
        &mut self,
        miner: &str,
        from: Setting,
        to: Setting,
        due: u64,
        baseline: Option<Watts>,
        full: Watts,
    ) -> Wanted {
        let retry_due = self
            .not_carried_out(miner)
            .is_some_and(|until| due >= until);
        let wanted = match self.ops.get(miner) {
            Some(op) if op.want == to => {
                if retry_due {
                    Wanted::Retry
                } else if matches!(op.phase, Phase::Verified { .. })
                    && drifted(from, to, self.config.target_tolerance)
                {
                    Wanted::Drifted
                } else {
                    return Wanted::Unchanged;
                }
            }
            _ => Wanted::New,
        };
        let after_in_flight = self
            .ops
            .get(miner)
            .is_some_and(|op| matches!(op.phase, Phase::Sent { .. } | Phase::Applied { .. }));
        // Miners are known by the topics they publish on, which only valid names reach; a name
        // that is not one could not be addressed, so it gets no op.
        let Ok(name) = Name::new(miner) else {
            return Wanted::Unchanged;
        };
        self.ops.insert(
            miner.to_string(),
            Op {
                miner: miner.to_string(),
                name,
                want: to,
                due,
                baseline,
                full,
                steps: steps(from, to, full),
                phase: Phase::Queued,
                sent: 0,
                after_in_flight,
                attempt_ids: Vec::new(),
            },
        );
        wanted
    }

    pub fn config(&self) -> ExecutorConfig {
        self.config
    }

    pub fn ops(&self) -> impl Iterator<Item = &Op> {
        self.ops.values()
    }

    /// `miner` is another agent's now (a group's membership changed): its unfinished op is
    /// dropped, so two agents never chase the same miner. Returns the op dropped.
    pub fn hand_over(&mut self, miner: &str) -> Option<Op> {
        let unfinished = self.ops.get(miner).is_some_and(|op| {
            matches!(
                op.phase,
                Phase::Queued | Phase::Sent { .. } | Phase::Applied { .. }
            )
        });
        if unfinished {
            self.ops.remove(miner)
        } else {
            None
        }
    }

    pub fn op(&self, miner: &str) -> Option<&Op> {
        self.ops.get(miner)
    }

    /// Until when `miner`'s last change counts as not carried out (it failed or went
    /// unanswered): the planner leaves the machine as it runs until then, and a plan that still
    /// wants the change afterwards sends it again.
    pub fn not_carried_out(&self, miner: &str) -> Option<u64> {
        match self.ops.get(miner)?.phase {
            Phase::Failed { at, .. } | Phase::Unresponsive { at, .. } => {
                Some(at + self.config.retry_after_s)
            }
            _ => None,
        }
    }

    /// Drops `miner`'s change if it failed or went unanswered, so the next `want` sends it again
    /// at once (an operator asked for it anew). Whether there was one to drop.
    pub fn forget_failure(&mut self, miner: &str) -> bool {
        if self.not_carried_out(miner).is_some() {
            self.ops.remove(miner);
            return true;
        }
        false
    }

    /// A switch from before a restart (the store's), for the planner's dwell.
    pub fn restore_switch(&mut self, miner: &str, at: u64, on: bool) {
        self.switched.insert(miner.to_string(), (at, on));
    }

    /// The counter the executor numbers its commands from, for other commands to the same
    /// miners (a rollout's): one counter, so every number is above the last any miner saw.
    pub fn seq_counter(&mut self) -> &mut u64 {
        &mut self.next_seq
    }

    /// The sequence number the next command gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// When `miner` was last switched on or off, and whether on.
    pub fn last_switch(&self, miner: &str) -> Option<(u64, bool)> {
        self.switched.get(miner).copied()
    }

    /// An ack from `miner`. The latest attempt's ack decides, whatever it says; an earlier
    /// attempt's counts only when it says the step is done (its refusal, say an expiry, is
    /// overtaken by the retry), and brings back a change given up as unresponsive.
    pub fn on_ack(&mut self, miner: &str, ack: &Ack, now: u64) {
        let Some(op) = self.ops.get_mut(miner) else {
            return;
        };
        let Some(id) = ack.id.as_deref() else {
            return;
        };
        let latest = matches!(&op.phase, Phase::Sent { id: sent, .. } if sent == id);
        let earlier = op.attempt_ids.iter().any(|sent| sent == id)
            && matches!(op.phase, Phase::Sent { .. } | Phase::Unresponsive { .. });
        let done = matches!(ack.status, AckStatus::Applied | AckStatus::Duplicate);
        if !(latest || (earlier && done)) {
            return;
        }
        match ack.status {
            AckStatus::Accepted => {}
            // A duplicate is a retry of a command the miner already has: as good as applied.
            AckStatus::Applied | AckStatus::Duplicate => {
                op.steps.remove(0);
                op.attempt_ids.clear();
                op.phase = if op.steps.is_empty() {
                    Phase::Applied { at: now }
                } else {
                    Phase::Queued
                };
            }
            AckStatus::Failed | AckStatus::Rejected => {
                op.phase = Phase::Failed {
                    reason: format!(
                        "{:?}: {}",
                        ack.status,
                        ack.reason.as_deref().unwrap_or("no reason given")
                    ),
                    at: now,
                };
            }
        }
    }

    /// One round at `now`: the commands to sign and publish (their `seq` already assigned),
    /// and every op moved on by what the fleet shows.
    pub fn tick(&mut self, now: u64, fleet: &FleetView) -> Vec<Command> {
        let mut out = Vec::new();
        let config = self.config;
        for op in self.ops.values_mut() {
            let heard = fleet.get(&op.miner);
            let reachable = fleet.reachable(&op.miner, now);
            match op.phase.clone() {
                Phase::Queued => {
                    // Already there (a restarted host re-deriving its plan): nothing to send.
                    let in_effect = heard.and_then(|h| h.setting()) == Some(op.want);
                    if in_effect && op.sent == 0 && !op.after_in_flight {
                        op.steps.clear();
                        op.phase = Phase::Verified { at: now };
                    } else if op.steps.is_empty() {
                        op.phase = Phase::Applied { at: now };
                    } else if now >= op.due && reachable {
                        out.push(issue(&self.site, op, &mut self.next_seq, 1, now, &config));
                    }
                }
                Phase::Sent { attempt, at, .. } => {
                    let wait = config.ack_timeout_s
                        + if attempt > 1 {
                            config.backoff_s << (attempt - 2).min(16)
                        } else {
                            0
                        };
                    if now < at + wait {
                        continue;
                    }
                    if attempt >= config.max_attempts {
                        op.phase = Phase::Unresponsive {
                            attempts: attempt,
                            at: now,
                        };
                    } else if reachable {
                        out.push(issue(
                            &self.site,
                            op,
                            &mut self.next_seq,
                            attempt + 1,
                            now,
                            &config,
                        ));
                    }
                }
                Phase::Applied { at } => match verified(op, heard, at, &config) {
                    Some(true) => {
                        op.phase = Phase::Verified { at: now };
                        self.switched
                            .insert(op.miner.clone(), (now, op.want != Setting::Sleep));
                    }
                    _ if now >= at + config.verify_within_s => {
                        let power = heard
                            .and_then(|h| h.power())
                            .map_or("no telemetry".into(), |p| format!("{p}"));
                        op.phase = Phase::Failed {
                            reason: format!(
                                "applied, but telemetry does not show it after {} s ({power})",
                                now - at
                            ),
                            at: now,
                        };
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        out
    }
}

/// Whether a miner showing `shows` has left `verified`: asleep against running, full against a
/// power target, or a power target off by more than the verification's tolerance — not a
/// target the miner reports a little differently (rounded, or clamped to its board), which
/// would otherwise be sent again every round.
fn drifted(shows: Setting, verified: Setting, tolerance: f64) -> bool {
    match (shows, verified) {
        (Setting::PowerTarget(a), Setting::PowerTarget(b)) => (a.0 / b.0 - 1.0).abs() > tolerance,
        (a, b) => a != b,
    }
}

/// The next command of `op`, as attempt `attempt`.
fn issue(
    site: &Name,
    op: &mut Op,
    next_seq: &mut u64,
    attempt: u32,
    now: u64,
    config: &ExecutorConfig,
) -> Command {
    let seq = *next_seq;
    *next_seq += 1;
    let id = format!("hw-{seq}");
    op.sent += 1;
    op.attempt_ids.push(id.clone());
    op.phase = Phase::Sent {
        id: id.clone(),
        attempt,
        at: now,
    };
    Command {
        v: VERSION,
        id,
        site: site.clone(),
        miner: op.name.clone(),
        issued_at: now,
        expires_at: now + config.command_ttl_s,
        seq,
        action: op.steps.first().cloned().unwrap_or(Action::Identify),
    }
}

/// Whether the miner's telemetry since `applied_at` shows `op.want`; `None` while there is no
/// telemetry since.
fn verified(
    op: &Op,
    heard: Option<&crate::fleet::Heard>,
    applied_at: u64,
    config: &ExecutorConfig,
) -> Option<bool> {
    let heard = heard?;
    let telemetry = heard.telemetry.as_ref()?;
    if heard.telemetry_at < applied_at {
        return None;
    }
    let power = telemetry.power_w;
    Some(match op.want {
        Setting::Sleep => {
            let ceiling = op.baseline.map_or(0.0, |b| b.0 * config.asleep_share);
            telemetry.mode == Mode::Sleeping && power <= ceiling.max(1.0)
        }
        Setting::Full => {
            telemetry.mode != Mode::Sleeping && power >= op.full.0 * config.awake_share
        }
        Setting::PowerTarget(w) => {
            telemetry.mode != Mode::Sleeping && (power / w.0 - 1.0).abs() <= config.target_tolerance
        }
    })
}

#[cfg(test)]
mod tests;
