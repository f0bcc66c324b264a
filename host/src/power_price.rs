//! The site's power price now: a real-time feed (the `…/power` topic, a CSV replay) when it has
//! spoken recently, the configured tariff otherwise. Feed readings pass a guard like market
//! readings do — a price outside what any market has cleared at, a timestamp from the future or
//! one older than the last good reading is refused with its reason — and a good reading stands
//! for a bounded time only, so a dead feed cannot pin the site to an old price.

use crate::tariff::Tariff;
use crate::units::UsdPerKwh;

/// Real-time prices go negative (consumption paid for) and spike to the market caps ($5/kWh in
/// ERCOT); outside this range a reading is a unit error (cents, $/MWh) or garbage.
pub const PLAUSIBLE_USD_PER_KWH: std::ops::RangeInclusive<f64> = -1.0..=10.0;
/// Clock skew tolerated on a feed's timestamp, s.
const MAX_FUTURE_S: u64 = 300;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PowerRefused {
    #[error("{0} $/kWh is outside -1..=10: a unit error or a broken feed")]
    Implausible(f64),
    #[error("timestamped {0} s in the future")]
    FromTheFuture(u64),
    #[error("older than the last good price ({at} < {last})")]
    Older { at: u64, last: u64 },
}

/// Where the price in force comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PriceSource {
    /// The feed, its reading `age_s` old.
    Feed {
        age_s: u64,
    },
    Tariff,
}

#[derive(Debug, Clone)]
pub struct PowerPrice {
    max_age_s: u64,
    last: Option<(u64, UsdPerKwh)>,
}

impl PowerPrice {
    pub fn new(max_age_s: u64) -> Self {
        Self {
            max_age_s,
            last: None,
        }
    }

    pub fn offer(&mut self, at: u64, price: f64, now: u64) -> Result<(), PowerRefused> {
        if !(price.is_finite() && PLAUSIBLE_USD_PER_KWH.contains(&price)) {
            return Err(PowerRefused::Implausible(price));
        }
        if at > now + MAX_FUTURE_S {
            return Err(PowerRefused::FromTheFuture(at - now));
        }
        if let Some((last, _)) = self.last
            && at < last
        {
            return Err(PowerRefused::Older { at, last });
        }
        self.last = Some((at, UsdPerKwh(price)));
        Ok(())
    }

    /// The price at `now`: the feed's while it is fresh, the tariff's after.
    pub fn at(&self, tariff: &Tariff, now: u64) -> (UsdPerKwh, PriceSource) {
        match self.last {
            Some((at, price)) if now.saturating_sub(at) <= self.max_age_s => (
                price,
                PriceSource::Feed {
                    age_s: now.saturating_sub(at),
                },
            ),
            _ => (tariff.price_at(now), PriceSource::Tariff),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_771_891_200;

    fn tariff() -> Tariff {
        Tariff::Fixed {
            price: UsdPerKwh(0.06),
        }
    }

    #[test]
    fn the_feed_stands_for_its_bound_then_the_tariff_is_back() {
        let mut power = PowerPrice::new(900);
        assert_eq!(
            power.at(&tariff(), NOW),
            (UsdPerKwh(0.06), PriceSource::Tariff)
        );
        power.offer(NOW, 0.043, NOW).expect("plausible");
        assert_eq!(
            power.at(&tariff(), NOW + 900),
            (UsdPerKwh(0.043), PriceSource::Feed { age_s: 900 })
        );
        assert_eq!(power.at(&tariff(), NOW + 901).1, PriceSource::Tariff);
    }

    #[test]
    fn negative_prices_are_real_and_units_errors_are_not() {
        let mut power = PowerPrice::new(900);
        power
            .offer(NOW, -0.02, NOW)
            .expect("markets pay for consumption at times");
        assert_eq!(power.at(&tariff(), NOW).0, UsdPerKwh(-0.02));
        for wrong in [43.0, -25.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                power.offer(NOW + 1, wrong, NOW + 1),
                Err(PowerRefused::Implausible(_))
            ));
        }
        assert_eq!(
            power.at(&tariff(), NOW).0,
            UsdPerKwh(-0.02),
            "the last good one stands"
        );
    }

    #[test]
    fn stale_and_future_readings_are_refused() {
        let mut power = PowerPrice::new(900);
        power.offer(NOW, 0.05, NOW).expect("good");
        assert_eq!(
            power.offer(NOW - 60, 0.04, NOW),
            Err(PowerRefused::Older {
                at: NOW - 60,
                last: NOW
            })
        );
        assert_eq!(
            power.offer(NOW + 3_600, 0.04, NOW),
            Err(PowerRefused::FromTheFuture(3_600))
        );
        power
            .offer(NOW, 0.07, NOW)
            .expect("a correction for the same interval");
        assert_eq!(power.at(&tariff(), NOW).0, UsdPerKwh(0.07));
    }
}
