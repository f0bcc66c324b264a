//! TPS546D24A PMBus buck converter (protocol.md §13): core voltage and its telemetry.

use embedded_hal::i2c::I2c;

use super::DriverError;
use crate::units::{from_linear11, pow2, round};

pub const DEFAULT_ADDRESS: u8 = 0x24;

/// PMBus commands (TPS546D24A datasheet, as ESP-Miner uses them).
pub mod command {
    pub const OPERATION: u8 = 0x01;
    pub const CLEAR_FAULTS: u8 = 0x03;
    pub const VOUT_MODE: u8 = 0x20;
    pub const VOUT_COMMAND: u8 = 0x21;
    pub const VOUT_MAX: u8 = 0x24;
    pub const VOUT_MIN: u8 = 0x2B;
    pub const STATUS_WORD: u8 = 0x79;
    pub const READ_VIN: u8 = 0x88;
    pub const READ_VOUT: u8 = 0x8B;
    pub const READ_IOUT: u8 = 0x8C;
    pub const READ_TEMPERATURE_1: u8 = 0x8D;
    pub const READ_POUT: u8 = 0x96;
    pub const IC_DEVICE_ID: u8 = 0xAD;
}

/// OPERATION: output on / off.
const ON: u8 = 0x80;
const OFF: u8 = 0x00;
/// The IC_DEVICE_ID blocks of the parts boards use (ESP-Miner's list).
const KNOWN_IDS: [[u8; 6]; 3] = [
    [0x54, 0x49, 0x54, 0x6B, 0x24, 0x41],
    [0x54, 0x49, 0x54, 0x6D, 0x24, 0x41],
    [0x54, 0x49, 0x54, 0x6D, 0x24, 0x62],
];

/// The window the board allows on the regulator's output (all series domains together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoutLimits {
    pub min_mv: u32,
    pub max_mv: u32,
}

/// What the regulator reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Telemetry {
    pub vin_v: f32,
    pub vout_v: f32,
    pub iout_a: f32,
    pub pout_w: f32,
    pub temperature_c: f32,
}

#[derive(Debug)]
pub struct Tps546<I2C> {
    i2c: I2C,
    address: u8,
    limits: VoutLimits,
    /// VOUT_MODE's exponent: ULINEAR16 volts = word × 2^exponent.
    exponent: i32,
}

impl<I2C: I2c> Tps546<I2C> {
    /// Checks the part's identity, reads its VOUT format and programs the board's limits into it,
    /// so the regulator itself refuses what the board cannot take.
    pub fn init(
        i2c: I2C,
        address: u8,
        limits: VoutLimits,
    ) -> Result<Self, DriverError<I2C::Error>> {
        let mut this = Self {
            i2c,
            address,
            limits,
            exponent: -9,
        };
        let mut id = [0u8; 7];
        this.i2c
            .write_read(address, &[command::IC_DEVICE_ID], &mut id)
            .map_err(DriverError::Bus)?;
        let block = &id[1..];
        if id[0] as usize != block.len() || !KNOWN_IDS.iter().any(|known| known == block) {
            let found = u32::from_be_bytes([block[2], block[3], block[4], block[5]]);
            return Err(DriverError::WrongDevice { found });
        }
        let mut mode = [0u8; 1];
        this.i2c
            .write_read(address, &[command::VOUT_MODE], &mut mode)
            .map_err(DriverError::Bus)?;
        // Bits 4..0: the exponent, two's complement.
        this.exponent = i32::from(((mode[0] & 0x1F) as i8) << 3 >> 3);
        this.write_word(command::VOUT_MAX, this.ulinear16(limits.max_mv))?;
        this.write_word(command::VOUT_MIN, this.ulinear16(limits.min_mv))?;
        Ok(this)
    }

    pub fn limits(&self) -> VoutLimits {
        self.limits
    }

    fn ulinear16(&self, millivolts: u32) -> u16 {
        let volts = millivolts as f32 / 1000.0;
        round(volts / pow2(self.exponent)).clamp(0.0, 65_535.0) as u16
    }

    fn write_word(&mut self, command: u8, word: u16) -> Result<(), DriverError<I2C::Error>> {
        let [low, high] = word.to_le_bytes();
        self.i2c
            .write(self.address, &[command, low, high])
            .map_err(DriverError::Bus)
    }

    fn read_word(&mut self, command: u8) -> Result<u16, DriverError<I2C::Error>> {
        let mut word = [0u8; 2];
        self.i2c
            .write_read(self.address, &[command], &mut word)
            .map_err(DriverError::Bus)?;
        Ok(u16::from_le_bytes(word))
    }

    /// Commands the output voltage. Outside the board's window it is refused, not clamped: a
    /// caller asking for it has a bug the board must not pay for.
    pub fn set_vout_mv(&mut self, millivolts: u32) -> Result<(), DriverError<I2C::Error>> {
        let VoutLimits { min_mv, max_mv } = self.limits;
        if !(min_mv..=max_mv).contains(&millivolts) {
            return Err(DriverError::OutOfRange {
                requested_mv: millivolts,
                min_mv,
                max_mv,
            });
        }
        let word = self.ulinear16(millivolts);
        self.write_word(command::VOUT_COMMAND, word)
    }

    pub fn set_output(&mut self, on: bool) -> Result<(), DriverError<I2C::Error>> {
        self.i2c
            .write(
                self.address,
                &[command::OPERATION, if on { ON } else { OFF }],
            )
            .map_err(DriverError::Bus)
    }

    pub fn clear_faults(&mut self) -> Result<(), DriverError<I2C::Error>> {
        self.i2c
            .write(self.address, &[command::CLEAR_FAULTS])
            .map_err(DriverError::Bus)
    }

    pub fn status_word(&mut self) -> Result<u16, DriverError<I2C::Error>> {
        self.read_word(command::STATUS_WORD)
    }

    pub fn read_vout_v(&mut self) -> Result<f32, DriverError<I2C::Error>> {
        Ok(f32::from(self.read_word(command::READ_VOUT)?) * pow2(self.exponent))
    }

    pub fn telemetry(&mut self) -> Result<Telemetry, DriverError<I2C::Error>> {
        Ok(Telemetry {
            vin_v: from_linear11(self.read_word(command::READ_VIN)?),
            vout_v: self.read_vout_v()?,
            iout_a: from_linear11(self.read_word(command::READ_IOUT)?),
            pout_w: from_linear11(self.read_word(command::READ_POUT)?),
            temperature_c: from_linear11(self.read_word(command::READ_TEMPERATURE_1)?),
        })
    }

    pub fn release(self) -> I2C {
        self.i2c
    }
}
