//! A board on a Linux control board: the chain's UART on a serial device (tokio-serial), as the
//! board code wants it — embedded-io-async `Read`/`Write` plus [`SetBaud`] — and the regulator,
//! fan controller and reset line through linux-embedded-hal (I2C, GPIO character device). Any
//! serial path works, including the PTYs that `chipsim serve` prints. Rates no `Bxxx` constant
//! names (3.125 Mbaud) go through termios2, which serialport uses on Linux.

use std::path::Path;

use hashboard::board::{BoardDescription, Regulator};
use hashboard::drivers::emc2101::Emc2101;
use hashboard::drivers::tps546::{Tps546, VoutLimits};
use hashboard::uart::SetBaud;
use linux_embedded_hal::I2cdev;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::{SerialPort, SerialPortBuilderExt, SerialStream};
use tracing::warn;

use crate::board::{Board, ChipDelay, Peripherals, TokioDelay};
use crate::config::{BoardSection, ChainSection, GpioSection, MiningSettings};
use crate::control::Intent;
use crate::daemon::init_config;
use crate::unit::Rig;

/// The rate BM13xx chains answer at after reset.
const RESET_BAUD: u32 = 115_200;

#[derive(Debug)]
pub struct SerialUart {
    port: SerialStream,
}

impl SerialUart {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let port = tokio_serial::new(path.to_string_lossy(), RESET_BAUD)
            .data_bits(tokio_serial::DataBits::Eight)
            .parity(tokio_serial::Parity::None)
            .stop_bits(tokio_serial::StopBits::One)
            .flow_control(tokio_serial::FlowControl::None)
            .open_native_async()
            .map_err(std::io::Error::other)?;
        Ok(Self { port })
    }
}

impl embedded_io::ErrorType for SerialUart {
    type Error = std::io::Error;
}

impl embedded_io_async::Read for SerialUart {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        match self.port.read(buf).await? {
            // A UART never ends; zero bytes means the device went away (unplugged, PTY closed).
            0 if !buf.is_empty() => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the serial device closed",
            )),
            n => Ok(n),
        }
    }
}

impl embedded_io_async::Write for SerialUart {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.port.write(buf).await
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.port.flush().await
    }
}

impl SetBaud for SerialUart {
    async fn set_baud(&mut self, baud: u32) -> Result<(), Self::Error> {
        // The frame that told the chips to switch must leave at the old rate first.
        self.port.flush().await?;
        self.port.set_baud_rate(baud).map_err(std::io::Error::other)
    }
}

/// The chain's reset line on a GPIO character device, or not wired.
pub enum ResetLine {
    Gpio(linux_embedded_hal::CdevPin),
    Absent,
}

impl std::fmt::Debug for ResetLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResetLine::Gpio(_) => "ResetLine::Gpio",
            ResetLine::Absent => "ResetLine::Absent",
        })
    }
}

impl embedded_hal::digital::ErrorType for ResetLine {
    type Error = embedded_hal::digital::ErrorKind;
}

impl embedded_hal::digital::OutputPin for ResetLine {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        use embedded_hal::digital::Error as _;
        match self {
            ResetLine::Gpio(pin) => pin.set_low().map_err(|e| e.kind()),
            ResetLine::Absent => Ok(()),
        }
    }

    fn set_high(&mut self) -> Result<(), Self::Error> {
        use embedded_hal::digital::Error as _;
        match self {
            ResetLine::Gpio(pin) => pin.set_high().map_err(|e| e.kind()),
            ResetLine::Absent => Ok(()),
        }
    }
}

/// A chain on a serial device, with the board's I2C and reset line where configured.
pub type SerialBoard = Board<SerialUart, I2cdev, I2cdev, ResetLine, TokioDelay>;

/// Chain `index` on its serial device. Its regulator, fan controller and reset line are the
/// chain's own (`[[chains]] i2c_bus`, `reset_gpio`), or for chain 0 the board's.
pub fn rig(
    board: &'static BoardDescription,
    board_section: &BoardSection,
    index: usize,
    chain: &ChainSection,
    settings: &MiningSettings,
    intent: Intent,
) -> Result<Rig<SerialBoard>, String> {
    let (init, core_mv) = init_config(board, settings, intent)?;
    let first = index == 0;
    let i2c_bus = chain
        .i2c_bus
        .as_ref()
        .or(board_section.i2c_bus.as_ref().filter(|_| first));
    let reset_gpio = chain
        .reset_gpio
        .as_ref()
        .or(board_section.reset_gpio.as_ref().filter(|_| first));
    let I2cPeripherals { regulator, fan } = match i2c_bus {
        Some(bus) => i2c_peripherals(board, bus)?,
        None => I2cPeripherals {
            regulator: None,
            fan: None,
        },
    };
    let reset = match reset_gpio {
        Some(gpio) => ResetLine::Gpio(reset_pin(gpio)?),
        None => ResetLine::Absent,
    };
    let path = &chain.serial;
    let port = SerialUart::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let peripherals = Peripherals {
        regulator,
        fan,
        reset,
        settle: TokioDelay,
        wait: ChipDelay { speed: 1.0 },
    };
    Ok(Rig {
        ticket: init.ticket.value(),
        hw: Board::new(board, port, peripherals, init, core_mv),
        scale: (-f64::from(chain.simulated_share_floor_log2.unwrap_or(0))).exp2(),
    })
}

struct I2cPeripherals {
    regulator: Option<Tps546<I2cdev>>,
    fan: Option<Emc2101<I2cdev>>,
}

/// The regulator and fan controller the board description names, on `bus`.
fn i2c_peripherals(board: &BoardDescription, bus: &Path) -> Result<I2cPeripherals, String> {
    let open = || I2cdev::new(bus).map_err(|e| format!("board.i2c_bus {}: {e}", bus.display()));
    let regulator = match board.regulator {
        Regulator::Tps546 { address } => {
            let limits = VoutLimits {
                min_mv: board.regulator_mv(board.min_core_mv),
                max_mv: board.regulator_mv(board.max_core_mv),
            };
            Some(
                Tps546::init(open()?, address, limits)
                    .map_err(|e| format!("TPS546 at {address:#04x}: {e}"))?,
            )
        }
        Regulator::Ds4432u { .. } => {
            warn!("DS4432U boards: the daemon does not drive their core voltage yet");
            None
        }
    };
    let fan = match board.fan_controller {
        Some(address) => Some(
            Emc2101::init(open()?, address)
                .map_err(|e| format!("EMC2101 at {address:#04x}: {e}"))?,
        ),
        None => None,
    };
    Ok(I2cPeripherals { regulator, fan })
}

fn reset_pin(gpio: &GpioSection) -> Result<linux_embedded_hal::CdevPin, String> {
    use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
    let fail = |e: linux_embedded_hal::gpio_cdev::Error| {
        format!(
            "board.reset_gpio {} line {}: {e}",
            gpio.chip.display(),
            gpio.line
        )
    };
    let mut chip = Chip::new(&gpio.chip).map_err(fail)?;
    // Released (high) at start: bring-up pulses it low itself.
    let handle = chip
        .get_line(gpio.line)
        .and_then(|line| line.request(LineRequestFlags::OUTPUT, 1, "hashwarden-reset"))
        .map_err(fail)?;
    linux_embedded_hal::CdevPin::new(handle).map_err(fail)
}
