//! Hashprice from the network (difficulty, block subsidy, fees, BTC price), and the guard that
//! keeps bad market data out of the planner: a price of zero, a difficulty off by 10×, a
//! timestamp from the future are refused with a reason, and the last good value is used for a
//! bounded time only.

use serde::{Deserialize, Serialize};

use crate::units::UsdPerPhDay;

/// Blocks between subsidy halvings.
pub const HALVING_INTERVAL: u64 = 210_000;
const INITIAL_SUBSIDY_BTC: f64 = 50.0;
/// Hashes expected per block at difficulty 1.
const HASHES_PER_DIFFICULTY: f64 = 4_294_967_296.0;

/// The block subsidy at `height`, BTC (3.125 since the April 2024 halving at 840,000).
pub fn block_subsidy_btc(height: u64) -> f64 {
    let halvings = height / HALVING_INTERVAL;
    if halvings >= 64 {
        0.0
    } else {
        INITIAL_SUBSIDY_BTC / (1u64 << halvings) as f64
    }
}

/// What the network pays, as operators read it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub difficulty: f64,
    pub height: u64,
    /// Fees per block averaged over the last 144 blocks, BTC.
    pub fees_per_block_btc: f64,
    pub btc_usd: f64,
}

impl Network {
    /// USD per PH/s per day: a PH/s finds `1e15 · 86400 / (D · 2^32)` blocks a day.
    pub fn hashprice(&self) -> UsdPerPhDay {
        let blocks_per_ph_day = 1e15 * 86_400.0 / (self.difficulty * HASHES_PER_DIFFICULTY);
        UsdPerPhDay(
            blocks_per_ph_day
                * (block_subsidy_btc(self.height) + self.fees_per_block_btc)
                * self.btc_usd,
        )
    }

    /// The network's hash rate, EH/s (one block per 600 s at difficulty D).
    pub fn hashrate_ehs(&self) -> f64 {
        self.difficulty * HASHES_PER_DIFFICULTY / 600.0 / 1e18
    }
}

/// One market reading, from whichever source.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// Unix seconds the reading is for.
    pub at: u64,
    pub hashprice: UsdPerPhDay,
    /// When the source gave the network figures (not only a hashprice).
    pub difficulty: Option<f64>,
}

impl Reading {
    /// A `…/market` message: its hashprice, or one computed from its network figures.
    pub fn from_message(message: &fleet_proto::Market) -> Result<Self, Refused> {
        if let Some(hashprice) = message.hashprice_usd_per_ph_day {
            return Ok(Self {
                at: message.at,
                hashprice: UsdPerPhDay(hashprice),
                difficulty: message.difficulty,
            });
        }
        match (
            message.difficulty,
            message.height,
            message.fees_per_block_btc,
            message.btc_usd,
        ) {
            (Some(difficulty), Some(height), Some(fees_per_block_btc), Some(btc_usd)) => {
                if !(fees_per_block_btc.is_finite() && fees_per_block_btc >= 0.0) {
                    return Err(Refused::NotPositive {
                        what: "fees per block",
                        value: fees_per_block_btc,
                    });
                }
                if !(btc_usd.is_finite() && btc_usd > 0.0) {
                    return Err(Refused::NotPositive {
                        what: "BTC price",
                        value: btc_usd,
                    });
                }
                Ok(Self::from_network(
                    message.at,
                    &Network {
                        difficulty,
                        height,
                        fees_per_block_btc,
                        btc_usd,
                    },
                ))
            }
            _ => Err(Refused::Incomplete),
        }
    }

    pub fn from_network(at: u64, network: &Network) -> Self {
        Self {
            at,
            hashprice: network.hashprice(),
            difficulty: Some(network.difficulty),
        }
    }
}

