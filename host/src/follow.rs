//! Following a change by hand (`hashwarden curtail|resume --wait`) to its end, from what the
//! running agent writes to the store: a miner is done when the audit log shows its change
//! verified (or failed, or unresponsive), or when the fleet table, refreshed since the override,
//! shows it already where it was sent (nothing to switch, so nothing to verify).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::planner::Setting;
use crate::store::{AuditEntry, AuditKind, FleetRow};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    Verified,
    InEffect,
    Failed(String),
    Unresponsive,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        matches!(self, Outcome::Verified | Outcome::InEffect)
    }
}

#[derive(Debug, Clone)]
pub struct Follow {
    wanted: Setting,
    /// Unix s of the override: fleet rows older than this say nothing about it.
    since: u64,
    outcomes: BTreeMap<String, Option<Outcome>>,
}

impl Follow {
    pub fn new(miners: &[String], wanted: Setting, since: u64) -> Self {
        Self {
            wanted,
            since,
            outcomes: miners.iter().map(|m| (m.clone(), None)).collect(),
        }
    }

    /// Takes what the store shows now; returns the miners newly finished.
    pub fn take(&mut self, outcomes: &[AuditEntry], fleet: &[FleetRow]) -> Vec<(String, Outcome)> {
        let mut finished = Vec::new();
        for entry in outcomes {
            // A miner that never answered is done, whatever it was last sent.
            let for_this =
                entry.kind == AuditKind::Unresponsive || entry.wanted == Some(self.wanted);
            if !for_this {
                continue;
            }
            let outcome = match entry.kind {
                AuditKind::Verified => Outcome::Verified,
                AuditKind::Failed => Outcome::Failed(entry.detail.clone()),
                AuditKind::Unresponsive => Outcome::Unresponsive,
                _ => continue,
            };
            if let Some(slot @ None) = self.outcomes.get_mut(&entry.miner) {
                *slot = Some(outcome.clone());
                finished.push((entry.miner.clone(), outcome));
            }
        }
        for row in fleet {
            let there = row.last_seen >= self.since
                && row.target == self.wanted
                && (row.mode == "sleeping") == (self.wanted == Setting::Sleep);
            if let Some(slot @ None) = self.outcomes.get_mut(&row.miner)
                && there
            {
                *slot = Some(Outcome::InEffect);
                finished.push((row.miner.clone(), Outcome::InEffect));
            }
        }
        finished
    }

    pub fn total(&self) -> usize {
        self.outcomes.len()
    }

    pub fn finished(&self) -> usize {
        self.outcomes.values().filter(|o| o.is_some()).count()
    }

    /// Every miner with its outcome (`None`: still under way).
    pub fn outcomes(&self) -> &BTreeMap<String, Option<Outcome>> {
        &self.outcomes
    }
}

/// The bar long operations show: drawn only when stderr is a terminal, so scripts and logs get
/// the final table alone.
pub fn progress_bar(len: u64, message: &str) -> Result<indicatif::ProgressBar, String> {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{bar:40}] {pos}/{len} {msg} ({elapsed})",
        )
        .map_err(|e| e.to_string())?
        .progress_chars("=> "),
    );
    bar.set_message(message.to_string());
    Ok(bar)
}

/// The miners a command names, or with `all` every miner in the agent's fleet table.
pub fn chosen_miners(
    store: &crate::store::Store,
    named: &[String],
    all: bool,
) -> Result<Vec<String>, String> {
    match (all, named.is_empty()) {
        (true, true) => Ok(store
            .fleet()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|r| r.miner)
            .collect()),
        (false, false) => Ok(named.to_vec()),
        (true, false) => Err("name miners or give --all, not both".into()),
        (false, true) => Err("name the miners, or give --all".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(miner: &str, kind: AuditKind) -> AuditEntry {
        AuditEntry::new(100, miner, kind, format!("sleep: {kind} detail")).about(Setting::Sleep)
    }

    fn row(miner: &str, mode: &str, target: Setting, last_seen: u64) -> FleetRow {
        FleetRow {
            miner: miner.into(),
            online: true,
            mode: mode.into(),
            hashrate_ths: 0.0,
            power_w: 0.0,
            j_per_th: None,
            breakeven: None,
            margin: None,
            target,
            reason: String::new(),
            last_seen,
            enrolment: None,
        }
    }

    #[test]
    fn each_miner_finishes_once_by_the_log_or_by_the_fleet_table() {
        let miners: Vec<String> = ["m1", "m2", "m3", "m4"].map(String::from).to_vec();
        let mut follow = Follow::new(&miners, Setting::Sleep, 100);
        // Stale rows (before the override) and miners not followed say nothing.
        let stale = [row("m4", "sleeping", Setting::Sleep, 99)];
        assert!(
            follow
                .take(&[entry("m9", AuditKind::Verified)], &stale)
                .is_empty()
        );
        // Planned but not yet asleep: not done.
        assert!(
            follow
                .take(&[], &[row("m4", "mining", Setting::Sleep, 101)])
                .is_empty()
        );
        let done = follow.take(
            &[
                entry("m1", AuditKind::Verified),
                entry("m2", AuditKind::Failed),
                entry("m1", AuditKind::Failed),
            ],
            &[row("m4", "sleeping", Setting::Sleep, 101)],
        );
        assert_eq!(
            done,
            [
                ("m1".to_string(), Outcome::Verified),
                (
                    "m2".to_string(),
                    Outcome::Failed("sleep: failed detail".into())
                ),
                ("m4".to_string(), Outcome::InEffect),
            ]
        );
        assert_eq!((follow.finished(), follow.total()), (3, 4));
        assert!(follow.outcomes()["m3"].is_none());
        let done = follow.take(&[entry("m3", AuditKind::Unresponsive)], &[]);
        assert_eq!(done, [("m3".to_string(), Outcome::Unresponsive)]);
        assert_eq!(follow.finished(), 4);
    }

    #[test]
    fn an_outcome_for_another_setting_does_not_answer_the_override() {
        let miners = vec!["m1".to_string()];
        let mut follow = Follow::new(&miners, Setting::Full, 100);
        // A sleep verified after the override was asked: not the wake being followed, even
        // though its words look alike.
        let sleep = entry("m1", AuditKind::Verified);
        let unlabelled =
            AuditEntry::new(100, "m1", AuditKind::Verified, "full; power now 0 W".into());
        assert!(follow.take(&[sleep, unlabelled], &[]).is_empty());
        let wake =
            AuditEntry::new(101, "m1", AuditKind::Verified, String::new()).about(Setting::Full);
        assert_eq!(
            follow.take(&[wake], &[]),
            [("m1".to_string(), Outcome::Verified)]
        );
    }

    #[test]
    fn a_wake_is_in_effect_only_when_the_miner_mines() {
        let miners = vec!["m1".to_string()];
        let mut follow = Follow::new(&miners, Setting::Full, 100);
        assert!(
            follow
                .take(&[], &[row("m1", "sleeping", Setting::Full, 120)])
                .is_empty()
        );
        // A verified sleep (an earlier plan's) is not this wake.
        assert!(
            follow
                .take(&[entry("m1", AuditKind::Verified)], &[])
                .is_empty()
        );
        assert_eq!(
            follow
                .take(&[], &[row("m1", "mining", Setting::Full, 125)])
                .len(),
            1
        );
    }
}
