//! Which pool to use and when to try again: ordered failover with exponential backoff.

/// Reconnect delays: 1 s, 2 s, 4 s … capped at 60 s; success resets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    pub const MIN_MS: u64 = 1_000;
    pub const MAX_MS: u64 = 60_000;

    /// Records a failure and returns how long to wait before the next attempt.
    pub fn failed(&mut self) -> u64 {
        let delay = Self::MIN_MS
            .saturating_mul(1 << self.failures.min(16))
            .min(Self::MAX_MS);
        self.failures = self.failures.saturating_add(1);
        delay
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
    }
}

/// An ordered list of pools: use the first that works; after `failures_before_failover` failed
/// attempts on one, move to the next; go back to the first (the preferred) after every wrap.
#[derive(Debug, Clone)]
pub struct Failover {
    pools: usize,
    current: usize,
    failures_here: u32,
    failures_before_failover: u32,
    backoff: Backoff,
}

/// What to do after a connection attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub pool: usize,
    pub after_ms: u64,
}

impl Failover {
    pub fn new(pools: usize, failures_before_failover: u32) -> Self {
        Self {
            pools: pools.max(1),
            current: 0,
            failures_here: 0,
            failures_before_failover: failures_before_failover.max(1),
            backoff: Backoff::default(),
        }
    }

    pub fn current(&self) -> usize {
        self.current
    }

    pub fn connected(&mut self) {
        self.failures_here = 0;
        self.backoff.succeeded();
    }

    pub fn failed(&mut self) -> Retry {
        self.failures_here += 1;
        if self.failures_here >= self.failures_before_failover {
            self.current = (self.current + 1) % self.pools;
            self.failures_here = 0;
        }
        Retry {
            pool: self.current,
            after_ms: self.backoff.failed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..8).map(|_| b.failed()).collect();
        assert_eq!(
            delays,
            [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]
        );
        b.succeeded();
        assert_eq!(b.failed(), 1_000);
    }

    #[test]
    fn failover_walks_the_list_and_wraps() {
        let mut f = Failover::new(3, 2);
        assert_eq!(f.failed().pool, 0);
        assert_eq!(f.failed().pool, 1, "second failure moves on");
        f.connected();
        assert_eq!(f.failed().pool, 1);
        assert_eq!(f.failed().pool, 2);
        f.failed();
        assert_eq!(f.failed().pool, 0, "wraps to the preferred pool");
    }
}
