//! Ground truth for scoring a tuner: what each chip can really do. Never visible on the wire.

use serde::Serialize;

use crate::chain::ChainSim;
use crate::physics::Nominal;

/// Where the oracle evaluates power: the temperature a well-cooled chip runs at.
const ORACLE_TEMP_C: f64 = 60.0;

/// The best a chip can do at one core voltage: its highest clean clock, and what that costs.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct OperatingPoint {
    pub volts: f64,
    pub max_stable_mhz: f64,
    pub terahashes: f64,
    pub watts: f64,
    pub joules_per_th: f64,
}

/// One chip's truth.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChipTruth {
    pub index: u32,
    /// The chip's power curve: one point per voltage around nominal, at 60 °C.
    pub points: Vec<OperatingPoint>,
    /// Watts at the model's default clock and nominal voltage, 60 °C.
    pub nominal_power_w: f64,
    pub silicon: crate::physics::Silicon,
}

impl ChipTruth {
    /// The point with the lowest J/TH: what a maximum-efficiency tuner should find.
    pub fn most_efficient(&self) -> Option<OperatingPoint> {
        self.points
            .iter()
            .copied()
            .filter(|p| p.terahashes > 0.0)
            .min_by(|a, b| a.joules_per_th.total_cmp(&b.joules_per_th))
    }
}

/// The chain's truth.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Oracle {
    pub model: String,
    pub seed: u64,
    pub nominal_volts: f64,
    pub nominal_mhz: f64,
    pub chips: Vec<ChipTruth>,
}

/// The best efficiency a whole chain can reach at one voltage for all chips: every chip at its own
/// highest clean clock.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct ChainPoint {
    pub volts: f64,
    pub terahashes: f64,
    pub watts: f64,
    pub joules_per_th: f64,
}

impl Oracle {
    /// The chain's lowest-J/TH operating point with one core voltage in `[min_v, max_v]` (1 mV
    /// resolution) and every chip at its limit, at `temp_c`. What a maximum-efficiency tuner is
    /// scored against.
    pub fn best_chain_point(
        chain: &ChainSim,
        min_v: f64,
        max_v: f64,
        temp_c: f64,
    ) -> Option<ChainPoint> {
        let small_cores = f64::from(chain.config().model.hashing_small_cores());
        let steps = ((max_v - min_v) * 1000.0).round().max(0.0) as u32;
        (0..=steps)
            .map(|i| min_v + f64::from(i) / 1000.0)
            .map(|volts| {
                let (terahashes, watts) = chain.chips().iter().fold((0.0, 0.0), |(th, w), chip| {
                    let mhz = chip.silicon.max_stable_mhz(volts, temp_c);
                    (
                        th + mhz * 1e6 * small_cores / 1e12,
                        w + chip.silicon.power_w(mhz, volts, temp_c, true),
                    )
                });
                ChainPoint {
                    volts,
                    terahashes,
                    watts,
                    joules_per_th: if terahashes > 0.0 {
                        watts / terahashes
                    } else {
                        f64::INFINITY
                    },
                }
            })
            .min_by(|a, b| a.joules_per_th.total_cmp(&b.joules_per_th))
    }

    pub fn of(chain: &ChainSim) -> Self {
        let model = chain.config().model;
        let nominal = Nominal::of(model);
        // 25 mV steps, rounded to the millivolt as a regulator would set them.
        let volts: Vec<f64> = (-4..=4)
            .map(|step| ((nominal.volts + 0.025 * f64::from(step)) * 1000.0).round() / 1000.0)
            .collect();
        let small_cores = f64::from(model.hashing_small_cores());
        Self {
            model: model.name().to_string(),
            seed: chain.config().seed,
            nominal_volts: nominal.volts,
            nominal_mhz: nominal.mhz,
            chips: chain
                .chips()
                .iter()
                .map(|chip| ChipTruth {
                    index: chip.index,
                    points: volts
                        .iter()
                        .map(|&v| {
                            let mhz = chip.silicon.max_stable_mhz(v, ORACLE_TEMP_C);
                            let terahashes = mhz * 1e6 * small_cores / 1e12;
                            let watts = chip.silicon.power_w(mhz, v, ORACLE_TEMP_C, true);
                            OperatingPoint {
                                volts: v,
                                max_stable_mhz: mhz,
                                terahashes,
                                watts,
                                joules_per_th: if terahashes > 0.0 {
                                    watts / terahashes
                                } else {
                                    f64::INFINITY
                                },
                            }
                        })
                        .collect(),
                    nominal_power_w: chip.silicon.power_w(
                        nominal.mhz,
                        nominal.volts,
                        ORACLE_TEMP_C,
                        true,
                    ),
                    silicon: chip.silicon,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ChainConfig;
    use bm13xx::ChipModel;

    #[test]
    fn the_curve_trades_speed_for_efficiency() {
        let chain = ChainSim::new(ChainConfig::new(ChipModel::Bm1370, 2, 4)).expect("valid");
        let oracle = Oracle::of(&chain);
        let points = &oracle.chips[0].points;
        assert!(
            points
                .windows(2)
                .all(|w| w[1].max_stable_mhz > w[0].max_stable_mhz)
        );
        assert!(points.windows(2).all(|w| w[1].watts > w[0].watts));
        // Lower voltage is more efficient per hash (V² dominates), so the best point is at the low end.
        let best = oracle.chips[0].most_efficient().expect("a point");
        assert_eq!(best.volts, points[0].volts);
        // Chips differ.
        assert_ne!(
            oracle.chips[0].points[4].max_stable_mhz,
            oracle.chips[1].points[4].max_stable_mhz
        );
    }
}
