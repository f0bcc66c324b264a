//! The fleet in efficiency order, computed once per plan: every "least efficient first" and
//! "most efficient first" in the planner is then a sort by an integer rank.

use super::Machine;

#[derive(Debug, Clone)]
pub(super) struct EfficiencyOrder {
    /// Each machine's place from most to least efficient; ties by id, so a plan does not depend
    /// on the order the machines were listed in.
    rank: Vec<u32>,
}

impl EfficiencyOrder {
    pub(super) fn new(machines: &[Machine]) -> Self {
        let efficiency: Vec<f64> = machines.iter().map(|m| m.efficiency().0).collect();
        let mut by_rank: Vec<usize> = (0..machines.len()).collect();
        by_rank.sort_unstable_by(|&a, &b| {
            efficiency[a]
                .total_cmp(&efficiency[b])
                .then_with(|| machines[a].id.cmp(&machines[b].id))
        });
        let mut rank = vec![0u32; machines.len()];
        for (place, &i) in by_rank.iter().enumerate() {
            rank[i] = place as u32;
        }
        Self { rank }
    }

    /// `indices`, least efficient first when `worst_first`, else most efficient first.
    pub(super) fn sorted(&self, mut indices: Vec<usize>, worst_first: bool) -> Vec<usize> {
        indices.sort_unstable_by_key(|&i| self.rank[i]);
        if worst_first {
            indices.reverse();
        }
        indices
    }
}
