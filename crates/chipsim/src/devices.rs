//! Board peripherals on the simulated I2C bus, sharing the chain's physics: a TPS546-style PMBus
//! core regulator and an EMC2101-style temperature sensor and fan controller. Both speak SMBus:
//! a write of `[command, data…]`, or a write of `[command]` followed by a read.
//!
//! Register and command numbers follow the TPS546D24A and EMC2101 datasheets as ESP-Miner uses
//! them. Only what a board driver needs is modelled; unknown commands NACK, as a real part's
//! unsupported commands would raise a CML fault.

use embedded_hal::i2c::{
    ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation, SevenBitAddress,
};

use crate::link::{SharedSim, lock};

/// TPS546 PMBus commands used here.
pub mod pmbus {
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
    /// OPERATION value that turns the output on.
    pub const ON: u8 = 0x80;
}

/// EMC2101 registers used here.
pub mod emc2101 {
    pub const INTERNAL_TEMP: u8 = 0x00;
    pub const EXTERNAL_TEMP_MSB: u8 = 0x01;
    pub const EXTERNAL_TEMP_LSB: u8 = 0x10;
    pub const CONFIG: u8 = 0x03;
    pub const TACH_LSB: u8 = 0x46;
    pub const TACH_MSB: u8 = 0x47;
    pub const FAN_CONFIG: u8 = 0x4A;
    pub const FAN_SETTING: u8 = 0x4C;
    pub const PWM_FREQ: u8 = 0x4D;
    pub const PWM_DIV: u8 = 0x4E;
    pub const PRODUCT_ID: u8 = 0xFD;
    pub const MANUFACTURER_ID: u8 = 0xFE;
    /// The 6-bit fan setting's full scale.
    pub const FAN_SETTING_MAX: u8 = 0x3F;
    /// RPM = this / tach count.
    pub const RPM_NUMERATOR: u32 = 5_400_000;
}

pub const TPS546_ADDRESS: u8 = 0x24;
pub const EMC2101_ADDRESS: u8 = 0x4C;
/// TPS546D24A's IC_DEVICE_ID block (ESP-Miner checks for it).
const TPS546_DEVICE_ID: [u8; 6] = [0x54, 0x49, 0x54, 0x6B, 0x24, 0x41];
/// VOUT_MODE: ULINEAR16 with exponent −9 (1/512 V per count).
const VOUT_MODE_VALUE: u8 = 0x17;
const VOUT_SCALE: f64 = 512.0;
/// The supply feeding the regulator.
const VIN_VOLTS: f64 = 12.0;
/// The fan's speed at full duty.
const FAN_MAX_RPM: f64 = 6000.0;

/// Encodes a value in PMBus LINEAR11: 5-bit exponent, 11-bit mantissa, both two's complement.
pub fn linear11(value: f64) -> u16 {
    if !value.is_finite() || value == 0.0 {
        return 0;
    }
    let mut exponent: i32 = -16;
    while exponent < 15 && (value / 2f64.powi(exponent)).abs() >= 1023.0 {
        exponent += 1;
    }
    let mantissa = (value / 2f64.powi(exponent)).round().clamp(-1024.0, 1023.0) as i32;
    (((exponent & 0x1F) as u16) << 11) | ((mantissa & 0x7FF) as u16)
}

/// A bus error, as embedded-hal reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    #[error("no device acknowledged address {0:#04x}")]
    NoDevice(u8),
    #[error("device {address:#04x} does not support command {command:#04x}")]
    Unsupported { address: u8, command: u8 },
    #[error("a read with no command byte written first")]
    ReadWithoutCommand,
}

impl embedded_hal::i2c::Error for BusError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NoDevice(_) => ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address),
            Self::Unsupported { .. } => ErrorKind::NoAcknowledge(NoAcknowledgeSource::Data),
            Self::ReadWithoutCommand => ErrorKind::Other,
        }
    }
}

/// An SMBus device: writes with data, and reads after a command byte.
trait SmbusDevice {
    const ADDRESS: u8;
    fn write(&mut self, sim: &SharedSim, command: u8, data: &[u8]) -> Result<(), BusError>;
    fn read(&mut self, sim: &SharedSim, command: u8, buf: &mut [u8]) -> Result<(), BusError>;
}

