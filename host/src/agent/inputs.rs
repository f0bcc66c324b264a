//! The planner's input, from what the agent holds: the machines as heard, with the operator's
//! overrides and what the executor has under way, and this agent's part of the site's cap when
//! it is one of a group. Pure: no store, no clock, no broker.

use crate::executor::Executor;
use crate::planner::{Machine, Manual, Setting};
use crate::units::Watts;

/// Each machine as the planner must see it: its override, its last switch (dwell survives a
/// restart), whether its last change was carried out, and a change on its way counted as made
/// so that the plan does not flip it back meanwhile.
pub fn with_history(machines: &mut [Machine], overrides: &[(String, Manual)], executor: &Executor) {
    for machine in machines {
        machine.manual = overrides
            .iter()
            .find(|(miner, _)| *miner == machine.id)
            .map(|(_, manual)| *manual);
        if let Some((at, on)) = executor.last_switch(&machine.id) {
            machine.last_switch_at = Some(at);
            if on {
                machine.last_wake_at = Some(at);
            }
        }
        machine.unheeded_until = executor.not_carried_out(&machine.id);
        if let Some(op) = executor.op(&machine.id)
            && op.phase.in_flight()
        {
            if (op.want == Setting::Sleep) != (machine.setting == Setting::Sleep) {
                machine.last_switch_at = Some(op.due);
            }
            machine.setting = op.want;
        }
    }
}

/// This agent's part of the site's cap: its own machines' share of the site's full power (an
/// equal share of the group when no machine says what it draws).
pub fn cap_share(
    cap: Option<Watts>,
    site: &[Machine],
    owns: impl Fn(&str) -> bool,
    agents: usize,
) -> Option<Watts> {
    let full = |m: &Machine| m.full.watts.0;
    let site_w: f64 = site.iter().map(full).sum();
    let own_w: f64 = site.iter().filter(|m| owns(&m.id)).map(full).sum();
    let share = if site_w > 0.0 {
        own_w / site_w
    } else {
        1.0 / agents.max(1) as f64
    };
    cap.map(|watts| Watts(watts.0 * share))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backtest::fleet::machine;

    #[test]
    fn an_agent_gets_its_machines_share_of_the_cap() {
        // 1 kW and 3 kW at full power: the agent owning the second gets three quarters.
        let site = [machine("a", 40.0, 25.0), machine("b", 100.0, 30.0)];
        let cap = Some(Watts(2_000.0));
        assert_eq!(
            cap_share(cap, &site, |id| id == "b", 2),
            Some(Watts(1_500.0))
        );
        assert_eq!(cap_share(cap, &site, |id| id == "a", 2), Some(Watts(500.0)));
        assert_eq!(cap_share(None, &site, |_| true, 2), None);
        // Nothing says what it draws: an equal share of the group.
        assert_eq!(cap_share(cap, &[], |_| true, 4), Some(Watts(500.0)));
    }

    #[test]
    fn a_change_on_its_way_counts_as_made_and_an_override_is_attached() {
        let mut executor = Executor::new(
            fleet_proto::Name::new("site").expect("name"),
            crate::executor::ExecutorConfig::default(),
            1,
        );
        executor.want(
            "a",
            Setting::Full,
            Setting::Sleep,
            100,
            None,
            Watts(1_000.0),
        );
        let mut machines = vec![machine("a", 40.0, 25.0), machine("b", 100.0, 30.0)];
        let overrides = vec![(
            "b".to_string(),
            Manual {
                setting: Setting::Sleep,
                until: 500,
            },
        )];
        with_history(&mut machines, &overrides, &executor);
        assert_eq!(
            machines[0].setting,
            Setting::Sleep,
            "queued: counted as made"
        );
        assert_eq!(
            machines[0].last_switch_at,
            Some(100),
            "its switch dates from when it is due"
        );
        assert_eq!(machines[0].manual, None);
        assert_eq!(machines[1].manual, overrides.first().map(|(_, m)| *m));
        assert_eq!(machines[1].setting, Setting::Full);
    }
}
