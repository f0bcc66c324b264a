//! `--sim`: the board in-process on `chipsim` — its chain on the simulator's UART, its TPS546
//! and EMC2101 on the simulated I2C, its reset line — so the whole daemon runs with no hardware.

use std::time::Duration;

use bm13xx::{ChipAddressing, Response};
use chipsim::{ChainConfig, ChainSim, FaultScript, SimControl, SimLink, SimUart};
use hashboard::board::BoardDescription;
use hashboard::drivers::emc2101::{self, Emc2101};
use hashboard::drivers::tps546::{self, Tps546, VoutLimits};
use hashboard::sim::SimTimeDelay;

use crate::board::{Board, BoardError, ChipDelay, DieTemps, Hardware, Peripherals, Witness};
use crate::config::MiningSettings;
use crate::control::Intent;
use crate::daemon::init_config;
use crate::unit::Rig;

/// The simulator's share floor: nonces are genuine at ticket × 2^-26.
const SIM_FLOOR_LOG2: u32 = 26;

/// The board the simulated chain is wired to, driven by the same code as a real one.
type WiredBoard =
    Board<SimUart, chipsim::Tps546, chipsim::Emc2101, chipsim::ResetPin, SimTimeDelay>;

/// How often the simulator's clock catches up with the wall.
const CLOCK_TICK: Duration = Duration::from_millis(10);

/// A simulated board: the wired board, and the simulator behind it, whose clock, die
/// temperatures and own count the daemon sees only through [`Hardware`].
pub struct SimBoard {
    board: WiredBoard,
    control: SimControl,
    speed: f64,
    clock: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for SimBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimBoard")
            .field("board", &self.board)
            .field("speed", &self.speed)
            .finish_non_exhaustive()
    }
}

/// The hottest die of the simulated chain.
fn hottest_chip(sim: &ChainSim) -> f64 {
    sim.chips()
        .iter()
        .map(|c| c.thermal.temp_c)
        .fold(f64::MIN, f64::max)
}

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

/// A simulated board with `silicon`, wired like the real one, running `speed` times faster than
/// real time once up, playing `faults` (already this chain's).
pub fn rig(
    board: &'static BoardDescription,
    settings: &MiningSettings,
    intent: Intent,
    silicon: Silicon,
    speed: f64,
    faults: Option<FaultScript>,
) -> Result<Rig<SimBoard>, String> {
    let mut sim = ChainSim::new(chain_config(board, silicon)).map_err(|e| e.to_string())?;
    if let Some(script) = faults {
        sim.set_fault_script(script);
    }
    let (uart, control) = SimLink::open(sim);
    let (init, core_mv) = init_config(board, settings, intent)?;
    let peripherals = peripherals(board, &control, speed)?;
    Ok(Rig {
        // The chips round the ticket down to a power of two; validation uses what they filter at.
        ticket: init.ticket.value(),
        hw: SimBoard {
            board: Board::new(board, uart, peripherals, init, core_mv),
            control,
            speed,
            clock: None,
        },
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

/// The wired board does the driving; the simulator adds its clock, its dies and its count.
impl Hardware for SimBoard {
    fn description(&self) -> &'static BoardDescription {
        self.board.description()
    }
    fn asleep(&self) -> bool {
        self.board.asleep()
    }
    fn clocks(&self) -> &[u32] {
        self.board.clocks()
    }
    fn core_mv(&self) -> u32 {
        self.board.core_mv()
    }
    fn addressing(&self) -> Option<ChipAddressing> {
        self.board.addressing()
    }
    fn chips_up(&self) -> u32 {
        self.board.chips_up()
    }
    fn baud(&self) -> u32 {
        self.board.baud()
    }
    fn uart_errors(&self) -> u64 {
        self.board.uart_errors()
    }
    async fn power_up(&mut self) -> Result<(), BoardError> {
        self.board.power_up().await
    }
    fn power_off_at_start(&mut self) -> Result<(), BoardError> {
        self.board.power_off_at_start()
    }
    async fn sleep(&mut self) -> Result<(), BoardError> {
        self.board.sleep().await
    }
    async fn set_clocks(&mut self, clocks: &[u32]) -> Result<(), BoardError> {
        self.board.set_clocks(clocks).await
    }
    async fn set_ticket(&mut self, ticket: f64) -> Result<f64, BoardError> {
        self.board.set_ticket(ticket).await
    }
    async fn set_core_voltage(&mut self, target_mv: u32) -> Result<(), BoardError> {
        self.board.set_core_voltage(target_mv).await
    }
    async fn next_response(&mut self, timeout_ms: u32) -> Result<Option<Response>, BoardError> {
        self.board.next_response(timeout_ms).await
    }
    async fn drain_response(&mut self, timeout_ms: u32) -> Result<Option<Response>, BoardError> {
        self.board.drain_response(timeout_ms).await
    }
    async fn write_frame(&mut self, bytes: &[u8]) -> Result<(), BoardError> {
        self.board.write_frame(bytes).await
    }
    fn power_w(&mut self) -> Option<f64> {
        self.board.power_w()
    }
    fn fan(&mut self) -> Option<(u32, f32)> {
        self.board.fan()
    }
    fn board_temp_c(&mut self) -> Option<f64> {
        self.board.board_temp_c()
    }
    fn regulator_temp_c(&mut self) -> Option<f64> {
        self.board.regulator_temp_c()
    }
    fn has_thermal_sensor(&self) -> bool {
        self.board.has_thermal_sensor()
    }
    fn set_fan_percent(&mut self, percent: f32) -> Result<(), BoardError> {
        self.board.set_fan_percent(percent)
    }

    fn chip_clock_s(&self) -> Option<f64> {
        Some(self.control.with_sim(|s| s.now_s()))
    }

    fn start_chip_clock(&mut self) {
        if self.clock.is_none() {
            let control = self.control.clone();
            self.clock = Some(tokio::spawn(control.run_realtime(self.speed, CLOCK_TICK)));
        }
    }

    async fn stop_chip_clock(&mut self) {
        if let Some(clock) = self.clock.take() {
            clock.abort();
            let _ = clock.await;
        }
    }

    /// The simulator's die temperatures stand in for per-chip sensors.
    fn die_temps(&mut self) -> Option<DieTemps> {
        Some(self.control.with_sim(|s| DieTemps {
            hottest_c: hottest_chip(s),
            any_overheated: s.chips().iter().any(|c| c.thermal.overheated),
        }))
    }

    fn witness(&self) -> Option<Witness> {
        Some(self.control.with_sim(|s| Witness {
            nonces_sent: s.stats().nonces_sent,
            hottest_chip_c: hottest_chip(s),
            peak_chip_c: hottest_chip(s),
            chips_overheated: s.chips().iter().filter(|c| c.thermal.overheated).count(),
            final_power_w: s.power_w(),
        }))
    }
}
