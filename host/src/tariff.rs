//! What a site pays for power at a given moment: a fixed price, or a time-of-use schedule (a
//! base price with dearer or cheaper hours, by weekday, in the site's local time).

use serde::{Deserialize, Serialize};

use crate::units::UsdPerKwh;

/// A window of local hours `[start_hour, end_hour)` on some weekdays (0 = Monday; all when
/// empty). A window may wrap midnight (start 22, end 6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    pub start_hour: u8,
    pub end_hour: u8,
    #[serde(default)]
    pub weekdays: Vec<u8>,
    pub price: UsdPerKwh,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Tariff {
    Fixed {
        price: UsdPerKwh,
    },
    TimeOfUse {
        base: UsdPerKwh,
        /// The site's offset from UTC, s (fixed: a site on DST configures the summer offset).
        #[serde(default)]
        utc_offset_s: i64,
        /// The first period that covers a moment sets its price.
        periods: Vec<Period>,
    },
}

/// Why a tariff cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TariffError {
    #[error("price {0} $/kWh is not a price (finite, not negative)")]
    BadPrice(f64),
    #[error("period {index}: hours {start}..{end} are not within 0..=24 or are empty")]
    BadHours { index: usize, start: u8, end: u8 },
    #[error("period {index}: weekday {day} is not 0 (Monday) ..= 6")]
    BadWeekday { index: usize, day: u8 },
}

impl Period {
    fn covers(&self, hour: u8, weekday: u8) -> bool {
        let in_hours = if self.start_hour <= self.end_hour {
            (self.start_hour..self.end_hour).contains(&hour)
        } else {
            hour >= self.start_hour || hour < self.end_hour
        };
        in_hours && (self.weekdays.is_empty() || self.weekdays.contains(&weekday))
    }
}

impl Tariff {
    pub fn check(&self) -> Result<(), TariffError> {
        let price = |p: UsdPerKwh| {
            if p.0.is_finite() && p.0 >= 0.0 {
                Ok(())
            } else {
                Err(TariffError::BadPrice(p.0))
            }
        };
        match self {
            Tariff::Fixed { price: p } => price(*p),
            Tariff::TimeOfUse { base, periods, .. } => {
                price(*base)?;
                for (index, period) in periods.iter().enumerate() {
                    price(period.price)?;
                    let (start, end) = (period.start_hour, period.end_hour);
                    if start > 24 || end > 24 || start == end {
                        return Err(TariffError::BadHours { index, start, end });
                    }
                    if let Some(&day) = period.weekdays.iter().find(|&&d| d > 6) {
                        return Err(TariffError::BadWeekday { index, day });
                    }
                }
                Ok(())
            }
        }
    }

    /// The price at unix time `at`.
    pub fn price_at(&self, at: u64) -> UsdPerKwh {
        match self {
            Tariff::Fixed { price } => *price,
            Tariff::TimeOfUse {
                base,
                utc_offset_s,
                periods,
            } => {
                let local = at as i64 + utc_offset_s;
                let day = local.div_euclid(86_400);
                let hour = (local.rem_euclid(86_400) / 3_600) as u8;
                // 1970-01-01 was a Thursday (3, counting Monday as 0).
                let weekday = (day + 3).rem_euclid(7) as u8;
                periods
                    .iter()
                    .find(|p| p.covers(hour, weekday))
                    .map_or(*base, |p| p.price)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summer_peak() -> Tariff {
        Tariff::TimeOfUse {
            base: UsdPerKwh(0.045),
            // US Central, daylight time.
            utc_offset_s: -5 * 3_600,
            periods: vec![
                Period {
                    start_hour: 15,
                    end_hour: 20,
                    weekdays: vec![0, 1, 2, 3, 4],
                    price: UsdPerKwh(0.21),
                },
                Period {
                    start_hour: 22,
                    end_hour: 6,
                    weekdays: Vec::new(),
                    price: UsdPerKwh(0.03),
                },
            ],
        }
    }

    #[test]
    fn time_of_use_follows_local_hours_and_weekdays() {
        let tariff = summer_peak();
        tariff.check().expect("valid");
        // Wednesday 2026-07-15 17:00 CDT = 22:00 UTC.
        let wednesday_17 = 1_784_152_800;
        assert_eq!(tariff.price_at(wednesday_17), UsdPerKwh(0.21));
        // Saturday 2026-07-18 at the same hour: no weekday peak.
        assert_eq!(tariff.price_at(wednesday_17 + 3 * 86_400), UsdPerKwh(0.045));
        // 23:00 and 03:00 local: the night window wraps midnight.
        assert_eq!(tariff.price_at(wednesday_17 + 6 * 3_600), UsdPerKwh(0.03));
        assert_eq!(tariff.price_at(wednesday_17 + 10 * 3_600), UsdPerKwh(0.03));
        // 08:00 local: base.
        assert_eq!(tariff.price_at(wednesday_17 + 15 * 3_600), UsdPerKwh(0.045));
    }

    #[test]
    fn broken_tariffs_are_refused_with_the_reason() {
        let bad_hours = Tariff::TimeOfUse {
            base: UsdPerKwh(0.05),
            utc_offset_s: 0,
            periods: vec![Period {
                start_hour: 7,
                end_hour: 7,
                weekdays: Vec::new(),
                price: UsdPerKwh(0.1),
            }],
        };
        assert!(matches!(
            bad_hours.check(),
            Err(TariffError::BadHours { .. })
        ));
        assert!(matches!(
            Tariff::Fixed {
                price: UsdPerKwh(-0.01)
            }
            .check(),
            Err(TariffError::BadPrice(_))
        ));
        let bad_day = Tariff::TimeOfUse {
            base: UsdPerKwh(0.05),
            utc_offset_s: 0,
            periods: vec![Period {
                start_hour: 1,
                end_hour: 2,
                weekdays: vec![7],
                price: UsdPerKwh(0.1),
            }],
        };
        assert!(matches!(
            bad_day.check(),
            Err(TariffError::BadWeekday { .. })
        ));
    }
}
