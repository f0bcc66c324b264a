//! Carrying out what the operator asked — signed fleet commands, local API changes, the
//! failsafe — on every chain of the machine at once, and reporting how it went.

use futures_util::future::join_all;
use tracing::{info, warn};

use crate::board::Hardware;
use crate::control::{Change, Current, Decision, FailsafeAction, Intent, SleepCause};
use crate::desk::{CommandDesk, Received};
use crate::local::LocalAction;
use crate::mqtt::Fleet;
use crate::telemetry;
use crate::unit::Unit;
use crate::update::{Expected, Fetch};

/// The machine's settings as the first chain runs them (every chain gets the same commands).
fn current<H: Hardware>(
    units: &[Unit<H>],
) -> Option<(Current, &'static hashboard::board::BoardDescription)> {
    let first = units.first()?;
    Some((
        Current {
            frequency: first.hw().frequency(),
            core_mv: first.hw().core_mv(),
        },
        first.hw().description(),
    ))
}

/// Publishes the machine's retained state: the intent, the nameplate, and what the chains'
/// tuner measured.
pub fn publish_state<H: Hardware>(fleet: &Fleet, units: &[Unit<H>], intent: Intent) {
    let Some(first) = units.first() else {
        return;
    };
    let tune = telemetry::TuneView {
        tuning: units.iter().any(|u| u.autotune().tuning()),
        curve: crate::unit::machine_curve(
            units
                .iter()
                .filter(|u| u.working())
                .filter_map(|u| u.autotune().tuned.as_ref()),
        ),
    };
    fleet.link.state(&telemetry::state(
        first.hw().description(),
        intent,
        fleet.nameplate,
        tune,
    ));
}

/// The change on every chain at once (a sleep takes one ramp's time, not one per chain). A
/// machine's power target is shared equally between its chains.
///
/// A wake (or reboot) that brings some chains back but not all is applied: the chains that came
/// back mine, the others are left out from then on like a chain that failed at start (their
/// supply cut), and the note says which and why. When none comes back it fails and nothing is
/// left out, so the machine stays asleep and a later wake tries every chain again.
pub async fn apply_to_machine<H: Hardware>(
    units: &mut [Unit<H>],
    change: Change,
) -> Result<Option<String>, String> {
    let chains = units.len().max(1) as f64;
    let per_chain = match change {
        Change::PowerTarget(Some(watts)) => Change::PowerTarget(Some(watts / chains)),
        other => other,
    };
    let working = units.iter_mut().filter(|unit| unit.working());
    let results = join_all(working.map(|unit| async move {
        let held = unit.apply(per_chain).await.map_err(|e| e.to_string());
        (unit.index(), held)
    }))
    .await;
    match machine_outcome(results, matches!(per_chain, Change::Wake | Change::Reboot)) {
        MachineOutcome::Done(note) => Ok(note),
        MachineOutcome::Failed(reason) => Err(reason),
        MachineOutcome::LeaveOut { chains, note } => {
            for (index, reason) in chains {
                if let Some(unit) = units.iter_mut().find(|u| u.index() == index) {
                    unit.leave_out(format!("did not come back from sleep: {reason}"))
                        .await;
                }
            }
            Ok(Some(note))
        }
    }
}

/// What a change on every working chain came to.
#[derive(Debug, Clone, PartialEq)]
enum MachineOutcome {
    /// Every chain made it (or was held back, with the note saying why).
    Done(Option<String>),
    /// The change failed, naming every chain that failed and why.
    Failed(String),
    /// A wake some chains survived: these are left out, and the note says so.
    LeaveOut {
        chains: Vec<(u32, String)>,
        note: String,
    },
}