/// Why a reading was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    #[error("{what} is {value}: not a positive number")]
    NotPositive { what: &'static str, value: f64 },
    #[error("timestamped {ahead_s} s in the future")]
    FromTheFuture { ahead_s: u64 },
    #[error("older than the last good reading ({at} < {last})")]
    Older { at: u64, last: u64 },
    #[error("difficulty moved {ratio:.1}× from the last good reading: implausible")]
    DifficultyJump { ratio: f64 },
    #[error("hashprice moved {ratio:.1}× from the last good reading: implausible")]
    HashpriceJump { ratio: f64 },
    #[error(
        "hashprice would have moved {ratio:.1}× within {window_h} h of good readings, in steps \
         each small enough: implausible"
    )]
    HashpriceDrift { ratio: f64, window_h: u64 },
    #[error("neither a hashprice nor all of difficulty, height, fees and BTC price")]
    Incomplete,
}

/// What the planner may use now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MarketView {
    /// A good reading, `age_s` old, within the bound.
    Current { hashprice: UsdPerPhDay, age_s: u64 },
    /// No good reading within the bound: the site's safe policy applies.
    Expired { last: Option<UsdPerPhDay> },
}

/// The guard's limits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Plausibility {
    /// How long a good reading stands in for the market, s.
    pub max_age_s: u64,
    /// Clock skew tolerated on a source's timestamp, s.
    pub max_future_s: u64,
    /// Largest move between consecutive good readings, as a factor either way.
    pub max_difficulty_ratio: f64,
    pub max_hashprice_ratio: f64,
}

impl Default for Plausibility {
    fn default() -> Self {
        Self {
            max_age_s: 3 * 3600,
            max_future_s: 300,
            // A retarget moves difficulty by a few percent; 10× is a wrong unit or a bad feed.
            max_difficulty_ratio: 10.0,
            // BTC's worst days move hashprice by tens of percent, not 3×.
            max_hashprice_ratio: 3.0,
        }
    }
}

/// Keeps the last good reading; refuses implausible ones.
#[derive(Debug, Clone, Default)]
pub struct MarketGuard {
    limits: Plausibility,
    last: Option<Reading>,
    /// The good readings of the last `max_age_s`, oldest first: a run of steps each inside the
    /// jump bound must not add up to more than it either.
    recent: std::collections::VecDeque<Reading>,
}

/// Good readings remembered for the cumulative bound at most (a feed every second for hours).
const RECENT_READINGS: usize = 4_096;

fn ratio(a: f64, b: f64) -> f64 {
    if a > b { a / b } else { b / a }
}

impl MarketGuard {
    pub fn new(limits: Plausibility) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Takes `reading` at unix time `now` if it is plausible. Jumps are judged against the last
    /// good reading only while it is current: after an outage the market may really have moved.
    pub fn offer(&mut self, reading: Reading, now: u64) -> Result<(), Refused> {
        let positive = |what, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(Refused::NotPositive { what, value })
            }
        };
        positive("hashprice", reading.hashprice.0)?;
        if let Some(difficulty) = reading.difficulty {
            positive("difficulty", difficulty)?;
        }
        if reading.at > now + self.limits.max_future_s {
            return Err(Refused::FromTheFuture {
                ahead_s: reading.at - now,
            });
        }
        if let Some(last) = self.last {
            if reading.at < last.at {
                return Err(Refused::Older {
                    at: reading.at,
                    last: last.at,
                });
            }
            if now.saturating_sub(last.at) <= self.limits.max_age_s {
                if let (Some(d), Some(last_d)) = (reading.difficulty, last.difficulty) {
                    let r = ratio(d, last_d);
                    if r > self.limits.max_difficulty_ratio {
                        return Err(Refused::DifficultyJump { ratio: r });
                    }
                }
                let r = ratio(reading.hashprice.0, last.hashprice.0);
                if r > self.limits.max_hashprice_ratio {
                    return Err(Refused::HashpriceJump { ratio: r });
                }
            }
        }
        let window_start = now.saturating_sub(self.limits.max_age_s);
        while self.recent.front().is_some_and(|r| r.at < window_start) {
            self.recent.pop_front();
        }
        let drift = self
            .recent
            .iter()
            .map(|r| ratio(reading.hashprice.0, r.hashprice.0))
            .fold(1.0, f64::max);
        if drift > self.limits.max_hashprice_ratio {
            return Err(Refused::HashpriceDrift {
                ratio: drift,
                window_h: self.limits.max_age_s / 3_600,
            });
        }
        if self.recent.len() == RECENT_READINGS {
            self.recent.pop_front();
        }
        self.recent.push_back(reading);
        self.last = Some(reading);
        Ok(())
    }

    /// The last good reading, however old.
    pub fn last(&self) -> Option<Reading> {
        self.last
    }

    /// The sources disagree: the last reading is not believed any more, and the safe policy
    /// applies until they agree again.
    pub fn doubt(&mut self) {
        self.last = None;
    }

    /// The guard's limits.
    pub fn limits(&self) -> Plausibility {
        self.limits
    }

    pub fn view(&self, now: u64) -> MarketView {
        match self.last {
            Some(last) if now.saturating_sub(last.at) <= self.limits.max_age_s => {
                MarketView::Current {
                    hashprice: last.hashprice,
                    age_s: now.saturating_sub(last.at),
                }
            }
            last => MarketView::Expired {
                last: last.map(|r| r.hashprice),
            },
        }
    }
}

