//! EMC2101 temperature sensor and fan controller: the external diode sits on the hashing chip.

use embedded_hal::i2c::I2c;

use super::DriverError;
use crate::units::round;

pub const DEFAULT_ADDRESS: u8 = 0x4C;

pub mod register {
    pub const INTERNAL_TEMP: u8 = 0x00;
    pub const EXTERNAL_TEMP_MSB: u8 = 0x01;
    pub const CONFIG: u8 = 0x03;
    pub const EXTERNAL_TEMP_LSB: u8 = 0x10;
    pub const TACH_LSB: u8 = 0x46;
    pub const TACH_MSB: u8 = 0x47;
    pub const FAN_SETTING: u8 = 0x4C;
    pub const PRODUCT_ID: u8 = 0xFD;
}

/// CONFIG bit 2: the ALERT/TACH pin is the tachometer input.
const CONFIG_TACH_INPUT: u8 = 0x04;
const PRODUCT_IDS: [u8; 2] = [0x16, 0x28];
const FAN_SETTING_MAX: u8 = 0x3F;
/// RPM = this / tach count.
const RPM_NUMERATOR: u32 = 5_400_000;
/// The external reading's 11-bit codes for a broken diode.
const OPEN_CIRCUIT: u16 = 0x3F8;
const SHORT_CIRCUIT: u16 = 0x3FF;

#[derive(Debug)]
pub struct Emc2101<I2C> {
    i2c: I2C,
    address: u8,
}

impl<I2C: I2c> Emc2101<I2C> {
    /// Checks the product id and turns the tachometer input on.
    pub fn init(i2c: I2C, address: u8) -> Result<Self, DriverError<I2C::Error>> {
        let mut this = Self { i2c, address };
        let id = this.read(register::PRODUCT_ID)?;
        if !PRODUCT_IDS.contains(&id) {
            return Err(DriverError::WrongDevice {
                found: u32::from(id),
            });
        }
        this.write(register::CONFIG, CONFIG_TACH_INPUT)?;
        Ok(this)
    }

    fn read(&mut self, register: u8) -> Result<u8, DriverError<I2C::Error>> {
        let mut value = [0u8; 1];
        self.i2c
            .write_read(self.address, &[register], &mut value)
            .map_err(DriverError::Bus)?;
        Ok(value[0])
    }

    fn write(&mut self, register: u8, value: u8) -> Result<(), DriverError<I2C::Error>> {
        self.i2c
            .write(self.address, &[register, value])
            .map_err(DriverError::Bus)
    }

    /// Fan duty in percent (0..=100), on the part's 6-bit scale.
    pub fn set_fan_percent(&mut self, percent: f32) -> Result<(), DriverError<I2C::Error>> {
        let setting = round(percent.clamp(0.0, 100.0) / 100.0 * f32::from(FAN_SETTING_MAX)) as u8;
        self.write(register::FAN_SETTING, setting)
    }

    /// The chip's temperature through the external diode, in eighths of a degree.
    pub fn external_temp_c(&mut self) -> Result<f32, DriverError<I2C::Error>> {
        let msb = self.read(register::EXTERNAL_TEMP_MSB)?;
        let lsb = self.read(register::EXTERNAL_TEMP_LSB)?;
        let code = (u16::from(msb) << 3) | u16::from(lsb >> 5);
        if code == OPEN_CIRCUIT || code == SHORT_CIRCUIT {
            return Err(DriverError::SensorFault);
        }
        Ok(f32::from(msb as i8) + f32::from(lsb >> 5) * 0.125)
    }

    pub fn internal_temp_c(&mut self) -> Result<f32, DriverError<I2C::Error>> {
        Ok(f32::from(self.read(register::INTERNAL_TEMP)? as i8))
    }

    /// Fan speed; 0 when the tachometer reads stalled.
    pub fn fan_rpm(&mut self) -> Result<u32, DriverError<I2C::Error>> {
        // Reading the low byte first latches the high byte.
        let lsb = self.read(register::TACH_LSB)?;
        let msb = self.read(register::TACH_MSB)?;
        let count = u16::from_le_bytes([lsb, msb]);
        Ok(match count {
            0 | 0xFFFF => 0,
            count => RPM_NUMERATOR / u32::from(count),
        })
    }

    pub fn release(self) -> I2C {
        self.i2c
    }
}
