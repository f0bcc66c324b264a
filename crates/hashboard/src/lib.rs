//! Board control for BM13xx hashboards: the device-side brain.
//!
//! The core is `no_std` and allocation-free; it runs under tokio on a Linux control board and
//! under an embedded executor on a microcontroller. Peripherals come in through embedded-hal 1.0
//! (`I2c`, `OutputPin`, async `DelayNs`) and each chain's UART through embedded-io-async plus
//! [`uart::SetBaud`]. Decisions (fan control, thermal guard) are pure functions with reasons; the
//! async layer only moves bytes.
#![no_std]
#![forbid(unsafe_code)]

pub mod board;
pub mod chain;
pub mod drivers;
pub mod mining;
pub mod power;
pub mod thermal;
pub mod uart;
pub mod units;
