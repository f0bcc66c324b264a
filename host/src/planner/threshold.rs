//! Threshold mode: sleep the machines under water, wake the ones above it, each with a
//! hysteresis band around its own breakeven; then hold the site under its cap.

use super::order::EfficiencyOrder;
use super::{Decision, Economics, Inputs, Machine, Reason, SafePolicy, Setting};
use crate::units::Watts;

/// A decision before the cap and the batches: `to` what, why.
fn decide(machine: &Machine, to: Setting, reason: Reason, inputs: &Inputs<'_>) -> Decision {
    Decision {
        id: machine.id.clone(),
        from: machine.setting,
        to,
        reason,
        at: inputs.now,
        breakeven: None,
    }
}

/// What the planner may not touch — offline, exempt or overridden machines, and those whose
/// last change was not carried out — as the setting they keep and why. `None` for the rest.
pub(super) fn untouchable(machine: &Machine, now: u64) -> Option<(Setting, Reason)> {
    if let Some(manual) = machine.manual_at(now) {
        let reason = Reason::Manual {
            until: manual.until,
        };
        return Some((manual.setting, reason));
    }
    if !machine.online {
        return Some((machine.setting, Reason::Offline));
    }
    if machine.exempt {
        return Some((machine.setting, Reason::Exempt));
    }
    machine
        .unheeded_until
        .filter(|&until| now < until)
        .map(|until| (machine.setting, Reason::Unheeded { until }))
}

/// The decision for an untouchable machine, if it is one.
fn left_alone(machine: &Machine, inputs: &Inputs<'_>) -> Option<Decision> {
    untouchable(machine, inputs.now).map(|(to, reason)| decide(machine, to, reason, inputs))
}

/// Switches `machine` to `want` unless its dwell time holds it.
fn switch_unless_dwelling(
    machine: &Machine,
    want: Setting,
    reason: Reason,
    inputs: &Inputs<'_>,
) -> Decision {
    let switches = machine.running() != (want != Setting::Sleep);
    match machine.dwell_remaining(inputs.now, inputs.policy) {
        Some(remaining_s) if switches => decide(
            machine,
            machine.setting,
            Reason::Dwell { remaining_s },
            inputs,
        ),
        _ => decide(machine, want, reason, inputs),
    }
}

/// The market data has expired: every machine the planner may touch follows the safe policy.
pub(super) fn safe_policy(inputs: &Inputs<'_>, order: &EfficiencyOrder) -> Vec<Decision> {
    let policy = inputs.policy.safe;
    let reason = Reason::MarketExpired { policy };
    let mut decisions: Vec<Decision> = inputs
        .machines
        .iter()
        .map(|machine| {
            left_alone(machine, inputs).unwrap_or_else(|| match policy {
                SafePolicy::Keep => decide(machine, machine.setting, reason.clone(), inputs),
                SafePolicy::SleepAll => {
                    switch_unless_dwelling(machine, Setting::Sleep, reason.clone(), inputs)
                }
                SafePolicy::RunAll if machine.running() => {
                    decide(machine, machine.setting, reason.clone(), inputs)
                }
                SafePolicy::RunAll => {
                    switch_unless_dwelling(machine, Setting::Full, reason.clone(), inputs)
                }
            })
        })
        .collect();
    hold_cap(inputs, order, &mut decisions);
    decisions
}

pub(super) fn plan(
    inputs: &Inputs<'_>,
    order: &EfficiencyOrder,
    economics: &Economics,
) -> Vec<Decision> {
    let band = inputs.policy.band.max(0.0);
    let hashprice = economics.hashprice;
    let mut decisions: Vec<Decision> = inputs
        .machines
        .iter()
        .map(|machine| {
            let breakeven = machine.breakeven(economics);
            let under = Reason::UnderWater {
                hashprice,
                breakeven,
            };
            let above = Reason::AboveWater {
                hashprice,
                breakeven,
            };
            let inside = Reason::InsideBand {
                hashprice,
                breakeven,
            };
            let mut decision = left_alone(machine, inputs).unwrap_or_else(|| {
                let hold = |reason| decide(machine, machine.setting, reason, inputs);
                if machine.running() {
                    if hashprice.0 >= breakeven.0 * (1.0 - band) {
                        hold(if hashprice.0 > breakeven.0 {
                            above
                        } else {
                            inside
                        })
                    } else if let Some(remaining_s) =
                        machine.cooldown_remaining(inputs.now, inputs.policy)
                    {
                        hold(Reason::Cooldown { remaining_s })
                    } else {
                        switch_unless_dwelling(machine, Setting::Sleep, under, inputs)
                    }
                } else if hashprice.0 > breakeven.0 * (1.0 + band) {
                    switch_unless_dwelling(machine, Setting::Full, above, inputs)
                } else {
                    hold(if hashprice.0 < breakeven.0 {
                        under
                    } else {
                        inside
                    })
                }
            });
            decision.breakeven = Some(breakeven);
            decision
        })
        .collect();
    hold_cap(inputs, order, &mut decisions);
    decisions
}

