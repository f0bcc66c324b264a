//! The live site's books: what the miners' own telemetry says they drew and hashed, priced at
//! the story's hour — the same accounting as the backtest's, on measurements instead of a model.

use std::collections::BTreeMap;

use serde::Serialize;

use super::story::Story;

/// What one miner last reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reported {
    pub power_w: f64,
    pub hashrate_ths: f64,
    pub running: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LiveLedger {
    pub profit_usd: f64,
    pub revenue_usd: f64,
    pub energy_kwh: f64,
    /// Sleeps and wakes, as the miners reported them.
    pub switches: u64,
    #[serde(skip)]
    running: BTreeMap<String, bool>,
}

impl LiveLedger {
    /// Counts a switch when `miner` reports running after not, or the other way.
    pub fn observe(&mut self, miner: &str, running: bool) {
        if let Some(was) = self.running.insert(miner.to_string(), running)
            && was != running
        {
            self.switches += 1;
        }
    }

    /// Books the story from `from` to `to` with the fleet as `reported`, hour by hour (each at
    /// its hashprice and tariff price).
    pub fn accrue<'a>(
        &mut self,
        story: &Story,
        from: u64,
        to: u64,
        reported: impl IntoIterator<Item = &'a Reported>,
    ) {
        let (watts, terahashes) = reported
            .into_iter()
            .fold((0.0, 0.0), |(w, h), r| (w + r.power_w, h + r.hashrate_ths));
        let mut at = from;
        while at < to {
            let next = ((at / 3600 + 1) * 3600).min(to);
            let seconds = (next - at) as f64;
            let kwh = watts * seconds / 3.6e6;
            let cost = kwh * story.tariff.price_at(at).0;
            let revenue = story.hashprice_at(at).map_or(0.0, |h| {
                terahashes / 1000.0 * h.0 * seconds / 86_400.0 * (1.0 - story.pool_fee)
            });
            self.energy_kwh += kwh;
            self.revenue_usd += revenue;
            self.profit_usd += revenue - cost;
            at = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tariff::Tariff;
    use crate::units::{UsdPerKwh, UsdPerPhDay};

    fn story(price: f64, hashprice: f64) -> Story {
        let mut story = Story::shipped().expect("ships");
        story.tariff = Tariff::Fixed {
            price: UsdPerKwh(price),
        };
        story.market = vec![(story.start, UsdPerPhDay(hashprice))];
        story
    }

    #[test]
    fn a_day_of_a_steady_site_books_its_power_and_its_hashes() {
        let story = story(0.05, 30.0);
        let site = [
            Reported {
                power_w: 3000.0,
                hashrate_ths: 100.0,
                running: true,
            },
            Reported {
                power_w: 1000.0,
                hashrate_ths: 50.0,
                running: true,
            },
        ];
        let mut ledger = LiveLedger::default();
        // Not on hour boundaries: the pieces must still add up to the day.
        ledger.accrue(&story, story.start + 100, story.start + 100 + 86_400, &site);
        assert!((ledger.energy_kwh - 96.0).abs() < 1e-9);
        // 0.15 PH x $30/PH/day x 98 % = $4.41; 96 kWh x $0.05 = $4.80.
        assert!((ledger.revenue_usd - 4.41).abs() < 1e-9);
        assert!((ledger.profit_usd - (4.41 - 4.80)).abs() < 1e-9);
    }

    #[test]
    fn each_hour_is_priced_at_its_own_tariff() {
        let story = Story::shipped().expect("ships");
        let site = [Reported {
            power_w: 1000.0,
            hashrate_ths: 0.0,
            running: true,
        }];
        // 2026-01-06 (a Tuesday) 20:00 to 23:00 UTC: 14:00 base, 15:00-17:00 peak, Central.
        let from = 1_767_657_600 + 20 * 3600;
        let mut ledger = LiveLedger::default();
        ledger.accrue(&story, from, from + 3 * 3600, &site);
        assert!(
            (ledger.profit_usd + (0.045 + 0.09 + 0.09)).abs() < 1e-9,
            "{ledger:?}"
        );
    }

    #[test]
    fn switches_are_changes_not_first_sightings() {
        let mut ledger = LiveLedger::default();
        ledger.observe("a", true);
        ledger.observe("b", false);
        ledger.observe("a", true);
        assert_eq!(ledger.switches, 0);
        ledger.observe("a", false);
        ledger.observe("a", true);
        ledger.observe("b", true);
        assert_eq!(ledger.switches, 3);
    }
}
