//! The wire protocol of Bitmain's BM1397, BM1366, BM1368 and BM1370 hashing chips.
//!
//! Everything here is pure: frames are encoded into fixed buffers and decoded from borrowed bytes,
//! sequencers (initialisation, frequency ramps) yield the next frame and the time to wait, and the
//! caller owns the UART and the clock. No allocator, no `std`, no `unsafe`: the same code runs under
//! tokio on a Linux control board, on a microcontroller, and inside the chip simulator.
//!
//! Section numbers (§) refer to the protocol reference in `docs/protocol.md`, which also records
//! how this crate settles the places where the public sources disagree.
//!
//! ```
//! use bm13xx::{Command, Destination, Event, ResponseDecoder, ResponseFormat, Response};
//!
//! // Enumeration starts with a broadcast read of register 0x00 (§6.1).
//! let frame = Command::read(Destination::All, 0x00).encode();
//! assert_eq!(frame.as_bytes(), [0x55, 0xAA, 0x52, 0x05, 0x00, 0x00, 0x0A]);
//!
//! // A BM1397 answers with its chip id; UART reads may split it anywhere.
//! let mut decoder = ResponseDecoder::chip_to_host(ResponseFormat::Short);
//! assert_eq!(decoder.feed(&[0xAA, 0x55, 0x13, 0x97]).count(), 0);
//! let events: Vec<_> = decoder.feed(&[0x18, 0x00, 0x00, 0x00, 0x06]).collect();
//! let [Event::Frame { frame: Response::Register(id), offset: 0, .. }] = events[..] else {
//!     panic!("expected the chip id, got {events:?}");
//! };
//! assert_eq!(id.value, 0x1397_1800);
//! ```
#![no_std]
#![forbid(unsafe_code)]

mod buf;
pub mod command;
pub mod crc;
pub mod decoder;
pub mod frequency;
pub mod header;
pub mod hex;
pub mod init;
pub mod job;
pub mod model;
pub mod nonce;
pub mod pll;
pub mod ramp;
pub mod registers;
pub mod response;
pub mod sequence;
pub mod ticket;

pub use buf::Encoded;
pub use command::{Command, CommandFrame, Destination};
pub use decoder::{
    ChipToHost, DecodeError, DecoderStats, ErrorKind, Event, HostDecoder, HostFrame, HostToChip,
    ResponseDecoder, Side, StreamDecoder,
};
pub use frequency::{
    Frequency, HashesPerSecond, expected_hashrate, full_scan_seconds, versions_per_job,
};
pub use header::{BlockHeader, Midstate, VersionMask};
pub use init::{InitConfig, InitError, InitSequence};
pub use job::{HeaderJob, Job, JobFrame, JobId, MidstateJob};
pub use model::{ChipModel, JobFormat};
pub use nonce::{ChipAddressing, NonceFields, NonceLayout, decode_nonce};
pub use pll::{PllConstraints, PllDividers, PllParameter, PllSetting};
pub use ramp::FrequencyRamp;
pub use response::{NonceResponse, RegisterResponse, Response, ResponseFormat};
pub use sequence::Step;
pub use ticket::{TicketDifficulty, TicketMask};

/// What every host → chip frame starts with.
pub const PREAMBLE_TX: [u8; 2] = [0x55, 0xAA];
/// What every chip → host frame starts with.
pub const PREAMBLE_RX: [u8; 2] = [0xAA, 0x55];

/// Why a single frame could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ParseError {
    #[error("frame does not start with the preamble")]
    Preamble,
    #[error("unknown header byte")]
    UnknownHeader,
    #[error("length byte does not match the frame")]
    Length,
    #[error("frame is shorter than its header says")]
    Truncated,
    #[error("CRC mismatch")]
    Crc,
}

/// The caller's buffer cannot hold the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("buffer of {available} bytes cannot hold a {needed}-byte frame")]
pub struct BufferTooSmall {
    pub needed: usize,
    pub available: usize,
}
