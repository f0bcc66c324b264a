//! Ground truth for scoring a tuner: what each chip can really do. Never visible on the wire.

use serde::Serialize;

use crate::chain::ChainSim;
use crate::physics::Nominal;

/// One chip's truth.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChipTruth {
    pub index: u32,
    /// (core volts, highest clean MHz at 60 °C), around the nominal voltage.
    pub max_stable_mhz: Vec<(f64, f64)>,
    /// Watts at the model's default clock and nominal voltage, 60 °C.
    pub nominal_power_w: f64,
    pub silicon: crate::physics::Silicon,
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

impl Oracle {
    pub fn of(chain: &ChainSim) -> Self {
        let model = chain.config().model;
        let nominal = Nominal::of(model);
        let volts: Vec<f64> = (-4..=4)
            .map(|step| nominal.volts + 0.025 * f64::from(step))
            .collect();
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
                    max_stable_mhz: volts
                        .iter()
                        .map(|&v| (v, chip.silicon.max_stable_mhz(v, 60.0)))
                        .collect(),
                    nominal_power_w: chip.silicon.power_w(nominal.mhz, nominal.volts, 60.0, true),
                    silicon: chip.silicon,
                })
                .collect(),
        }
    }
}
