//! A board as the daemon drives it: one chain on a UART, a TPS546 and an EMC2101 on I2C when the
//! board has them, a reset line. The same code drives a serial device (a real chain or a
//! `chipsim serve` PTY) and, with the `sim` feature, the in-process simulator; every change goes
//! through the hashboard crate (bring-up, curtail, PLL ramps, voltage ramps). [`Hardware`] is all
//! the rest of the daemon knows of a board.

use std::time::Duration;

use bm13xx::{
    ChipAddressing, Command, Destination, Frequency, InitConfig, Response, TicketDifficulty,
};
use embedded_hal::digital::OutputPin;
use embedded_hal::i2c::I2c;
use embedded_io_async::{Read, Write};
use hashboard::board::BoardDescription;
use hashboard::chain::Chain;
use hashboard::drivers::emc2101::Emc2101;
use hashboard::drivers::tps546::Tps546;
use hashboard::profile::StoredProfile;
use hashboard::uart::SetBaud;

/// Waiting in real time: how the board code's settle times pass on a real board.
#[derive(Debug)]
pub struct TokioDelay;

impl embedded_hal_async::delay::DelayNs for TokioDelay {
    async fn delay_ns(&mut self, ns: u32) {
        tokio::time::sleep(Duration::from_nanos(u64::from(ns))).await;
    }
}

/// Waiting in the chips' time: real time on real chips, `1 / speed` of it on a simulator that
/// runs `speed` times faster, so ramps and settle times keep their meaning at any speed.
#[derive(Debug, Clone, Copy)]
pub struct ChipDelay {
    pub speed: f64,
}

impl embedded_hal_async::delay::DelayNs for ChipDelay {
    async fn delay_ns(&mut self, ns: u32) {
        tokio::time::sleep(Duration::from_secs_f64(f64::from(ns) / 1e9 / self.speed)).await;
    }
}

/// How often an idle (asleep) board looks for something to do.
const ASLEEP_POLL: Duration = Duration::from_millis(100);

pub struct Board<U, RI, FI, P, D> {
    pub board: &'static BoardDescription,
    /// `None` while the chain has never been brought up (started asleep); the port waits here.
    chain: Option<Chain<U>>,
    port: Option<U>,
    /// Boards without a PMBus regulator (or a chain on a bare serial port) cannot cut power:
    /// sleep then clocks the chips down and stops sending work.
    regulator: Option<Tps546<RI>>,
    fan: Option<Emc2101<FI>>,
    /// The duty last commanded, for telemetry (the EMC2101 has no read-back worth trusting).
    fan_percent: Option<f32>,
    reset: P,
    settle: D,
    /// How ramps and settle times wait while the chain runs.
    wait: ChipDelay,
    init: InitConfig,
    /// Each chip's clock, kHz: one for all until the tuner gives each chip its own.
    clocks: Vec<u32>,
    pub core_mv: u32,
    asleep: bool,
}

impl<U, RI, FI, P, D> std::fmt::Debug for Board<U, RI, FI, P, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board")
            .field("board", &self.board.name)
            .field("up", &self.chain.is_some())
            .finish_non_exhaustive()
    }
}

/// The peripherals a board has.
pub struct Peripherals<RI, FI, P, D> {
    pub regulator: Option<Tps546<RI>>,
    pub fan: Option<Emc2101<FI>>,
    pub reset: P,
    /// How bring-up waits its settle times: real time on a real board, simulated time
    /// in-process (bring-up then takes microseconds of wall time).
    pub settle: D,
    /// How ramps wait once the chain is running.
    pub wait: ChipDelay,
}

impl<RI, FI, P, D> std::fmt::Debug for Peripherals<RI, FI, P, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peripherals")
            .field("regulator", &self.regulator.is_some())
            .field("fan", &self.fan.is_some())
            .finish_non_exhaustive()
    }
}