/// What several sources polled together say.
#[derive(Debug, Clone, PartialEq)]
pub enum Quorum {
    /// More than half the fresh readings lie within the spread of their median: that median
    /// (the newest `at` of those that agree), and how many did not.
    Agreed { reading: Reading, outliers: usize },
    /// No majority within the spread: nothing to believe.
    Disagree {
        lowest: UsdPerPhDay,
        highest: UsdPerPhDay,
    },
    /// No fresh reading at all.
    Nothing,
}

/// The quorum of `readings` at `now`: those older than `max_age_s` (or from the future, past
/// the guard's skew) are left out; of the rest, a strict majority must lie within `spread` (a
/// fraction, 0.1 = 10 %) of the median. One source that breaks, lags or lies is outvoted by two
/// that do not; two that disagree leave the site to its safe policy.
pub fn quorum(readings: &[Reading], now: u64, limits: &Plausibility, spread: f64) -> Quorum {
    let mut fresh: Vec<Reading> = readings
        .iter()
        .copied()
        .filter(|r| {
            r.hashprice.0.is_finite()
                && r.hashprice.0 > 0.0
                && r.at <= now + limits.max_future_s
                && now.saturating_sub(r.at) <= limits.max_age_s
        })
        .collect();
    if fresh.is_empty() {
        return Quorum::Nothing;
    }
    fresh.sort_by(|a, b| a.hashprice.0.total_cmp(&b.hashprice.0));
    let median = median_of(&fresh);
    let agreeing: Vec<Reading> = fresh
        .iter()
        .copied()
        .filter(|r| (r.hashprice.0 / median - 1.0).abs() <= spread)
        .collect();
    if agreeing.len() * 2 <= fresh.len() {
        return Quorum::Disagree {
            lowest: fresh[0].hashprice,
            highest: fresh[fresh.len() - 1].hashprice,
        };
    }
    let at = agreeing.iter().map(|r| r.at).max().unwrap_or(now);
    Quorum::Agreed {
        reading: Reading {
            at,
            hashprice: UsdPerPhDay(median_of(&agreeing)),
            difficulty: agreeing.iter().find_map(|r| r.difficulty),
        },
        outliers: fresh.len() - agreeing.len(),
    }
}

