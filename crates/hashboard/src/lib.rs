//! Board control for BM13xx hashboards: the device-side brain.
//!
//! The core is `no_std` and allocation-free; it runs under tokio on a Linux control board and
//! under an embedded executor on a microcontroller. Peripherals come in through embedded-hal 1.0
//! (`I2c`, `OutputPin`, async `DelayNs`) and each chain's UART through embedded-io-async plus
//! [`uart::SetBaud`]. Decisions (fan control, thermal guard) are pure functions with reasons; the
//! async layer only moves bytes.
//!
//! ```
//! use hashboard::board::BM1397_HASHBOARD_12 as BOARD;
//! use hashboard::power::VoltageRamp;
//! use hashboard::thermal::{ThermalAction, ThermalGuard};
//!
//! // A request beyond the board's 1.5 V is clamped, and reached in 10 mV steps.
//! let ramp = VoltageRamp::new(&BOARD, 1480, 1600);
//! assert!(ramp.plan().clamped);
//! assert_eq!(ramp.collect::<Vec<_>>(), [1490, 1500]);
//!
//! // Past the shutdown limit the guard stops hashing, and says why.
//! let mut guard = ThermalGuard::new(BOARD.thermal);
//! assert!(matches!(guard.decide(0.0, Some(95.0), Some(4000), 60.0), ThermalAction::Stop { .. }));
//! assert!(!guard.may_hash());
//! ```
#![no_std]
#![forbid(unsafe_code)]

pub mod board;
pub mod chain;
pub mod clocks;
pub mod curtail;
pub mod drivers;
pub mod mining;
pub mod power;
pub mod profile;
#[cfg(feature = "sim")]
pub mod sim;
pub mod thermal;
pub mod tuner;
pub mod uart;
pub mod units;
