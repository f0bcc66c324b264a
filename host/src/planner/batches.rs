//! Staggered ramps: thousands of machines never switch at once (inrush, breaker trips, a
//! regulator's staircase). Changes that lower power go out least efficient first, changes that
//! raise it most efficient first, `batch_size` per `batch_interval_s`.

use super::order::EfficiencyOrder;
use super::{Decision, Inputs};

pub(super) fn stagger(inputs: &Inputs<'_>, order: &EfficiencyOrder, decisions: &mut [Decision]) {
    let machines = inputs.machines;
    let policy = inputs.policy;
    let power = |i: usize, to: bool| {
        let d = &decisions[i];
        machines[i].power_at(if to { d.to } else { d.from }).0
    };
    let changing = (0..decisions.len()).filter(|&i| decisions[i].changes());
    let (downs, ups): (Vec<usize>, Vec<usize>) =
        changing.partition(|&i| power(i, true) < power(i, false));
    let batch = policy.batch_size.max(1);
    for (indices, worst_first) in [(downs, true), (ups, false)] {
        for (k, i) in order.sorted(indices, worst_first).into_iter().enumerate() {
            decisions[i].at = inputs.now + (k / batch) as u64 * policy.batch_interval_s;
        }
    }
}
