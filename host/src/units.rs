//! Units in type names, as the economics reference asks: a figure cannot be passed where another
//! unit is meant.

use serde::{Deserialize, Serialize};

macro_rules! unit {
    ($(#[$doc:meta])* $name:ident, $symbol:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub f64);

        impl $name {
            pub fn is_positive(self) -> bool {
                self.0.is_finite() && self.0 > 0.0
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, "{:.2} {}", self.0, $symbol)
            }
        }
    };
}

unit!(
    /// Hashprice: revenue per PH/s per day.
    UsdPerPhDay,
    "$/PH/day"
);
unit!(
    /// Efficiency: W per TH/s.
    JoulesPerTh,
    "J/TH"
);
unit!(UsdPerKwh, "$/kWh");
unit!(Watts, "W");
unit!(TerahashPerSecond, "TH/s");
unit!(UsdPerDay, "$/day");

impl JoulesPerTh {
    pub fn of(power: Watts, hashrate: TerahashPerSecond) -> Option<Self> {
        (power.0.is_finite() && power.0 >= 0.0 && hashrate.is_positive())
            .then(|| Self(power.0 / hashrate.0))
    }

    /// What running at this efficiency costs per PH/s per day at `price`: 1 PH/s at E J/TH
    /// draws E kW, for 24 h.
    pub fn cost_per_ph_day(self, price: UsdPerKwh) -> UsdPerPhDay {
        UsdPerPhDay(self.0 * 24.0 * price.0)
    }
}

impl TerahashPerSecond {
    pub fn petahashes(self) -> f64 {
        self.0 / 1000.0
    }
}

impl Watts {
    /// The energy bill of this draw for a day at `price`.
    pub fn cost_per_day(self, price: UsdPerKwh) -> UsdPerDay {
        UsdPerDay(self.0 * 24.0 / 1000.0 * price.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's example: an S19 XP at 21.5 J/TH and 6 ¢/kWh costs $30.96/PH/day.
    #[test]
    fn an_s19_xp_costs_what_the_reference_says() {
        let cost = JoulesPerTh(21.5).cost_per_ph_day(UsdPerKwh(0.06));
        assert!((cost.0 - 30.96).abs() < 1e-9, "{cost}");
        assert_eq!(
            JoulesPerTh::of(Watts(3010.0), TerahashPerSecond(140.0)).map(|e| e.0),
            Some(21.5)
        );
        assert_eq!(JoulesPerTh::of(Watts(100.0), TerahashPerSecond(0.0)), None);
        assert!((Watts(3010.0).cost_per_day(UsdPerKwh(0.06)).0 - 4.3344).abs() < 1e-9);
    }
}
