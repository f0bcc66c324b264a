//! `--sim`: the board in-process on `chipsim` — its chain on the simulator's UART, its TPS546
//! and EMC2101 on the simulated I2C, its reset line — so the whole daemon runs with no hardware.

use chipsim::{ChainConfig, ChainSim, SimControl, SimLink, SimUart};
use hashboard::board::BoardDescription;
use hashboard::drivers::emc2101::{self, Emc2101};
use hashboard::drivers::tps546::{self, Tps546, VoutLimits};
use hashboard::sim::SimTimeDelay;

use crate::board::{Board, ChipDelay, Peripherals};
use crate::config::MiningSettings;
use crate::control::Intent;
use crate::daemon::init_config;
use crate::unit::Rig;

/// The simulator's share floor: nonces are genuine at ticket × 2^-26.
const SIM_FLOOR_LOG2: u32 = 26;

pub type SimBoard =
    Board<SimUart, chipsim::Tps546, chipsim::Emc2101, chipsim::ResetPin, SimTimeDelay>;

/// A simulated board with `seed`'s silicon, wired like the real one.
/// Which simulated silicon a chain gets: its seed, and its grade (J/TH at the model's nominal
/// point; the model's typical figure when `None`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Silicon {
    pub seed: u64,
    pub joules_per_th: Option<f64>,
}

pub fn rig(
    board: &'static BoardDescription,
    settings: &MiningSettings,
    intent: Intent,
    silicon: Silicon,
    speed: f64,
) -> Result<Rig<SimBoard>, String> {
    let mut chain_config = ChainConfig::new(board.model, board.chips_per_chain, silicon.seed);
    chain_config.share_floor_log2 = SIM_FLOOR_LOG2;
    chain_config.voltage_domains = board.voltage_domains;
    chain_config.joules_per_th = silicon.joules_per_th;
    let sim = ChainSim::new(chain_config).map_err(|e| e.to_string())?;
    let (uart, control) = SimLink::open(sim);
    let (init, core_mv) = init_config(board, settings, intent)?;
    let peripherals = peripherals(board, &control, speed)?;
    Ok(Rig {
        // The chips round the ticket down to a power of two; validation uses what they filter at.
        ticket: init.ticket.value(),
        hw: Board::new(board, uart, peripherals, init, core_mv),
        sim: Some(control),
        scale: (-f64::from(SIM_FLOOR_LOG2)).exp2(),
    })
}

fn peripherals(
    board: &BoardDescription,
    control: &SimControl,
    speed: f64,
) -> Result<Peripherals<chipsim::Tps546, chipsim::Emc2101, chipsim::ResetPin, SimTimeDelay>, String>
{
    let limits = VoutLimits {
        min_mv: board.regulator_mv(board.min_core_mv),
        max_mv: board.regulator_mv(board.max_core_mv),
    };
    let regulator = Tps546::init(control.regulator(), tps546::DEFAULT_ADDRESS, limits)
        .map_err(|e| format!("regulator: {e}"))?;
    let fan = Emc2101::init(control.fan_controller(), emc2101::DEFAULT_ADDRESS)
        .map_err(|e| format!("fan controller: {e}"))?;
    Ok(Peripherals {
        regulator: Some(regulator),
        fan: Some(fan),
        reset: control.reset_pin(),
        settle: SimTimeDelay(control.clone()),
        wait: ChipDelay { speed },
    })
}