/// The median hashprice of readings sorted by hashprice (not empty).
fn median_of(sorted: &[Reading]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2].hashprice.0
    } else {
        (sorted[n / 2 - 1].hashprice.0 + sorted[n / 2].hashprice.0) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's check: D = 144.5e12, BTC $63,000, 0.02 BTC fees → $27.58/PH/day and a
    /// network of ~1,034 EH/s (the February 2026 record low).
    #[test]
    fn the_record_low_is_reproduced() {
        let network = Network {
            difficulty: 144.5e12,
            height: 935_000,
            fees_per_block_btc: 0.02,
            btc_usd: 63_000.0,
        };
        assert!(
            (network.hashprice().0 - 27.58).abs() < 0.01,
            "{}",
            network.hashprice()
        );
        assert!(
            (network.hashrate_ehs() - 1034.0).abs() < 1.0,
            "{}",
            network.hashrate_ehs()
        );
    }

    #[test]
    fn a_market_message_gives_a_reading_or_says_what_is_missing() {
        let network = fleet_proto::Market {
            v: 1,
            at: 1_771_891_200,
            hashprice_usd_per_ph_day: None,
            difficulty: Some(144.5e12),
            height: Some(935_000),
            fees_per_block_btc: Some(0.02),
            btc_usd: Some(63_000.0),
        };
        let reading = Reading::from_message(&network).expect("complete");
        assert!((reading.hashprice.0 - 27.58).abs() < 0.01);
        assert_eq!(reading.difficulty, Some(144.5e12));
        let direct = fleet_proto::Market {
            hashprice_usd_per_ph_day: Some(31.0),
            ..network
        };
        assert_eq!(
            Reading::from_message(&direct).map(|r| r.hashprice.0),
            Ok(31.0)
        );
        let partial = fleet_proto::Market {
            btc_usd: None,
            ..network
        };
        assert_eq!(Reading::from_message(&partial), Err(Refused::Incomplete));
        let no_price = fleet_proto::Market {
            btc_usd: Some(0.0),
            ..network
        };
        assert!(Reading::from_message(&no_price).is_err());
    }

    #[test]
    fn the_subsidy_halves_every_210000_blocks() {
        assert_eq!(block_subsidy_btc(0), 50.0);
        assert_eq!(block_subsidy_btc(839_999), 6.25);
        assert_eq!(block_subsidy_btc(840_000), 3.125);
        assert_eq!(block_subsidy_btc(1_050_000), 1.5625);
        assert_eq!(block_subsidy_btc(64 * HALVING_INTERVAL), 0.0);
        assert_eq!(block_subsidy_btc(u64::MAX), 0.0);
    }

    fn reading(at: u64, hashprice: f64, difficulty: Option<f64>) -> Reading {
        Reading {
            at,
            hashprice: UsdPerPhDay(hashprice),
            difficulty,
        }
    }

    #[test]
    fn implausible_readings_are_refused_and_the_last_good_one_kept() {
        let mut guard = MarketGuard::new(Plausibility::default());
        let now = 1_771_900_000;
        assert_eq!(guard.view(now), MarketView::Expired { last: None });
        guard
            .offer(reading(now - 60, 29.0, Some(144.5e12)), now)
            .expect("good");
        for (bad, why) in [
            (reading(now, 0.0, None), "not a positive"),
            (reading(now, f64::NAN, None), "not a positive"),
            (reading(now, 29.5, Some(-1.0)), "not a positive"),
            (reading(now + 3_600, 29.5, None), "future"),
            (reading(now - 120, 29.5, None), "older"),
            (reading(now, 29.5, Some(14.0e12)), "difficulty moved"),
            (reading(now, 290.0, None), "hashprice moved"),
        ] {
            let refused = guard.offer(bad, now).expect_err("refused");
            assert!(refused.to_string().contains(why), "{refused}");
        }
        assert_eq!(
            guard.view(now),
            MarketView::Current {
                hashprice: UsdPerPhDay(29.0),
                age_s: 60
            }
        );
        // Past its bound the last good reading is no longer the market.
        let later = now + Plausibility::default().max_age_s;
        assert_eq!(
            guard.view(later),
            MarketView::Expired {
                last: Some(UsdPerPhDay(29.0))
            }
        );
        // After an outage a large move is taken: the market may really have moved.
        guard
            .offer(reading(later, 90.0, None), later)
            .expect("taken after the outage");
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;

    const NOW: u64 = 1_771_900_000;

    fn at(hashprice: f64, at: u64) -> Reading {
        Reading {
            at,
            hashprice: UsdPerPhDay(hashprice),
            difficulty: None,
        }
    }

    fn quorum_of(readings: &[Reading]) -> Quorum {
        quorum(readings, NOW, &Plausibility::default(), 0.1)
    }

    #[test]
    fn most_sources_agreeing_give_their_median() {
        let agreed = quorum_of(&[at(28.0, NOW - 60), at(28.6, NOW - 30), at(27.9, NOW - 10)]);
        assert_eq!(
            agreed,
            Quorum::Agreed {
                reading: at(28.0, NOW - 10),
                outliers: 0
            }
        );
        // An even count: the middle two's mean.
        let even = quorum_of(&[at(28.0, NOW), at(29.0, NOW)]);
        assert!(
            matches!(even, Quorum::Agreed { reading, .. } if reading.hashprice.0 == 28.5),
            "{even:?}"
        );
    }

    #[test]
    fn one_broken_source_is_outvoted_and_two_disagreeing_leave_nothing() {
        // A source whose unit slipped (a factor of 1,000) or that lies.
        let outvoted = quorum_of(&[at(28.0, NOW), at(28.2, NOW), at(0.028, NOW)]);
        assert!(
            matches!(outvoted, Quorum::Agreed { reading, outliers: 1 } if reading.hashprice.0 == 28.1),
            "{outvoted:?}"
        );
        let split = quorum_of(&[at(28.0, NOW), at(40.0, NOW)]);
        assert_eq!(
            split,
            Quorum::Disagree {
                lowest: UsdPerPhDay(28.0),
                highest: UsdPerPhDay(40.0)
            }
        );
        // Two against two: no majority either.
        let even = quorum_of(&[at(28.0, NOW), at(28.1, NOW), at(50.0, NOW), at(50.2, NOW)]);
        assert!(matches!(even, Quorum::Disagree { .. }), "{even:?}");
    }

    #[test]
    fn stale_future_and_absurd_readings_have_no_vote() {
        let limits = Plausibility::default();
        let stale = at(5.0, NOW - limits.max_age_s - 1);
        let future = at(5.0, NOW + limits.max_future_s + 1);
        let absurd = at(f64::NAN, NOW);
        assert_eq!(quorum_of(&[stale, future, absurd]), Quorum::Nothing);
        assert!(matches!(
            quorum_of(&[stale, future, absurd, at(28.0, NOW)]),
            Quorum::Agreed { outliers: 0, .. }
        ));
    }

    #[test]
    fn small_steps_cannot_add_up_to_a_crash_within_the_window() {
        // The attack that once curtailed a site: five readings 0.3 s apart, each inside the 3×
        // jump bound, from $27.58 to $0.12.
        let mut guard = MarketGuard::new(Plausibility::default());
        guard.offer(at(27.58, NOW), NOW).expect("the real market");
        guard
            .offer(at(12.0, NOW + 1), NOW + 1)
            .expect("2.3×: inside");
        match guard.offer(at(5.0, NOW + 2), NOW + 2) {
            Err(Refused::HashpriceDrift { ratio, window_h: 3 }) => {
                assert!((ratio - 27.58 / 5.0).abs() < 1e-9)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(guard.last().map(|r| r.hashprice.0), Some(12.0));
        // Hours later the window has moved on: the market may really be elsewhere by then.
        let later = NOW + 4 * 3_600;
        guard
            .offer(at(5.0, later), later)
            .expect("the old readings have left the window");
    }
}
