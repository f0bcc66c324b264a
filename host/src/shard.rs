//! Several agents on one site, behind one (clustered) broker: who commands which miner.
//!
//! Each agent of a group takes the telemetry through a shared subscription, so the broker
//! hands every report to one agent of the group — with the usual round-robin or random
//! strategy, each agent hears every miner, at 1/n of the rate. Commands must come from exactly
//! one agent, so ownership is decided apart from where telemetry lands: rendezvous hashing over
//! the agents that are online (their retained presence, which every agent reads), so every agent
//! computes the same owner for every miner, and an agent joining or leaving moves only its own
//! share of the fleet.

use std::collections::BTreeSet;

/// This agent and the peers it can see online.
#[derive(Debug, Clone)]
pub struct Group {
    me: String,
    peers: BTreeSet<String>,
}

impl Group {
    pub fn new(me: &str) -> Self {
        Self {
            me: me.to_string(),
            peers: BTreeSet::new(),
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// A peer's presence; returns whether the membership changed. The agent's own presence
    /// (echoed back by the broker) is not a peer.
    pub fn presence(&mut self, instance: &str, online: bool) -> bool {
        if instance == self.me {
            return false;
        }
        if online {
            self.peers.insert(instance.to_string())
        } else {
            self.peers.remove(instance)
        }
    }

    /// Agents in the group, this one included.
    pub fn size(&self) -> usize {
        self.peers.len() + 1
    }

    /// The agent that commands `miner`.
    pub fn owner(&self, miner: &str) -> &str {
        std::iter::once(&self.me)
            .chain(&self.peers)
            .max_by_key(|member| (score(member, miner), member.as_str()))
            .map_or(self.me.as_str(), String::as_str)
    }

    pub fn owns(&self, miner: &str) -> bool {
        self.owner(miner) == self.me
    }
}

/// A stable 64-bit score for (agent, miner): FNV-1a over both names, then a 64-bit finaliser so
/// similar names spread. Fixed here (not `std`'s hasher, which may change between Rust
/// releases) because agents of different builds must agree during a rolling upgrade.
fn score(member: &str, miner: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    // The 0xff separator cannot occur in UTF-8, so ("ab","c") and ("a","bc") differ.
    for byte in member.bytes().chain([0xff]).chain(miner.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    // splitmix64's finaliser.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(me: &str, all: &[&str]) -> Group {
        let mut group = Group::new(me);
        for peer in all {
            group.presence(peer, true);
        }
        group
    }

    fn miners(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("s19-r{:02}-{:03}", i / 100, i % 100))
            .collect()
    }

    #[test]
    fn every_miner_has_exactly_one_owner_and_shares_are_even() {
        let names = ["agent-a", "agent-b", "agent-c", "agent-d"];
        let views: Vec<Group> = names.iter().map(|me| group(me, &names)).collect();
        let fleet = miners(10_000);
        let mut counts = [0usize; 4];
        for miner in &fleet {
            let owners: Vec<usize> = (0..4).filter(|&i| views[i].owns(miner)).collect();
            assert_eq!(owners.len(), 1, "{miner}: {owners:?}");
            counts[owners[0]] += 1;
            assert!(views.iter().all(|v| v.owner(miner) == names[owners[0]]));
        }
        for count in counts {
            assert!((2_200..2_800).contains(&count), "uneven split: {counts:?}");
        }
    }

    #[test]
    fn an_agent_leaving_moves_only_its_own_miners() {
        let all = ["a1", "a2", "a3"];
        let before = group("a1", &all);
        let mut after = before.clone();
        assert!(after.presence("a3", false));
        assert!(!after.presence("a3", false), "no change the second time");
        assert_eq!(after.size(), 2);
        let mut moved = 0;
        for miner in miners(3_000) {
            let (was, is) = (before.owner(&miner), after.owner(&miner));
            if was != "a3" {
                assert_eq!(was, is, "{miner} moved though its owner stayed");
            } else {
                moved += 1;
                assert_ne!(is, "a3");
            }
        }
        assert!(moved > 800, "a3 owned a third: {moved}");
    }

    #[test]
    fn alone_an_agent_owns_everything_and_ignores_its_own_echo() {
        let mut alone = Group::new("solo");
        assert!(!alone.presence("solo", true));
        assert_eq!(alone.size(), 1);
        assert!(miners(100).iter().all(|m| alone.owns(m)));
    }

    #[test]
    fn scores_separate_the_two_names() {
        assert_ne!(score("ab", "c"), score("a", "bc"));
        assert_ne!(score("a", "m1"), score("b", "m1"));
    }
}
