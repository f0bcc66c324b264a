//! DS4432U current DAC trimming a TPS40305 buck's feedback (Bitaxe Max/Ultra/Supra; protocol.md §13).

use embedded_hal::i2c::I2c;

use super::DriverError;
use crate::units::ceil;

pub const DEFAULT_ADDRESS: u8 = 0x48;
/// Current-source registers.
pub const OUT0: u8 = 0xF8;
pub const OUT1: u8 = 0xF9;

/// The feedback network the DAC trims: VFB 0.6 V, RA 4750 Ω, RB 3320 Ω, full-scale 98.921 µA.
const VFB: f32 = 0.6;
const RA: f32 = 4750.0;
const RB: f32 = 3320.0;
const IFS: f32 = 98.921e-6;
/// Bit 7 set: the DAC sources current, pulling the output down from its untrimmed 1.451 V.
const SOURCE: u8 = 0x80;
const UNTRIMMED_V: f32 = 1.451;

/// The DAC code for an output voltage: |I| / IFS × 127, rounded up, where I is the current that
/// moves the feedback node to VFB at that output (ESP-Miner's formula, protocol.md §13).
pub fn code_for_mv(millivolts: u32) -> u8 {
    let volts = millivolts as f32 / 1000.0;
    let current = VFB / RB - (volts - VFB) / RA;
    let magnitude = ceil(current.abs() / IFS * 127.0).min(127.0) as u8;
    if volts < UNTRIMMED_V {
        magnitude | SOURCE
    } else {
        magnitude
    }
}

#[derive(Debug)]
pub struct Ds4432u<I2C> {
    i2c: I2C,
    address: u8,
    /// Valid range of this board's output (the DAC covers 0.046–2.39 V; boards allow far less).
    min_mv: u32,
    max_mv: u32,
}

impl<I2C: I2c> Ds4432u<I2C> {
    pub fn new(i2c: I2C, address: u8, min_mv: u32, max_mv: u32) -> Self {
        Self {
            i2c,
            address,
            min_mv,
            max_mv,
        }
    }

    pub fn set_vout_mv(&mut self, millivolts: u32) -> Result<(), DriverError<I2C::Error>> {
        if !(self.min_mv..=self.max_mv).contains(&millivolts) {
            return Err(DriverError::OutOfRange {
                requested_mv: millivolts,
                min_mv: self.min_mv,
                max_mv: self.max_mv,
            });
        }
        self.i2c
            .write(self.address, &[OUT0, code_for_mv(millivolts)])
            .map_err(DriverError::Bus)
    }

    pub fn release(self) -> I2C {
        self.i2c
    }
}