/// Holds the site under its cap: wakes are granted most efficient first while they fit; if the
/// site is still over, running machines are slept least efficient first (dwell notwithstanding:
/// a cap is a contract). Untouchable machines are never touched; what they draw counts, so a
/// miner that ignored its curtailment is made up for by the next least efficient.
pub(super) fn hold_cap(inputs: &Inputs<'_>, order: &EfficiencyOrder, decisions: &mut [Decision]) {
    let Some(cap) = inputs.cap else {
        return;
    };
    let machines = inputs.machines;
    let touchable: Vec<bool> = decisions
        .iter()
        .map(|d| {
            !matches!(
                d.reason,
                Reason::Offline | Reason::Exempt | Reason::Manual { .. } | Reason::Unheeded { .. }
            )
        })
        .collect();
    let power = |i: usize, setting: Setting| machines[i].power_at(setting).0;
    let waking: Vec<bool> = (0..machines.len())
        .map(|i| !machines[i].running() && decisions[i].to != Setting::Sleep && touchable[i])
        .collect();
    // Offline machines draw nothing now; they are counted once they return.
    let mut planned: f64 = (0..machines.len())
        .filter(|&i| !waking[i] && machines[i].online)
        .map(|i| power(i, decisions[i].to))
        .sum();
    let wakes = (0..machines.len()).filter(|&i| waking[i]).collect();
    for i in order.sorted(wakes, false) {
        let extra = power(i, decisions[i].to);
        if planned + extra <= cap.0 {
            planned += extra;
        } else {
            decisions[i].to = Setting::Sleep;
            decisions[i].reason = Reason::NoRoomUnderCap { cap };
        }
    }
    if planned <= cap.0 {
        return;
    }
    let running: Vec<usize> = (0..machines.len())
        .filter(|&i| decisions[i].to != Setting::Sleep && machines[i].online && touchable[i])
        .collect();
    for i in order.sorted(running, true) {
        if planned <= cap.0 {
            break;
        }
        planned -= power(i, decisions[i].to);
        decisions[i].to = Setting::Sleep;
        decisions[i].reason = Reason::OverCap { cap };
    }
}

/// A site cap beats a manual override: when the site is still over its cap after everything the
/// planner may touch has been shed, machines overridden to run are slept too, least efficient
/// first, until it fits. Exempt (maintenance) machines and unheeded ones are still left alone:
/// the planner cannot count on a command reaching them.
pub(super) fn cap_beats_manual(
    inputs: &Inputs<'_>,
    order: &EfficiencyOrder,
    decisions: &mut [Decision],
) {
    let Some(cap) = inputs.cap else {
        return;
    };
    let machines = inputs.machines;
    let mut planned = planned_power(machines, decisions).0;
    if planned <= cap.0 {
        return;
    }
    let overridden: Vec<usize> = (0..machines.len())
        .filter(|&i| {
            machines[i].online
                && decisions[i].to != Setting::Sleep
                && matches!(decisions[i].reason, Reason::Manual { .. })
        })
        .collect();
    for i in order.sorted(overridden, true) {
        if planned <= cap.0 {
            break;
        }
        let Reason::Manual { until } = decisions[i].reason else {
            continue;
        };
        planned -= machines[i].power_at(decisions[i].to).0;
        decisions[i].to = Setting::Sleep;
        decisions[i].reason = Reason::CapBeatsManual { cap, until };
    }
}

/// The site's power in `decisions`, as the cap counts it (an offline machine draws nothing).
pub(super) fn planned_power(machines: &[Machine], decisions: &[Decision]) -> Watts {
    Watts(
        machines
            .iter()
            .zip(decisions)
            .filter(|(m, _)| m.online)
            .map(|(m, d)| m.power_at(d.to).0)
            .sum(),
    )
}