/// The partial-wake policy, from each chain's result (by index): a wake that brings some chains
/// back but not all is applied, any other failure fails the change.
fn machine_outcome(
    results: Vec<(u32, Result<Option<&'static str>, String>)>,
    waking: bool,
) -> MachineOutcome {
    let tried = results.len();
    let mut note: Option<&'static str> = None;
    let mut lost = Vec::new();
    for (index, result) in results {
        match result {
            Ok(held) => note = note.or(held),
            Err(e) => lost.push((index, e)),
        }
    }
    if lost.is_empty() {
        return MachineOutcome::Done(note.map(str::to_string));
    }
    let described: Vec<String> = lost
        .iter()
        .map(|(index, e)| format!("chain {index}: {e}"))
        .collect();
    if !waking || lost.len() == tried {
        return MachineOutcome::Failed(described.join("; "));
    }
    let lost_note = format!(
        "{} did not come back and {} left out; the others mine",
        described.join("; "),
        if described.len() == 1 { "is" } else { "are" }
    );
    MachineOutcome::LeaveOut {
        chains: lost,
        note: match note {
            Some(held) => format!("{held}; {lost_note}"),
            None => lost_note,
        },
    }
}

/// Makes a decision's change and says how it went: the intent now in effect and the note for
/// the ack (the decision's, and why the chains were held back, if they were).
async fn carry_out<H: Hardware>(
    decision: Decision,
    units: &mut [Unit<H>],
) -> Result<(Intent, Option<String>), String> {
    let (intent, change, note) = match decision {
        Decision::Fail(reason) => return Err(reason),
        Decision::Apply {
            intent,
            change,
            note,
        } => (intent, change, note),
    };
    let held = apply_to_machine(units, change).await?;
    let note = match (note, held) {
        (Some(note), Some(held)) => Some(format!("{note}; {held}")),
        (note, held) => note.or(held),
    };
    Ok((intent, note))
}

/// One command from `…/cmd`, start to finish: verify, ack, change the chains, ack again.
pub async fn obey<H: Hardware>(
    fleet: &mut Fleet,
    desk: &mut CommandDesk,
    units: &mut [Unit<H>],
    bytes: &[u8],
) {
    let Some((current, board)) = current(units) else {
        return;
    };
    match desk.receive(bytes, telemetry::unix_now(), current, board) {
        Received::Answered(ack) => fleet.link.ack(&ack),
        Received::Apply {
            accepted,
            id,
            action:
                fleet_proto::Action::Update {
                    url,
                    sha256,
                    version,
                },
            ..
        } => {
            fleet.link.ack(&accepted);
            let fetch = Fetch {
                url,
                expected: Expected { sha256, version },
            };
            let started = match &mut fleet.updater {
                Some(updater) => updater.start(id.clone(), fetch),
                None => Err("this miner has no [update] section: it installs no images".into()),
            };
            // Under way: the final ack comes when it ends (`finish_update`).
            if let Err(reason) = started {
                let ack = desk.finish(id, Err(reason), telemetry::unix_now());
                fleet.link.ack(&ack);
            }
        }
        Received::Apply {
            accepted,
            id,
            decision,
            ..
        } => {
            fleet.link.ack(&accepted);
            let outcome = carry_out(decision, units).await;
            let ack = desk.finish(id, outcome, telemetry::unix_now());
            fleet.link.ack(&ack);
            publish_state(fleet, units, desk.intent());
        }
    }
}

/// The final ack of an `update` command once its image is installed on trial, or refused.
pub fn finish_update(
    fleet: &Fleet,
    desk: &mut CommandDesk,
    id: String,
    outcome: Result<String, String>,
) {
    let intent = desk.intent();
    let ack = desk.finish(
        id,
        outcome.map(|note| (intent, Some(note))),
        telemetry::unix_now(),
    );
    fleet.link.ack(&ack);
}

/// One local change, decided and made like a fleet command, and as durable.
pub async fn apply_local<H: Hardware>(
    desk: &mut CommandDesk,
    units: &mut [Unit<H>],
    action: LocalAction,
) -> Result<Option<String>, String> {
    let action = match action {
        LocalAction::Fan(percent) => {
            info!(?percent, "local API: fan");
            for unit in units.iter_mut() {
                unit.set_fan(percent).map_err(|e| e.to_string())?;
            }
            return Ok(None);
        }
        LocalAction::Command(action) => action,
    };
    info!(?action, "local API");
    let (current, board) = current(units).ok_or("no chains")?;
    let decision = desk.decide_local(&action, current, board);
    let (intent, note) = carry_out(decision, units).await?;
    desk.commit(intent)
        .map_err(|e| format!("applied, but cannot persist it: {e}"))?;
    Ok(note)
}

/// The host has been silent for the configured time.
pub async fn failsafe<H: Hardware>(
    fleet: &mut Fleet,
    desk: &mut CommandDesk,
    units: &mut [Unit<H>],
) {
    let intent = desk.intent();
    match fleet.failsafe.1 {
        FailsafeAction::Keep => warn!("host silent: failsafe keeps the current mode"),
        FailsafeAction::Sleep if intent.sleeping.is_some() => {}
        FailsafeAction::Sleep => {
            warn!("host silent: failsafe puts the machine to sleep until woken");
            let asleep = Intent {
                sleeping: Some(SleepCause::Failsafe),
                ..intent
            };
            if let Err(e) = desk.set_intent(asleep) {
                warn!(error = %e, "cannot persist the failsafe sleep");
            }
            if let Err(e) = apply_to_machine(units, Change::Sleep).await {
                warn!(error = %e, "failsafe sleep failed");
            }
            publish_state(fleet, units, desk.intent());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_some_chains_survive_leaves_the_others_out_and_says_so() {
        let results = || {
            vec![
                (0, Ok(None)),
                (1, Err("bring-up failed".to_string())),
                (2, Ok(None)),
            ]
        };
        assert_eq!(
            machine_outcome(results(), true),
            MachineOutcome::LeaveOut {
                chains: vec![(1, "bring-up failed".into())],
                note: "chain 1: bring-up failed did not come back and is left out; the others mine"
                    .into(),
            }
        );
        // Anything but a wake fails whole: a sleep that did not take is not half a sleep.
        assert_eq!(
            machine_outcome(results(), false),
            MachineOutcome::Failed("chain 1: bring-up failed".into())
        );
        // No chain came back: nothing is left out, so a later wake tries them all again.
        let none = vec![(0, Err("a".to_string())), (1, Err("b".to_string()))];
        assert_eq!(
            machine_outcome(none, true),
            MachineOutcome::Failed("chain 0: a; chain 1: b".into())
        );
        let held = "overheated: the chains resume once they have cooled";
        assert_eq!(
            machine_outcome(vec![(0, Ok(Some(held))), (1, Ok(None))], true),
            MachineOutcome::Done(Some(held.into()))
        );
    }
}
