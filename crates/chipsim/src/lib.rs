//! Mocked chips: a byte-accurate simulated BM13xx chain for hardware-in-the-loop tests.
//!
//! [`ChainSim`] is the sans-IO core: bytes in at the host's baud, simulated time advanced by the
//! caller, bytes out. Chips follow the spec's §14: power-on at address 0, relaying,
//! chain-inactive, set-address in chain order, register reads answered nearest chip first, writes
//! silently applied, bad-CRC frames silently dropped, baud changes after the frame. Jobs are hashed
//! for real: every nonce is a genuine solution at `ticket × share floor`, returned at the rate the
//! chip's clock gives. Physics (silicon spread, errors above the stable clock, V²f + leakage power,
//! first-order thermals, an overheat cut-off) is seeded and deterministic. Faults are scriptable.
//!
//! ```
//! use bm13xx::{ChipModel, Command, Destination};
//! use chipsim::{ChainConfig, ChainSim};
//!
//! let mut chain = ChainSim::new(ChainConfig::new(ChipModel::Bm1397, 3, 42))?;
//! // Enumeration: a broadcast read of register 0x00 at the power-on rate.
//! chain.receive(Command::read(Destination::All, 0x00).encode().as_bytes(), 115_200);
//! let answer = chain.take_output(115_200);
//! // Three chips, nearest first, each with the §3.5 chip-id frame.
//! assert_eq!(answer, [0xAA, 0x55, 0x13, 0x97, 0x18, 0x00, 0x00, 0x00, 0x06].repeat(3));
//! # Ok::<(), chipsim::ConfigError>(())
//! ```

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
