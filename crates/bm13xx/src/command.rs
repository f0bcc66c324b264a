//! Command frames, host → chip (§2.1).

use crate::buf::Encoded;
use crate::crc::crc5;
use crate::registers::Register;
use crate::{PREAMBLE_TX, ParseError};

/// The largest command frame: a register write.
pub const MAX_COMMAND_LEN: usize = 11;

/// A command frame, encoded.
pub type CommandFrame = Encoded<MAX_COMMAND_LEN>;

const TYPE_COMMAND: u8 = 0x40;
const FLAG_ALL: u8 = 0x10;
const CMD_SET_ADDRESS: u8 = 0;
const CMD_WRITE: u8 = 1;
const CMD_READ: u8 = 2;
const CMD_INACTIVE: u8 = 3;

/// Which chips a register command is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    /// The one chip at this logical address.
    Chip(u8),
    /// Every chip on the chain (the ALL bit; payload byte 0 is 0x00).
    All,
}

impl Destination {
    pub const fn is_broadcast(self) -> bool {
        matches!(self, Self::All)
    }

    /// What goes in payload byte 0.
    pub const fn address_byte(self) -> u8 {
        match self {
            Self::Chip(address) => address,
            Self::All => 0,
        }
    }
}

/// A non-job frame from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// The first chip without an address takes this one and starts relaying (§6.1).
    SetAddress { address: u8 },
    WriteRegister {
        destination: Destination,
        register: u8,
        value: u32,
    },
    ReadRegister {
        destination: Destination,
        register: u8,
    },
    /// Every chip forgets its address and stops relaying, ready for addressing (§6.1).
    ChainInactive,
}

impl Command {
    /// A typed register write.
    pub fn write<R: Register>(destination: Destination, register: R) -> Self {
        Self::WriteRegister {
            destination,
            register: R::ADDRESS,
            value: register.to_value(),
        }
    }

    pub const fn read(destination: Destination, register: u8) -> Self {
        Self::ReadRegister {
            destination,
            register,
        }
    }

    pub const fn destination(&self) -> Destination {
        match *self {
            Self::SetAddress { address } => Destination::Chip(address),
            Self::WriteRegister { destination, .. } | Self::ReadRegister { destination, .. } => {
                destination
            }
            Self::ChainInactive => Destination::All,
        }
    }

    const fn header_byte(&self) -> u8 {
        let (cmd, all) = match *self {
            Self::SetAddress { .. } => (CMD_SET_ADDRESS, false),
            Self::WriteRegister { destination, .. } => (CMD_WRITE, destination.is_broadcast()),
            Self::ReadRegister { destination, .. } => (CMD_READ, destination.is_broadcast()),
            Self::ChainInactive => (CMD_INACTIVE, true),
        };
        TYPE_COMMAND | if all { FLAG_ALL } else { 0 } | cmd
    }

    /// The frame, preamble and CRC included.
    pub fn encode(&self) -> CommandFrame {
        let mut frame = CommandFrame::new();
        frame.extend(&PREAMBLE_TX);
        frame.push(self.header_byte());
        match *self {
            Self::SetAddress { address } => {
                frame.extend(&[5, address, 0]);
            }
            Self::WriteRegister {
                destination,
                register,
                value,
            } => {
                frame.extend(&[9, destination.address_byte(), register]);
                frame.extend(&value.to_be_bytes());
            }
            Self::ReadRegister {
                destination,
                register,
            } => {
                frame.extend(&[5, destination.address_byte(), register]);
            }
            Self::ChainInactive => {
                frame.extend(&[5, 0, 0]);
            }
        }
        let crc = crc5(&frame.as_bytes()[2..]);
        frame.push(crc);
        frame
    }

    /// Encodes into a caller's buffer and returns the frame length.
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, crate::BufferTooSmall> {
        self.encode().copy_to(out)
    }

    /// How many bytes the encoded frame has.
    pub const fn wire_len(&self) -> usize {
        match self {
            Self::WriteRegister { .. } => 11,
            _ => 7,
        }
    }

    /// The frame length a command header byte implies, or `None` if the byte is no command.
    pub(crate) const fn frame_len_for_header(header: u8) -> Option<usize> {
        match header {
            0x40 | 0x42 | 0x52 | 0x53 => Some(7),
            0x41 | 0x51 => Some(11),
            _ => None,
        }
    }