/// What went wrong with a board. The drivers' own errors are kept as their text: they differ
/// by bus and part, and the daemon only reports them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BoardError {
    #[error("wake failed: {0}")]
    Wake(String),
    #[error("bring-up failed: {0}")]
    BringUp(String),
    #[error("sleep failed: {0}")]
    Sleep(String),
    #[error("clock-down failed: {0}")]
    ClockDown(String),
    #[error("clock ramp: {0}")]
    ClockRamp(String),
    /// The regulator, the fan controller: the part and what it said.
    #[error("{part}: {detail}")]
    Peripheral { part: &'static str, detail: String },
    #[error("UART: {0}")]
    Uart(String),
    #[error("{given} clocks for a chain of {chips} chips")]
    ClockCount { given: usize, chips: usize },
    #[error("{0} is not a ticket difficulty")]
    Ticket(f64),
    #[error("this board has no adjustable regulator")]
    NoRegulator,
    #[error("this board has no fan controller")]
    NoFan,
    #[error("fan duty {0} is not 0..=100 %")]
    FanDuty(f32),
    #[error("tuning needs the board's power reading, and this board has none")]
    NoPowerReading,
    #[error("the chain's port is gone")]
    PortGone,
}

/// A peripheral's error as a board error.
fn peripheral<E: core::fmt::Display>(part: &'static str) -> impl Fn(E) -> BoardError {
    move |e| BoardError::Peripheral {
        part,
        detail: e.to_string(),
    }
}

/// A UART error as a board error.
fn uart<E: core::fmt::Debug>(e: E) -> BoardError {
    BoardError::Uart(format!("{e:?}"))
}

impl<U, RI, FI, P, D> Board<U, RI, FI, P, D> {
    /// Wires the board; the chain stays down until [`Hardware::power_up`].
    pub fn new(
        board: &'static BoardDescription,
        port: U,
        peripherals: Peripherals<RI, FI, P, D>,
        init: InitConfig,
        core_mv: u32,
    ) -> Self {
        Self {
            board,
            chain: None,
            port: Some(port),
            regulator: peripherals.regulator,
            fan: peripherals.fan,
            fan_percent: None,
            reset: peripherals.reset,
            settle: peripherals.settle,
            wait: peripherals.wait,
            clocks: vec![init.frequency.khz(); board.chips_per_chain as usize],
            init,
            core_mv,
            asleep: true,
        }
    }

    /// The clocks and voltage the chips run at, as the hashboard crate's wake takes them.
    fn profile(&self) -> StoredProfile {
        let mut clocks_khz = [0u32; hashboard::mining::MAX_CHIPS];
        for (slot, &clock) in clocks_khz.iter_mut().zip(&self.clocks) {
            *slot = clock;
        }
        StoredProfile {
            model: self.board.model,
            core_mv: self.core_mv,
            chips: self.clocks.len().min(hashboard::mining::MAX_CHIPS),
            clocks_khz,
        }
    }

    /// The slowest chip's clock: a broadcast clock-down from it moves no chip up.
    fn slowest(&self) -> Frequency {
        Frequency::from_khz(self.clocks.iter().copied().min().unwrap_or(0))
    }
}

