//! INA260 power monitor beside a DS4432U-trimmed regulator: the board's input current, voltage
//! and power. Registers are 16-bit, most significant byte first.

use embedded_hal::i2c::I2c;

use super::DriverError;

pub const DEFAULT_ADDRESS: u8 = 0x40;

pub mod register {
    pub const CONFIGURATION: u8 = 0x00;
    pub const CURRENT: u8 = 0x01;
    pub const BUS_VOLTAGE: u8 = 0x02;
    pub const POWER: u8 = 0x03;
    pub const MANUFACTURER_ID: u8 = 0xFE;
    pub const DIE_ID: u8 = 0xFF;
}

/// "TI".
const MANUFACTURER: u16 = 0x5449;
/// Die id register: device 0x227, revision 0.
const DIE: u16 = 0x2270;

/// What the monitor reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub current_ma: f32,
    pub bus_mv: f32,
    pub power_mw: f32,
}

#[derive(Debug)]
pub struct Ina260<I2C> {
    i2c: I2C,
    address: u8,
}

impl<I2C: I2c> Ina260<I2C> {
    pub fn init(i2c: I2C, address: u8) -> Result<Self, DriverError<I2C::Error>> {
        let mut this = Self { i2c, address };
        let manufacturer = this.read(register::MANUFACTURER_ID)?;
        let die = this.read(register::DIE_ID)?;
        if manufacturer != MANUFACTURER || die != DIE {
            return Err(DriverError::WrongDevice {
                found: (u32::from(manufacturer) << 16) | u32::from(die),
            });
        }
        Ok(this)
    }

    fn read(&mut self, register: u8) -> Result<u16, DriverError<I2C::Error>> {
        let mut value = [0u8; 2];
        self.i2c
            .write_read(self.address, &[register], &mut value)
            .map_err(DriverError::Bus)?;
        Ok(u16::from_be_bytes(value))
    }

    /// Current 1.25 mA/LSB (signed), bus voltage 1.25 mV/LSB, power 10 mW/LSB.
    pub fn read_all(&mut self) -> Result<Reading, DriverError<I2C::Error>> {
        Ok(Reading {
            current_ma: f32::from(self.read(register::CURRENT)? as i16) * 1.25,
            bus_mv: f32::from(self.read(register::BUS_VOLTAGE)?) * 1.25,
            power_mw: f32::from(self.read(register::POWER)?) * 10.0,
        })
    }

    pub fn release(self) -> I2C {
        self.i2c
    }
}
