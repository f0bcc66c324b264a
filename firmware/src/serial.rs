//! A chain's UART on a Linux serial device (tokio-serial), as the board code wants it:
//! embedded-io-async `Read`/`Write` plus [`SetBaud`]. Any serial path works, including the PTYs
//! that `chipsim serve` prints. Rates no `Bxxx` constant names (3.125 Mbaud) go through termios2,
//! which serialport uses on Linux.

use std::path::Path;

use hashboard::board::BoardDescription;
use hashboard::uart::SetBaud;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::{SerialPort, SerialPortBuilderExt, SerialStream};

use crate::board::{Board, ChipDelay, NoI2c, NoResetLine, Peripherals, TokioDelay};
use crate::config::{ChainSection, MiningSettings};
use crate::control::Intent;
use crate::daemon::{Rig, init_config};

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
        self.port.read(buf).await
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

/// A chain on a serial device with no I2C or reset line wired to the daemon (a bare UART, or a
/// `chipsim serve` PTY): power and fan are not readable, sleep clocks the chips down.
pub type SerialBoard = Board<SerialUart, NoI2c, NoI2c, NoResetLine, TokioDelay>;

pub fn rig(
    board: &'static BoardDescription,
    chain: &ChainSection,
    settings: &MiningSettings,
    intent: Intent,
) -> Result<Rig<SerialBoard>, String> {
    let path = &chain.serial;
    let port = SerialUart::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (init, core_mv) = init_config(board, settings, intent)?;
    let peripherals = Peripherals {
        regulator: None,
        fan: None,
        reset: NoResetLine,
        settle: TokioDelay,
        wait: ChipDelay { speed: 1.0 },
    };
    Ok(Rig {
        ticket: init.ticket.value(),
        hw: Board::new(board, port, peripherals, init, core_mv),
        sim: None,
        scale: (-f64::from(chain.simulated_share_floor_log2.unwrap_or(0))).exp2(),
    })
}