fn transact<D: SmbusDevice>(
    device: &mut D,
    sim: &SharedSim,
    address: u8,
    operations: &mut [Operation<'_>],
) -> Result<(), BusError> {
    if address != D::ADDRESS {
        return Err(BusError::NoDevice(address));
    }
    let mut command = None;
    for operation in operations {
        match operation {
            Operation::Write(bytes) => {
                if let [first, data @ ..] = *bytes {
                    command = Some(*first);
                    if !data.is_empty() {
                        device.write(sim, *first, data)?;
                    } else if *first == pmbus::CLEAR_FAULTS && D::ADDRESS == TPS546_ADDRESS {
                        // CLEAR_FAULTS is a send-byte command: no data.
                        device.write(sim, *first, &[])?;
                    }
                }
            }
            Operation::Read(buf) => {
                let command = command.ok_or(BusError::ReadWithoutCommand)?;
                device.read(sim, command, buf)?;
            }
        }
    }
    Ok(())
}

fn fill(buf: &mut [u8], bytes: &[u8]) {
    for (slot, byte) in buf
        .iter_mut()
        .zip(bytes.iter().chain(std::iter::repeat(&0)))
    {
        *slot = *byte;
    }
}

/// A TPS546-style buck: OPERATION on/off, VOUT_COMMAND clamped to VOUT_MIN..VOUT_MAX, telemetry
/// from the chain (what the chips draw), and STATUS_WORD that reports an injected regulator fault.
#[derive(Debug)]
pub struct Tps546 {
    sim: SharedSim,
    on: bool,
    vout_command: u16,
    vout_max: u16,
    vout_min: u16,
    /// STATUS_WORD bits latched since the last CLEAR_FAULTS.
    latched_status: u16,
}

/// STATUS_WORD bits.
const STATUS_OFF: u16 = 1 << 6;
const STATUS_VOUT_OV: u16 = 1 << 5;
const STATUS_VOUT: u16 = 1 << 15;

impl Tps546 {
    pub(crate) fn new(sim: SharedSim) -> Self {
        let volts = {
            let chain = &lock(&sim).sim;
            chain.core_volts() * chain.voltage_domains()
        };
        Self {
            sim,
            on: true,
            vout_command: (volts * VOUT_SCALE).round() as u16,
            vout_max: (2.0 * VOUT_SCALE) as u16,
            vout_min: (1.0 * VOUT_SCALE) as u16,
            latched_status: 0,
        }
    }

    fn apply(&self) {
        let volts = if self.on {
            f64::from(self.vout_command) / VOUT_SCALE
        } else {
            0.0
        };
        let chain = &mut lock(&self.sim).sim;
        let per_chip = volts / chain.voltage_domains();
        chain.set_core_volts(per_chip);
    }

    fn word(data: &[u8]) -> u16 {
        u16::from_le_bytes([
            data.first().copied().unwrap_or(0),
            data.get(1).copied().unwrap_or(0),
        ])
    }
}

impl SmbusDevice for Tps546 {
    const ADDRESS: u8 = TPS546_ADDRESS;

    fn write(&mut self, _: &SharedSim, command: u8, data: &[u8]) -> Result<(), BusError> {
        match command {
            pmbus::OPERATION => self.on = data.first().is_some_and(|&v| v & pmbus::ON != 0),
            pmbus::VOUT_COMMAND => {
                let wanted = Self::word(data);
                if wanted > self.vout_max {
                    self.latched_status |= STATUS_VOUT | STATUS_VOUT_OV;
                }
                self.vout_command = wanted.clamp(self.vout_min.min(self.vout_max), self.vout_max);
            }
            pmbus::VOUT_MAX => self.vout_max = Self::word(data),
            pmbus::VOUT_MIN => self.vout_min = Self::word(data),
            pmbus::CLEAR_FAULTS => self.latched_status = 0,
            _ => {
                return Err(BusError::Unsupported {
                    address: Self::ADDRESS,
                    command,
                });
            }
        }
        self.apply();
        Ok(())
    }

    fn read(&mut self, sim: &SharedSim, command: u8, buf: &mut [u8]) -> Result<(), BusError> {
        let shared = lock(sim);
        let chain = &shared.sim;
        let vout = chain.core_volts() * chain.voltage_domains();
        let pout = chain.power_w();
        let word = |value: u16| value.to_le_bytes();
        match command {
            pmbus::OPERATION => fill(buf, &[if self.on { pmbus::ON } else { 0 }]),
            pmbus::VOUT_MODE => fill(buf, &[VOUT_MODE_VALUE]),
            pmbus::VOUT_COMMAND => fill(buf, &word(self.vout_command)),
            pmbus::VOUT_MAX => fill(buf, &word(self.vout_max)),
            pmbus::VOUT_MIN => fill(buf, &word(self.vout_min)),
            pmbus::READ_VOUT => fill(buf, &word((vout * VOUT_SCALE).round() as u16)),
            pmbus::READ_VIN => fill(buf, &word(linear11(VIN_VOLTS))),
            pmbus::READ_IOUT => {
                let amps = if vout > 0.0 { pout / vout } else { 0.0 };
                fill(buf, &word(linear11(amps)));
            }
            pmbus::READ_POUT => fill(buf, &word(linear11(pout))),
            pmbus::READ_TEMPERATURE_1 => {
                // The regulator sits beside the chips: warmer than ambient by its own losses.
                fill(
                    buf,
                    &word(linear11(chain.ambient_c() + 0.15 * pout.min(400.0))),
                );
            }
            pmbus::STATUS_WORD => {
                let mut status = self.latched_status;
                if !self.on {
                    status |= STATUS_OFF;
                }
                if chain.faults().regulator_fault {
                    status |= STATUS_VOUT | STATUS_OFF;
                }
                fill(buf, &word(status));
            }
            pmbus::IC_DEVICE_ID => {
                // SMBus block read: the byte count first.
                let mut block = vec![TPS546_DEVICE_ID.len() as u8];
                block.extend_from_slice(&TPS546_DEVICE_ID);
                fill(buf, &block);
            }
            _ => {
                return Err(BusError::Unsupported {
                    address: Self::ADDRESS,
                    command,
                });
            }
        }
        Ok(())
    }
}

/// An EMC2101-style sensor and fan controller: the external diode reads the hottest chip, the
/// fan setting drives the chain's airflow, and the tachometer reports the resulting speed.
#[derive(Debug)]
pub struct Emc2101 {
    sim: SharedSim,
    registers: [u8; 256],
}

impl Emc2101 {
    pub(crate) fn new(sim: SharedSim) -> Self {
        let duty = lock(&sim).sim.fan_duty();
        let mut registers = [0u8; 256];
        registers[usize::from(emc2101::FAN_SETTING)] =
            (duty * f64::from(emc2101::FAN_SETTING_MAX)).round() as u8;
        registers[usize::from(emc2101::PRODUCT_ID)] = 0x16;
        registers[usize::from(emc2101::MANUFACTURER_ID)] = 0x5D;
        registers[usize::from(emc2101::PWM_FREQ)] = 0x17;
        registers[usize::from(emc2101::PWM_DIV)] = 0x01;
        Self { sim, registers }
    }
}

impl SmbusDevice for Emc2101 {
    const ADDRESS: u8 = EMC2101_ADDRESS;

    fn write(&mut self, sim: &SharedSim, register: u8, data: &[u8]) -> Result<(), BusError> {
        let Some(&value) = data.first() else {
            return Ok(());
        };
        match register {
            emc2101::PRODUCT_ID
            | emc2101::MANUFACTURER_ID
            | emc2101::INTERNAL_TEMP
            | emc2101::EXTERNAL_TEMP_MSB
            | emc2101::EXTERNAL_TEMP_LSB
            | emc2101::TACH_LSB
            | emc2101::TACH_MSB => {
                return Err(BusError::Unsupported {
                    address: Self::ADDRESS,
                    command: register,
                });
            }
            emc2101::FAN_SETTING => {
                let setting = value.min(emc2101::FAN_SETTING_MAX);
                lock(sim)
                    .sim
                    .set_fan_duty(f64::from(setting) / f64::from(emc2101::FAN_SETTING_MAX));
            }
            _ => {}
        }
        self.registers[usize::from(register)] = value;
        Ok(())
    }

    fn read(&mut self, sim: &SharedSim, register: u8, buf: &mut [u8]) -> Result<(), BusError> {
        let shared = lock(sim);
        let chain = &shared.sim;
        let hottest = chain
            .chips()
            .iter()
            .map(|c| c.thermal.temp_c)
            .fold(f64::MIN, f64::max);
        let rpm = chain.effective_fan_duty() * FAN_MAX_RPM;
        let tach = if rpm < 1.0 {
            0xFFFF
        } else {
            (f64::from(emc2101::RPM_NUMERATOR) / rpm)
                .round()
                .min(65_535.0) as u16
        };
        let value = match register {
            emc2101::INTERNAL_TEMP => {
                (chain.ambient_c() + 10.0).round().clamp(-128.0, 127.0) as i8 as u8
            }
            emc2101::EXTERNAL_TEMP_MSB => hottest.floor().clamp(-128.0, 127.0) as i8 as u8,
            // Fraction in eighths of a degree, bits 7..5.
            emc2101::EXTERNAL_TEMP_LSB => (((hottest - hottest.floor()) * 8.0).floor() as u8) << 5,
            emc2101::TACH_LSB => tach.to_le_bytes()[0],
            emc2101::TACH_MSB => tach.to_le_bytes()[1],
            other => self.registers[usize::from(other)],
        };
        fill(buf, &[value]);
        Ok(())
    }
}

macro_rules! i2c_device {
    ($device:ty) => {
        impl ErrorType for $device {
            type Error = BusError;
        }

        impl I2c<SevenBitAddress> for $device {
            fn transaction(
                &mut self,
                address: SevenBitAddress,
                operations: &mut [Operation<'_>],
            ) -> Result<(), Self::Error> {
                let sim = std::sync::Arc::clone(&self.sim);
                transact(self, &sim, address, operations)
            }
        }
    };
}

i2c_device!(Tps546);
i2c_device!(Emc2101);

/// One I2C bus with the regulator and the fan controller on it, as on a hashboard.
#[derive(Debug)]
pub struct SimI2cBus {
    pub regulator: Tps546,
    pub fan: Emc2101,
}

impl ErrorType for SimI2cBus {
    type Error = BusError;
}

impl I2c<SevenBitAddress> for SimI2cBus {
    fn transaction(
        &mut self,
        address: SevenBitAddress,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        match address {
            TPS546_ADDRESS => self.regulator.transaction(address, operations),
            EMC2101_ADDRESS => self.fan.transaction(address, operations),
            other => Err(BusError::NoDevice(other)),
        }
    }
}