/// What the mining loop needs from a board, whatever drives its chain.
#[allow(
    async_fn_in_trait,
    reason = "the daemon runs its board on one task; no Send bound needed"
)]
pub trait Hardware {
    fn description(&self) -> &'static BoardDescription;
    fn asleep(&self) -> bool;
    /// Each chip's clock, kHz, as it runs (or wakes to).
    fn clocks(&self) -> &[u32];
    /// The chips' mean clock: the chain's clock when they share one.
    fn frequency(&self) -> Frequency {
        let clocks = self.clocks();
        let sum: u64 = clocks.iter().map(|&khz| u64::from(khz)).sum();
        Frequency::from_khz((sum / clocks.len().max(1) as u64) as u32)
    }
    /// The per-chip core voltage the board runs at (or wakes to).
    fn core_mv(&self) -> u32;
    /// How the chips are addressed, once the chain is up.
    fn addressing(&self) -> Option<ChipAddressing>;
    /// Chips answering on the chain (0 while it is down or asleep).
    fn chips_up(&self) -> u32;
    fn baud(&self) -> u32;
    /// Bytes and frames the UART decoder could not use (garbage, CRC, truncation).
    fn uart_errors(&self) -> u64;
    async fn power_up(&mut self) -> Result<(), BoardError>;
    fn power_off_at_start(&mut self) -> Result<(), BoardError>;
    async fn sleep(&mut self) -> Result<(), BoardError>;
    /// Every chip to `target`.
    async fn set_frequency(&mut self, target: Frequency) -> Result<(), BoardError> {
        let clocks = vec![target.khz(); self.clocks().len()];
        self.set_clocks(&clocks).await
    }
    /// Chip `i` to `clocks[i]` kHz (clamped to the board), ramped side by side.
    async fn set_clocks(&mut self, clocks: &[u32]) -> Result<(), BoardError>;
    /// Tells the chips to return nonces at `ticket` difficulty (rounded down to a power of two);
    /// returns the ticket they now filter at.
    async fn set_ticket(&mut self, ticket: f64) -> Result<f64, BoardError>;
    async fn set_core_voltage(&mut self, target_mv: u32) -> Result<(), BoardError>;
    async fn next_response(&mut self, timeout_ms: u32) -> Result<Option<Response>, BoardError>;
    /// Like `next_response`, asleep or not: what the chips still send while they stop.
    async fn drain_response(&mut self, timeout_ms: u32) -> Result<Option<Response>, BoardError>;
    async fn write_frame(&mut self, bytes: &[u8]) -> Result<(), BoardError>;
    fn power_w(&mut self) -> Option<f64>;
    /// The fan's (tachometer rpm, commanded duty %), when the board has a fan controller.
    fn fan(&mut self) -> Option<(u32, f32)>;
    /// The board sensor's temperature (the EMC2101's external diode, on the hottest chip).
    fn board_temp_c(&mut self) -> Option<f64>;
    /// The voltage regulator's own temperature (PMBus READ_TEMPERATURE_1), when it has one.
    fn regulator_temp_c(&mut self) -> Option<f64>;
    /// Whether a temperature sensor is wired at all (thermal protection needs one).
    fn has_thermal_sensor(&self) -> bool;
    /// Sets the fan duty (clamped to the board's minimum safe duty).
    fn set_fan_percent(&mut self, percent: f32) -> Result<(), BoardError>;

    /// The chips' own clock, seconds, where it is not the wall's (a simulator that runs
    /// faster than real time); the daemon then paces its rounds and rates by it.
    fn chip_clock_s(&self) -> Option<f64> {
        None
    }
    /// Starts the chips' own clock, once the chain is up; real chips keep the wall's time.
    fn start_chip_clock(&mut self) {}
    /// Stops it, so that what the chips sent can be reconciled with what the daemon counted.
    async fn stop_chip_clock(&mut self) {}
    /// The dies' own temperatures, where the board can read them per chip.
    fn die_temps(&mut self) -> Option<DieTemps> {
        None
    }
    /// An account of the run kept apart from the daemon's own (a simulator's count of what it
    /// sent), for the summary to be checked against.
    fn witness(&self) -> Option<Witness> {
        None
    }
}

/// The chips' die temperatures, as far as the board reads them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DieTemps {
    pub hottest_c: f64,
    /// Whether any chip has shut itself down for heat.
    pub any_overheated: bool,
}

/// What the chips' side saw of a run, told by something other than the daemon (the
/// simulator, in `--sim`): the summary reports it so the two can be reconciled.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Witness {
    pub nonces_sent: u64,
    pub hottest_chip_c: f64,
    /// The hottest any chip got during the run (sampled every governing round).
    pub peak_chip_c: f64,
    pub chips_overheated: usize,
    pub final_power_w: f64,
}

