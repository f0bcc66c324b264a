//! Mocked chips: a byte-accurate simulated BM13xx chain for hardware-in-the-loop tests.
//!
//! [`ChainSim`] is the sans-IO core: bytes in at the host's baud, simulated time advanced by the
//! caller, bytes out. Chips follow the spec's §14: power-on at address 0, relaying,
//! chain-inactive, set-address in chain order, register reads answered nearest chip first, writes
//! silently applied, bad-CRC frames silently dropped, baud changes after the frame. Jobs are hashed
//! for real: every nonce is a genuine solution at `ticket × share floor`, returned at the rate the
//! chip's clock gives. Physics (silicon spread, errors above the stable clock, V²f + leakage power,
//! first-order thermals, an overheat cut-off) is seeded and deterministic. Faults are scriptable.

pub mod chain;
pub mod chip;
pub mod devices;
pub mod faults;
pub mod link;
pub mod oracle;
pub mod physics;
pub mod pty;
pub mod rng;

pub use chain::{ChainConfig, ChainSim, ChainStats, ConfigError};
pub use devices::{Emc2101, SimI2cBus, Tps546};
pub use faults::{FaultScript, Faults, ScriptEntry};
pub use link::{ResetPin, SimControl, SimLink, SimUart};
pub use oracle::Oracle;
