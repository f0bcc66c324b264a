//! The hashboard driven against chipsim in-process: the simulator's UART as the chain's port, its
//! reset line as the GPIO, and a delay that advances simulated time instead of sleeping.
#![allow(dead_code)]

use bm13xx::ChipModel;
use chipsim::{ChainConfig, ChainSim, Faults, SimControl, SimLink, SimUart};
use hashboard::uart::SetBaud;

pub struct SimPort(pub SimUart);

impl embedded_io::ErrorType for SimPort {
    type Error = core::convert::Infallible;
}

impl embedded_io_async::Read for SimPort {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        embedded_io_async::Read::read(&mut self.0, buf).await
    }
}

impl embedded_io_async::Write for SimPort {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        embedded_io_async::Write::write(&mut self.0, buf).await
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        embedded_io_async::Write::flush(&mut self.0).await
    }
}

impl SetBaud for SimPort {
    async fn set_baud(&mut self, baud: u32) -> Result<(), Self::Error> {
        self.0.set_baud(baud);
        Ok(())
    }
}

/// Waiting is simulated time passing: deterministic, and as fast as the CPU allows.
pub struct SimDelay(pub SimControl);

impl embedded_hal_async::delay::DelayNs for SimDelay {
    async fn delay_ns(&mut self, ns: u32) {
        self.0.advance(f64::from(ns) / 1e9);
    }
}

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
        port: SimPort(uart),
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