    /// Parses one whole command frame. The CRC is reported, not enforced, so that a capture tool
    /// can show a corrupted command for what it is.
    pub fn parse(frame: &[u8]) -> Result<(Self, bool), ParseError> {
        let [p0, p1, header, len_byte, ..] = *frame else {
            return Err(ParseError::Truncated);
        };
        if [p0, p1] != PREAMBLE_TX {
            return Err(ParseError::Preamble);
        }
        let expected = Self::frame_len_for_header(header).ok_or(ParseError::UnknownHeader)?;
        if usize::from(len_byte) + 2 != expected {
            return Err(ParseError::Length);
        }
        if frame.len() < expected {
            return Err(ParseError::Truncated);
        }
        if frame.len() > expected {
            return Err(ParseError::Length);
        }
        let last = frame[expected - 1];
        let crc_ok = last & 0xE0 == 0 && crc5(&frame[2..expected - 1]) == last & 0x1F;
        let address = frame[4];
        let register = frame[5];
        let destination = if header & FLAG_ALL != 0 {
            Destination::All
        } else {
            Destination::Chip(address)
        };
        let command = match header & 0x03 {
            CMD_SET_ADDRESS => Self::SetAddress { address },
            CMD_WRITE => Self::WriteRegister {
                destination,
                register,
                value: u32::from_be_bytes([frame[6], frame[7], frame[8], frame[9]]),
            },
            CMD_READ => Self::ReadRegister {
                destination,
                register,
            },
            _ => Self::ChainInactive,
        };
        Ok((command, crc_ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn assert_frame(command: Command, hex: &str) {
        let mut expected = [0u8; MAX_COMMAND_LEN];
        let len = crate::hex::decode_into(hex, &mut expected).expect("test vector is hex");
        assert_eq!(command.encode().as_bytes(), &expected[..len], "{command:?}");
        assert_eq!(Command::parse(&expected[..len]), Ok((command, true)));
    }

    #[test]
    fn spec_section_2_examples() {
        assert_frame(Command::ChainInactive, "55AA5305000003");
        assert_frame(Command::SetAddress { address: 0 }, "55AA400500001C");
        assert_frame(Command::read(Destination::All, 0x00), "55AA520500000A");
        assert_frame(
            Command::WriteRegister {
                destination: Destination::Chip(0x40),
                register: 0x18,
                value: 0x0000_7A31,
            },
            "55AA4109401800007A3111",
        );
    }

    #[test]
    fn spec_section_6_broadcast_writes() {
        let all = |register, value| Command::WriteRegister {
            destination: Destination::All,
            register,
            value,
        };
        assert_frame(all(0xA4, 0x9000_FFFF), "55AA510900A49000FFFF1C");
        assert_frame(all(0xA8, 0x0007_0000), "55AA510900A80007000003");
        assert_frame(all(0x18, 0xFF0F_C100), "55AA51090018FF0FC10000");
        assert_frame(all(0x18, 0xF000_C100), "55AA51090018F000C10004");
    }

    #[test]
    fn corrupted_command_reports_bad_crc() {
        let mut frame = [0x55, 0xAA, 0x53, 0x05, 0x00, 0x00, 0x03];
        frame[6] = 0x04;
        assert_eq!(Command::parse(&frame), Ok((Command::ChainInactive, false)));
        // Bits 7..5 of the CRC byte are padding and must be zero.
        frame[6] = 0x23;
        assert_eq!(Command::parse(&frame), Ok((Command::ChainInactive, false)));
    }

    #[test]
    fn parse_rejects_inconsistent_lengths() {
        assert_eq!(
            Command::parse(&[0x55, 0xAA, 0x41, 0x05, 0, 0, 0]),
            Err(ParseError::Length)
        );
        assert_eq!(
            Command::parse(&[0x55, 0xAA, 0x44, 0x05, 0, 0, 0]),
            Err(ParseError::UnknownHeader)
        );
        assert_eq!(
            Command::parse(&[0x55, 0xAA, 0x53]),
            Err(ParseError::Truncated)
        );
        assert_eq!(
            Command::parse(&[0x55, 0xAA, 0x53, 0x05, 0, 0]),
            Err(ParseError::Truncated)
        );
    }
}
