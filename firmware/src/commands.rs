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
            frequency: first.hw.frequency(),
            core_mv: first.hw.core_mv(),
        },
        first.hw.description(),
    ))
}

/// Publishes the machine's retained state: the intent, the nameplate, and what the chains'
/// tuner measured.
pub fn publish_state<H: Hardware>(fleet: &Fleet, units: &[Unit<H>], intent: Intent) {
    let Some(first) = units.first() else {
        return;
    };
    let tune = telemetry::TuneView {
        tuning: units.iter().any(|u| u.autotune.tuning()),
        curve: crate::unit::machine_curve(
            units
                .iter()
                .filter(|u| u.failed.is_none())
                .filter_map(|u| u.autotune.tuned.as_ref()),
        ),
    };
    fleet.link.state(&telemetry::state(
        first.hw.description(),
        intent,
        fleet.nameplate,
        tune,
    ));
}

/// Makes a decided change on one chain. A chain the thermal guard stopped stays down until it
/// has cooled, whatever the command: the intent is kept and applied at resume.
async fn apply_change<H: Hardware>(
    unit: &mut Unit<H>,
    change: Change,
) -> Result<Option<&'static str>, String> {
    let held = Some("overheated: the chains resume once they have cooled");
    if let Change::Tune(_) = change {
        unit.autotune.retry();
    }
    let (board, cooling) = (&mut unit.hw, &mut unit.cooling);
    let outcome = match change {
        Change::Nothing => Ok(None),
        Change::Sleep => board.sleep().await.map(|()| None),
        Change::Wake | Change::Reboot if cooling.overheated() => Ok(held),
        Change::Wake => board.power_up().await.map(|()| None),
        Change::Frequency(target) => {
            cooling.set_power_target(None);
            board.set_frequency(target).await?;
            cooling.base_clocks = board.clocks().to_vec();
            Ok(None)
        }
        Change::PowerTarget(watts) => return unit.aim_power(watts).await.map(|()| None),
        // The loop's reconcile starts the tune; only a board that cannot be measured refuses.
        Change::Tune(_) if board.power_w().is_none() => {
            Err("tuning needs the board's power reading, and this board has none".into())
        }
        Change::Tune(_) => Ok(None),
        Change::CoreVoltage(mv) => board.set_core_voltage(mv).await.map(|()| None),
        Change::Reboot => {
            board.sleep().await?;
            board.power_up().await.map(|()| None)
        }
        Change::Identify => {
            info!("identify: this is the machine");
            Ok(None)
        }
    };
    if matches!(change, Change::Wake | Change::Reboot) {
        // A re-initialised chain has forgotten its jobs.
        unit.mining.restart(&unit.hw);
        // A target kept while asleep is aimed now that the chips run.
        if outcome.is_ok()
            && let Err(e) = unit.aim_power(unit.cooling.power_target()).await
        {
            warn!(chain = unit.index, error = %e, "power target: cannot move to the curve's point");
        }
    }
    outcome
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
    let working = units.iter_mut().filter(|unit| unit.failed.is_none());
    let results = join_all(working.map(|unit| async move {
        let held = apply_change(unit, per_chain).await;
        (unit.index, held)
    }))
    .await;
    let tried = results.len();
    let mut note: Option<&'static str> = None;
    let mut lost = Vec::new();
    for (index, result) in results {
        match result {
            Ok(held) => note = note.or(held),
            Err(e) => lost.push((index, e)),
        }
    }
    let waking = matches!(per_chain, Change::Wake | Change::Reboot);
    if lost.is_empty() {
        return Ok(note.map(str::to_string));
    }
    let described: Vec<String> = lost
        .iter()
        .map(|(index, e)| format!("chain {index}: {e}"))
        .collect();
    if !waking || lost.len() == tried {
        return Err(described.join("; "));
    }
    for (index, reason) in lost {
        if let Some(unit) = units.iter_mut().find(|u| u.index == index) {
            // Half brought up, it may draw power for nothing.
            if let Err(e) = unit.hw.sleep().await {
                warn!(chain = index, error = %e, "cannot cut the supply of a chain that did not come back");
            }
            unit.fail(format!("did not come back from sleep: {reason}"));
        }
    }
    let lost_note = format!(
        "{} did not come back and {} left out; the others mine",
        described.join("; "),
        if described.len() == 1 { "is" } else { "are" }
    );
    Ok(Some(match note {
        Some(held) => format!("{held}; {lost_note}"),
        None => lost_note,
    }))
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
                unit.cooling.set_manual_fan(&mut unit.hw, percent)?;
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
