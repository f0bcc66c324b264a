//! Following a change by hand (`hashwarden curtail|resume --wait`) to its end, from what the
//! running agent writes to the store: a miner is done when the audit log shows its change
//! verified (or failed, or unresponsive), or when the fleet table, refreshed since the override,
//! shows it already where it was sent (nothing to switch, so nothing to verify).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::planner::Setting;
use crate::store::{AuditEntry, FleetRow};

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
        // The agent logs the setting each outcome was for first ("Sleep; power now …").
        let wanted = format!("{:?}", self.wanted);
        for entry in outcomes {
            let for_this = entry.kind == "unresponsive" || entry.detail.starts_with(&wanted);
            if !for_this {
                continue;
            }
            let outcome = match entry.kind.as_str() {
                "verified" => Outcome::Verified,
                "failed" => Outcome::Failed(entry.detail.clone()),
                "unresponsive" => Outcome::Unresponsive,
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

    fn entry(miner: &str, kind: &str) -> AuditEntry {
        AuditEntry {
            at: 100,
            miner: miner.into(),
            kind: kind.into(),
            detail: format!("Sleep: {kind} detail"),
        }
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
        }
    }

    #[test]
    fn each_miner_finishes_once_by_the_log_or_by_the_fleet_table() {
        let miners: Vec<String> = ["m1", "m2", "m3", "m4"].map(String::from).to_vec();
        let mut follow = Follow::new(&miners, Setting::Sleep, 100);
        // Stale rows (before the override) and miners not followed say nothing.
        let stale = [row("m4", "sleeping", Setting::Sleep, 99)];
        assert!(follow.take(&[entry("m9", "verified")], &stale).is_empty());
        // Planned but not yet asleep: not done.
        assert!(
            follow
                .take(&[], &[row("m4", "mining", Setting::Sleep, 101)])
                .is_empty()
        );
        let done = follow.take(
            &[
                entry("m1", "verified"),
                entry("m2", "failed"),
                entry("m1", "failed"),
            ],
            &[row("m4", "sleeping", Setting::Sleep, 101)],
        );
        assert_eq!(
            done,
            [
                ("m1".to_string(), Outcome::Verified),
                (
                    "m2".to_string(),
                    Outcome::Failed("Sleep: failed detail".into())
                ),
                ("m4".to_string(), Outcome::InEffect),
            ]
        );
        assert_eq!((follow.finished(), follow.total()), (3, 4));
        assert!(follow.outcomes()["m3"].is_none());
        let done = follow.take(&[entry("m3", "unresponsive")], &[]);
        assert_eq!(done, [("m3".to_string(), Outcome::Unresponsive)]);
        assert_eq!(follow.finished(), 4);
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
        assert!(follow.take(&[entry("m1", "verified")], &[]).is_empty());
        assert_eq!(
            follow
                .take(&[], &[row("m1", "mining", Setting::Full, 125)])
                .len(),
            1
        );
    }
}
