//! What the demo replays: the shipped backtest's market through the 2025–2026 crash, its
//! time-of-use tariff and its demand-response night — and what the live agent is told of them
//! at each moment of the story.

use std::path::Path;

use crate::backtest::{CapWindow, Scenario};
use crate::planner::{Machine, Policy};
use crate::site::SiteConfig;
use crate::tariff::Tariff;
use crate::units::{UsdPerKwh, UsdPerPhDay, Watts};

const SITE_TOML: &str = include_str!("../../examples/backtest/site.toml");
const MARKET_CSV: &str = include_str!("../../examples/backtest/market.csv");
const GRID_CSV: &str = include_str!("../../examples/backtest/grid.csv");

/// The demand-response event holds the site to this share of its full power: below what the
/// fleet's profitable machines draw on a winter night, so the event costs something.
pub const EVENT_SHARE: f64 = 0.25;

/// Faster than this (story seconds per wall second, an hour a second) an hour of the tariff is
/// over before a miner could answer it: the agent is told the day's average price instead.
pub const FOLLOWABLE_PACE: f64 = 3600.0;

/// A wake earns nothing for this long (the backtest's default).
pub const RAMP_S: u64 = 60;

/// The report's strategies hold each setting this long.
pub const STEP_S: u64 = 900;

#[derive(Debug, Clone)]
pub struct Story {
    pub start: u64,
    pub end: u64,
    /// Hourly hashprice, oldest first.
    pub market: Vec<(u64, UsdPerPhDay)>,
    pub tariff: Tariff,
    pub pool_fee: f64,
    /// The site's policy as its operator runs it (the report's strategies use it).
    pub policy: Policy,
    /// The demand-response event, `[from, to)`.
    pub event: (u64, u64),
}

/// What the agent hears at one moment of the story.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Told {
    pub hashprice: UsdPerPhDay,
    pub power_price: UsdPerKwh,
    pub in_event: bool,
}

impl Story {
    /// The shipped scenario (`host/examples/backtest/`), built into the binary.
    pub fn shipped() -> Result<Self, String> {
        let site = SiteConfig::parse(Path::new("examples/backtest/site.toml"), SITE_TOML)
            .map_err(|e| e.to_string())?;
        let market = crate::sources::csv(MARKET_CSV)
            .map_err(|e| format!("market.csv: {e}"))?
            .iter()
            .map(|m| {
                crate::market::Reading::from_message(m)
                    .map(|r| (r.at, r.hashprice))
                    .map_err(|e| format!("market.csv at {}: {e}", m.at))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (Some(&(start, _)), Some(&(last, _))) = (market.first(), market.last()) else {
            return Err("market.csv: no readings".into());
        };
        let event = crate::sources::grid_csv(GRID_CSV)
            .map_err(|e| format!("grid.csv: {e}"))?
            .first()
            .map(|&(from, to, _)| (from, to))
            .ok_or("grid.csv: no event")?;
        Ok(Self {
            start,
            end: last + 3600,
            market,
            tariff: site.tariff.clone(),
            pool_fee: site.site.pool_fee,
            policy: site.policy,
            event,
        })
    }

    pub fn hashprice_at(&self, at: u64) -> Option<UsdPerPhDay> {
        let after = self.market.partition_point(|(t, _)| *t <= at);
        after.checked_sub(1).map(|i| self.market[i].1)
    }

    /// What the agent is told at story time `at` when the story runs at `pace`: the hashprice,
    /// and the tariff's price — the hour's when the pace lets miners follow hours, the average of
    /// the day around `at` when it does not.
    pub fn told(&self, at: u64, pace: f64) -> Option<Told> {
        let power_price = if pace <= FOLLOWABLE_PACE {
            self.tariff.price_at(at)
        } else {
            let hours = (0..24u64).map(|h| (at + h * 3600).saturating_sub(12 * 3600) + 1800);
            UsdPerKwh(hours.map(|t| self.tariff.price_at(t).0).sum::<f64>() / 24.0)
        };
        Some(Told {
            hashprice: self.hashprice_at(at)?,
            power_price,
            in_event: self.event.0 <= at && at < self.event.1,
        })
    }

    /// The backtest of this story for `machines`, the event capping the site at
    /// [`EVENT_SHARE`] of their full power.
    pub fn scenario(&self, machines: Vec<Machine>) -> Scenario {
        Scenario {
            start: self.start,
            end: self.end,
            step_s: STEP_S,
            market: self.market.clone(),
            tariff: self.tariff.clone(),
            power: Vec::new(),
            pool_fee: self.pool_fee,
            site_cap: None,
            grid: vec![CapWindow {
                from: self.event.0,
                to: self.event.1,
                cap: event_cap(&machines),
            }],
            policy: self.policy,
            machines,
            ramp_s: RAMP_S,
        }
    }
}

/// The demand-response cap for a site of `machines`.
pub fn event_cap(machines: &[Machine]) -> Watts {
    Watts(EVENT_SHARE * machines.iter().map(|m| m.full.watts.0).sum::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_story_runs_through_the_crash_with_one_night_of_demand_response() {
        let story = Story::shipped().expect("ships");
        let days = (story.end - story.start) / 86_400;
        assert!((100..=150).contains(&days), "{days} days");
        let lowest = story.market.iter().map(|m| m.1.0).fold(f64::MAX, f64::min);
        let first = story.market[0].1.0;
        assert!(lowest < 28.5 && first > 35.0, "{first} -> {lowest}");
        assert!(story.start < story.event.0 && story.event.1 < story.end);
        assert_eq!(story.event.1 - story.event.0, 3 * 3600);
    }

    #[test]
    fn the_agent_hears_the_hour_when_it_can_follow_it_and_the_day_when_it_cannot() {
        let story = Story::shipped().expect("ships");
        // A weekday's 15:00-20:00 Central peak: 21:00-02:00 UTC. 2026-01-06 was a Tuesday.
        let peak = 1_767_657_600 + 22 * 3600;
        assert_eq!(story.tariff.price_at(peak).0, 0.09);
        let slow = story.told(peak, 1800.0).expect("in the story");
        assert_eq!(slow.power_price.0, 0.09);
        let fast = story.told(peak, 200_000.0).expect("in the story");
        // 5 h at 0.09, 8 h at 0.035, 11 h at 0.045.
        let day = (5.0 * 0.09 + 8.0 * 0.035 + 11.0 * 0.045) / 24.0;
        assert!((fast.power_price.0 - day).abs() < 1e-9, "{fast:?}");
        assert!(story.told(story.event.0, 1.0).expect("in").in_event);
        assert!(!story.told(story.event.1, 1.0).expect("in").in_event);
        assert!(story.told(story.start - 1, 1.0).is_none());
    }
}
