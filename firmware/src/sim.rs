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

/// Which simulated silicon a chain gets: its seed, and its grade (J/TH at the model's nominal
/// point; the model's typical figure when `None`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Silicon {
    pub seed: u64,
    pub joules_per_th: Option<f64>,
}

/// The simulator's chain for `silicon` on `board`.
fn chain_config(board: &BoardDescription, silicon: Silicon) -> ChainConfig {
    let mut chain_config = ChainConfig::new(board.model, board.chips_per_chain, silicon.seed);
    chain_config.share_floor_log2 = SIM_FLOOR_LOG2;
    chain_config.voltage_domains = board.voltage_domains;
    chain_config.joules_per_th = silicon.joules_per_th;
    chain_config
}

/// Below each chip's clean clock by this in a surveyed profile, as a tune leaves a margin.
const SURVEY_MARGIN: f64 = 0.97;
/// The chips' temperature a surveyed profile is for (a well-cooled board).
const SURVEY_TEMP_C: f64 = 60.0;

/// What a tune of this simulated chain would have stored, by survey rather than by sweep: at
/// every 25 mV of the board's range each chip a little under its clean clock, the chain's sums
/// as the curve, and each chip's clock at `core_mv`. For a site tuned before the demo's story
/// starts, and for tests that need a tuned chain without a sweep's minutes of chip time; the
/// simulator's own physics, never visible to the daemon through the chips.
pub fn surveyed_profile(
    board: &BoardDescription,
    silicon: Silicon,
    chain: u32,
    core_mv: u32,
    mode: fleet_proto::command::TuneMode,
) -> Result<crate::persist::TunedChain, String> {
    let sim = ChainSim::new(chain_config(board, silicon)).map_err(|e| e.to_string())?;
    let cores = f64::from(board.model.hashing_small_cores());
    let clean_mhz = |silicon: &chipsim::physics::Silicon, volts: f64| {
        (silicon.max_stable_mhz(volts, SURVEY_TEMP_C) * SURVEY_MARGIN)
            .clamp(board.min_frequency.mhz(), board.max_frequency.mhz())
    };
    let steps = (board.max_core_mv - board.min_core_mv) / 25;
    let curve = (0..=steps)
        .rev()
        .map(|step| {
            let mv = board.min_core_mv + 25 * step;
            let volts = f64::from(mv) / 1000.0;
            let (hashrate_ths, power_w) = sim.chips().iter().fold((0.0, 0.0), |(h, w), chip| {
                let mhz = clean_mhz(&chip.silicon, volts);
                (
                    h + mhz * 1e6 * cores / 1e12,
                    w + chip.silicon.power_w(mhz, volts, SURVEY_TEMP_C, true),
                )
            });
            fleet_proto::messages::CurvePoint {
                core_mv: mv,
                hashrate_ths,
                power_w,
            }
        })
        .collect();
    let volts = f64::from(core_mv) / 1000.0;
    Ok(crate::persist::TunedChain {
        chain,
        mode,
        chip: board.model.name().to_string(),
        core_mv,
        clocks_khz: sim
            .chips()
            .iter()
            .map(|chip| (clean_mhz(&chip.silicon, volts) * 1000.0).round() as u32)
            .collect(),
        curve,
        at: crate::telemetry::unix_now(),
    })
}

/// A simulated board with `silicon`, wired like the real one.
pub fn rig(
    board: &'static BoardDescription,
    settings: &MiningSettings,
    intent: Intent,
    silicon: Silicon,
    speed: f64,
) -> Result<Rig<SimBoard>, String> {
    let sim = ChainSim::new(chain_config(board, silicon)).map_err(|e| e.to_string())?;
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
