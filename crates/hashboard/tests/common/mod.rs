//! The hashboard driven against chipsim in-process: the simulator's UART as the chain's port, its
//! reset line as the GPIO, and a delay that advances simulated time instead of sleeping.
#![allow(dead_code)]

use bm13xx::ChipModel;
use chipsim::{ChainConfig, ChainSim, Faults, SimControl, SimLink};

// The shared adapters from `hashboard::sim`, under the names the suites use.
pub use chipsim::SimUart as SimPort;
pub use hashboard::sim::SimTimeDelay as SimDelay;

pub struct Bench {
    pub port: SimPort,
    pub control: SimControl,
    pub delay: SimDelay,
    pub reset: chipsim::ResetPin,
}

pub fn bench(model: ChipModel, chips: u32, seed: u64, faults: Faults) -> Bench {
    let mut config = ChainConfig::new(model, chips, seed);
    config.share_floor_log2 = 32;
    let mut sim = ChainSim::new(config).expect("valid");
    sim.set_faults(faults);
    let (uart, control) = SimLink::open(sim);
    Bench {
        port: uart,
        delay: SimDelay(control.clone()),
        reset: control.reset_pin(),
        control,
    }
}

/// A BM1397 board brought up on the simulator: the chain, its TPS546 (1.1–1.5 V) and the rest.
pub struct Up {
    pub chain: hashboard::chain::Chain<SimPort>,
    pub regulator: hashboard::drivers::tps546::Tps546<chipsim::Tps546>,
    pub control: SimControl,
    pub delay: SimDelay,
    pub reset: chipsim::ResetPin,
    pub config: bm13xx::InitConfig,
}

pub async fn board_up(chips: u32, seed: u64) -> Up {
    use hashboard::drivers::tps546::{self, Tps546, VoutLimits};
    let Bench {
        port,
        control,
        mut delay,
        mut reset,
    } = bench(ChipModel::Bm1397, chips, seed, Faults::default());
    let config = bm13xx::InitConfig::esp_miner(ChipModel::Bm1397, chips);
    let chain = hashboard::chain::Chain::bring_up(port, &mut reset, &mut delay, config)
        .await
        .expect("comes up");
    let limits = VoutLimits {
        min_mv: 1100,
        max_mv: 1500,
    };
    let regulator =
        Tps546::init(control.regulator(), tps546::DEFAULT_ADDRESS, limits).expect("regulator");
    Up {
        chain,
        regulator,
        control,
        delay,
        reset,
        config,
    }
}