impl<U, E, RI, FI, P, D> Hardware for Board<U, RI, FI, P, D>
where
    U: Read<Error = E> + Write<Error = E> + SetBaud<Error = E>,
    E: core::fmt::Debug + embedded_io::Error,
    RI: I2c,
    FI: I2c,
    P: OutputPin,
    D: embedded_hal_async::delay::DelayNs,
{
    fn description(&self) -> &'static BoardDescription {
        self.board
    }

    fn clocks(&self) -> &[u32] {
        &self.clocks
    }

    fn core_mv(&self) -> u32 {
        self.core_mv
    }

    fn addressing(&self) -> Option<ChipAddressing> {
        self.chain.as_ref().map(Chain::addressing)
    }

    fn chips_up(&self) -> u32 {
        match &self.chain {
            Some(chain) if !self.asleep => chain.chips(),
            _ => 0,
        }
    }

    fn baud(&self) -> u32 {
        self.chain.as_ref().map_or(0, Chain::baud)
    }

    fn uart_errors(&self) -> u64 {
        self.chain
            .as_ref()
            .map_or(0, Chain::uart_errors_since_bring_up)
    }

    fn asleep(&self) -> bool {
        self.asleep
    }

    /// Supply on at the board's lowest voltage, ramped to `core_mv`, then the chain brought up
    /// (the first time) or re-initialised at the current clock and voltage.
    async fn power_up(&mut self) -> Result<(), BoardError> {
        let profile = self.profile();
        let slowest = self.slowest();
        let board = self.board;
        match (&mut self.chain, &mut self.regulator) {
            (Some(chain), Some(regulator)) => {
                hashboard::curtail::wake(
                    chain,
                    regulator,
                    &mut self.reset,
                    &mut self.wait,
                    board,
                    self.init,
                    &profile,
                )
                .await
                .map_err(|e| BoardError::Wake(e.to_string()))?;
            }
            // No supply was cut: the chips kept their addresses and baud at a quarter clock.
            (Some(chain), None) => {
                let quarter = board.clamp_frequency(Frequency::from_khz(slowest.khz() / 4));
                let from = vec![quarter.khz(); self.clocks.len()];
                ramp_chips(chain, &mut self.wait, board, &from, &self.clocks).await?;
            }
            (None, _) => {
                if let Some(regulator) = &mut self.regulator {
                    hashboard::power::supply_on(regulator, board, &mut self.wait, self.core_mv)
                        .await
                        .map_err(peripheral("regulator"))?;
                }
                let port = self.port.take().ok_or(BoardError::PortGone)?;
                let init = InitConfig {
                    frequency: slowest,
                    ..self.init
                };
                let mut chain = Chain::bring_up(port, &mut self.reset, &mut self.settle, init)
                    .await
                    .map_err(|e| BoardError::BringUp(e.to_string()))?;
                let from = vec![slowest.khz(); self.clocks.len()];
                ramp_chips(&mut chain, &mut self.wait, board, &from, &self.clocks).await?;
                self.chain = Some(chain);
            }
        }
        self.asleep = false;
        Ok(())
    }

    /// A board that starts asleep keeps its supply off and its chain down.
    fn power_off_at_start(&mut self) -> Result<(), BoardError> {
        if let Some(regulator) = &mut self.regulator {
            regulator
                .set_output(false)
                .map_err(peripheral("regulator"))?;
        }
        if self.fan.is_some() {
            self.set_fan_percent(self.board.min_fan_percent)?;
        }
        self.asleep = true;
        Ok(())
    }

    /// Clock down in steps, supply off, fan to its minimum. Without a regulator the chips are
    /// left at a quarter clock and get no more work.
    async fn sleep(&mut self) -> Result<(), BoardError> {
        let slowest = self.slowest();
        let Some(chain) = &mut self.chain else {
            return self.power_off_at_start();
        };
        match &mut self.regulator {
            Some(regulator) => {
                hashboard::curtail::sleep(
                    chain,
                    regulator,
                    None::<&mut Emc2101<RI>>,
                    &mut self.wait,
                    self.board,
                    slowest,
                )
                .await
                .map_err(|e| BoardError::Sleep(e.to_string()))?;
            }
            None => {
                hashboard::curtail::clock_down::<_, _, RI::Error, _>(
                    chain,
                    &mut self.wait,
                    self.board,
                    slowest,
                )
                .await
                .map_err(|e| BoardError::ClockDown(e.to_string()))?;
            }
        }
        if self.fan.is_some() {
            self.set_fan_percent(self.board.min_fan_percent)?;
        }
        self.asleep = true;
        Ok(())
    }

    async fn set_clocks(&mut self, clocks: &[u32]) -> Result<(), BoardError> {
        if clocks.len() != self.clocks.len() {
            return Err(BoardError::ClockCount {
                given: clocks.len(),
                chips: self.clocks.len(),
            });
        }
        let board = self.board;
        let clamped: Vec<u32> = clocks
            .iter()
            .map(|&khz| board.clamp_frequency(Frequency::from_khz(khz)).khz())
            .collect();
        if let Some(chain) = &mut self.chain
            && !self.asleep
        {
            ramp_chips(chain, &mut self.wait, board, &self.clocks, &clamped).await?;
        }
        self.clocks = clamped;
        Ok(())
    }

    async fn set_ticket(&mut self, ticket: f64) -> Result<f64, BoardError> {
        let ticket = TicketDifficulty::at_most(ticket).ok_or(BoardError::Ticket(ticket))?;
        if let Some(chain) = &mut self.chain
            && !self.asleep
        {
            let frame = Command::write(Destination::All, ticket.mask()).encode();
            chain.write_frame(frame.as_bytes()).await.map_err(uart)?;
        }
        // A re-initialised chain (wake, thermal resume) comes up filtering at it too.
        self.init.ticket = ticket;
        Ok(ticket.value())
    }

    async fn set_core_voltage(&mut self, target_mv: u32) -> Result<(), BoardError> {
        let Some(regulator) = &mut self.regulator else {
            return Err(BoardError::NoRegulator);
        };
        if !self.asleep {
            hashboard::power::ramp_core_voltage(
                regulator,
                self.board,
                &mut self.wait,
                self.core_mv,
                target_mv,
            )
            .await
            .map_err(peripheral("regulator"))?;
        }
        self.core_mv = target_mv;
        Ok(())
    }

    /// The next frame from the chain, waiting at most `timeout_ms`; an asleep board only waits.
    async fn next_response(&mut self, timeout_ms: u32) -> Result<Option<Response>, BoardError> {
        match &mut self.chain {
            Some(chain) if !self.asleep => chain
                .next_response(&mut TokioDelay, timeout_ms)
                .await
                .map_err(uart),
            _ => {
                tokio::time::sleep(ASLEEP_POLL).await;
                Ok(None)
            }
        }
    }

    async fn drain_response(&mut self, timeout_ms: u32) -> Result<Option<Response>, BoardError> {
        match &mut self.chain {
            Some(chain) => chain
                .next_response(&mut TokioDelay, timeout_ms)
                .await
                .map_err(uart),
            None => Ok(None),
        }
    }

    async fn write_frame(&mut self, bytes: &[u8]) -> Result<(), BoardError> {
        match &mut self.chain {
            Some(chain) if !self.asleep => chain.write_frame(bytes).await.map_err(uart),
            _ => Ok(()),
        }
    }

    /// Regulator output power, W (read over PMBus); `None` without a regulator.
    fn power_w(&mut self) -> Option<f64> {
        if self.asleep && self.regulator.is_some() {
            return Some(0.0);
        }
        self.regulator
            .as_mut()?
            .telemetry()
            .ok()
            .map(|t| f64::from(t.pout_w))
    }

    fn fan(&mut self) -> Option<(u32, f32)> {
        let rpm = self.fan.as_mut()?.fan_rpm().ok()?;
        Some((rpm, self.fan_percent.unwrap_or(0.0)))
    }

    fn has_thermal_sensor(&self) -> bool {
        self.fan.is_some()
    }

    fn board_temp_c(&mut self) -> Option<f64> {
        self.fan.as_mut()?.external_temp_c().ok().map(f64::from)
    }

    fn regulator_temp_c(&mut self) -> Option<f64> {
        self.regulator
            .as_mut()?
            .telemetry()
            .ok()
            .map(|t| f64::from(t.temperature_c))
    }

    fn set_fan_percent(&mut self, percent: f32) -> Result<(), BoardError> {
        let percent = percent.clamp(self.board.min_fan_percent, 100.0);
        let fan = self.fan.as_mut().ok_or(BoardError::NoFan)?;
        fan.set_fan_percent(percent).map_err(peripheral("fan"))?;
        self.fan_percent = Some(percent);
        Ok(())
    }
}

/// Ramps chip `i` from `from[i]` to `to[i]` kHz, side by side.
async fn ramp_chips<U, E>(
    chain: &mut Chain<U>,
    wait: &mut ChipDelay,
    board: &BoardDescription,
    from: &[u32],
    to: &[u32],
) -> Result<(), BoardError>
where
    U: Read<Error = E> + Write<Error = E> + SetBaud<Error = E>,
    E: core::fmt::Debug + embedded_io::Error,
{
    hashboard::clocks::ramp_each(chain, wait, board.model, from, to)
        .await
        .map(|_| ())
        .map_err(|e| BoardError::ClockRamp(e.to_string()))
}
