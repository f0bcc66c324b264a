//! Responses, chip → host: register values and nonces, 9 or 11 bytes (§3).

use crate::buf::Encoded;
use crate::crc::{response_crc5, response_residue_ok};
use crate::{PREAMBLE_RX, ParseError};

/// Response frame sizes (§3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseFormat {
    /// BM1397 always; BM1366+ while version rolling is off.
    Short,
    /// BM1366+ once register 0xA4 enables version rolling: two more bytes carry the rolled
    /// version bits.
    Long,
}

impl ResponseFormat {
    pub const fn frame_len(self) -> usize {
        match self {
            Self::Short => 9,
            Self::Long => 11,
        }
    }
}

/// The largest response frame.
pub const MAX_RESPONSE_LEN: usize = 11;

/// A response frame, encoded.
pub type ResponseFrame = Encoded<MAX_RESPONSE_LEN>;

const FLAG_NONCE: u8 = 0x80;

/// A register value a chip sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegisterResponse {
    pub value: u32,
    /// The responder's logical address.
    pub chip_address: u8,
    pub register: u8,
    /// Bytes 8–9 of an 11-byte response (zero in every capture; kept for the capture tool).
    pub extra: Option<[u8; 2]>,
}

/// A nonce a chip found, as raw as it came; [`crate::nonce`] interprets the fields per model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NonceResponse {
    /// Bytes 2–5 exactly as on the wire: header bytes 76..80 (§3.2).
    pub nonce_bytes: [u8; 4],
    /// Byte 6: the midstate number on BM1397 per ESP-Miner, unknown data on BM1366+.
    pub byte6: u8,
    /// Byte 7: job id with midstate or small-core bits (§3.3).
    pub byte7: u8,
    /// Bytes 8–9 of an 11-byte response: rolled version bits >> 13.
    pub version_bits: Option<u16>,
}

impl NonceResponse {
    /// The nonce as the header (and Stratum's `mining.submit`) holds it: LE32 of bytes 2–5.
    pub const fn nonce(&self) -> u32 {
        u32::from_le_bytes(self.nonce_bytes)
    }

    /// The big-endian view of bytes 2–5 in which the sources define the core and chip fields.
    pub const fn nonce_be(&self) -> u32 {
        u32::from_be_bytes(self.nonce_bytes)
    }
}

/// A frame from a chip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Response {
    Register(RegisterResponse),
    Nonce(NonceResponse),
}

impl Response {
    pub const fn format(&self) -> ResponseFormat {
        let long = match self {
            Self::Register(r) => r.extra.is_some(),
            Self::Nonce(n) => n.version_bits.is_some(),
        };
        if long {
            ResponseFormat::Long
        } else {
            ResponseFormat::Short
        }
    }

    /// The frame a chip would send. Chips do this, not hosts: the simulator and tests need it.
    pub fn encode(&self) -> ResponseFrame {
        let mut frame = ResponseFrame::new();
        frame.extend(&PREAMBLE_RX);
        let (flags, extra) = match *self {
            Self::Register(r) => {
                frame.extend(&r.value.to_be_bytes());
                frame.extend(&[r.chip_address, r.register]);
                (0, r.extra)
            }
            Self::Nonce(n) => {
                frame.extend(&n.nonce_bytes);
                frame.extend(&[n.byte6, n.byte7]);
                (FLAG_NONCE, n.version_bits.map(u16::to_be_bytes))
            }
        };
        if let Some(extra) = extra {
            frame.extend(&extra);
        }
        let crc = response_crc5(&frame.as_bytes()[2..], flags);
        frame.push(flags | crc);
        frame
    }

    /// Parses one whole response of the given size. Unlike commands, a bad CRC is an error: nothing
    /// in a response with a bad CRC can be trusted, and hosts drop such frames.
    #[inline]
    pub fn parse(format: ResponseFormat, frame: &[u8]) -> Result<Self, ParseError> {
        let len = format.frame_len();
        if frame.len() < len {
            return Err(ParseError::Truncated);
        }
        if frame.len() > len {
            return Err(ParseError::Length);
        }
        if frame[..2] != PREAMBLE_RX {
            return Err(ParseError::Preamble);
        }
        let last = frame[len - 1];
        // Bits 6..5 are always zero; the residue check covers bit 7, the nonce flag.
        if last & 0x60 != 0 || !response_residue_ok(&frame[2..]) {
            return Err(ParseError::Crc);
        }
        let extra = match format {
            ResponseFormat::Short => None,
            ResponseFormat::Long => Some([frame[8], frame[9]]),
        };
        let four = [frame[2], frame[3], frame[4], frame[5]];
        Ok(if last & FLAG_NONCE != 0 {
            Self::Nonce(NonceResponse {
                nonce_bytes: four,
                byte6: frame[6],
                byte7: frame[7],
                version_bits: extra.map(u16::from_be_bytes),
            })
        } else {
            Self::Register(RegisterResponse {
                value: u32::from_be_bytes(four),
                chip_address: frame[6],
                register: frame[7],
                extra,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex::decode_into;

    fn parse_hex(format: ResponseFormat, hex: &str) -> Result<Response, ParseError> {
        let mut buf = [0u8; 16];
        let n = decode_into(hex, &mut buf).expect("hex");
        Response::parse(format, &buf[..n])
    }

    #[test]
    fn bm1397_chip_id_sample() {
        let response = parse_hex(ResponseFormat::Short, "AA 55 13 97 18 00 00 00 06");
        let expected = Response::Register(RegisterResponse {
            value: 0x1397_1800,
            chip_address: 0,
            register: 0,
            extra: None,
        });
        assert_eq!(response, Ok(expected));
        assert_eq!(
            expected.encode().as_bytes(),
            &[0xAA, 0x55, 0x13, 0x97, 0x18, 0, 0, 0, 0x06]
        );
    }

    #[test]
    fn bm1368_chip_id_sample_quoted_by_esp_miner() {
        let response = parse_hex(ResponseFormat::Long, "AA 55 13 68 00 00 00 00 00 00 0F");
        assert_eq!(
            response,
            Ok(Response::Register(RegisterResponse {
                value: 0x1368_0000,
                chip_address: 0,
                register: 0,
                extra: Some([0, 0]),
            }))
        );
    }

    #[test]
    fn nonce_from_the_bm1397_capture() {
        // ESP-Miner test_job_command.c expects wire bytes 9B 04 4C 0A → nonce 0x0A4C049B,
        // job id 0x18, midstate 2. The CRC is computed here: the test only shows the fields.
        let response = Response::Nonce(NonceResponse {
            nonce_bytes: [0x9B, 0x04, 0x4C, 0x0A],
            byte6: 0,
            byte7: 0x18 | 2,
            version_bits: None,
        });
        let frame = response.encode();
        assert_eq!(frame.as_bytes()[8] & 0xE0, 0x80);
        let Ok(Response::Nonce(nonce)) = Response::parse(ResponseFormat::Short, frame.as_bytes())
        else {
            panic!("round trip failed");
        };
        assert_eq!(nonce.nonce(), 0x0A4C_049B);
    }

    #[test]
    fn corrupt_responses_are_rejected() {
        assert_eq!(
            parse_hex(ResponseFormat::Short, "AA 55 13 97 18 00 00 00 07"),
            Err(ParseError::Crc)
        );
        // Bits 6..5 set: not a response even where the residue would pass.
        assert_eq!(
            parse_hex(ResponseFormat::Short, "AA 55 13 97 18 00 00 00 66"),
            Err(ParseError::Crc)
        );
        assert_eq!(
            parse_hex(ResponseFormat::Short, "AA 55 13 97 18 00 00 00"),
            Err(ParseError::Truncated)
        );
        assert_eq!(
            parse_hex(ResponseFormat::Short, "55 AA 13 97 18 00 00 00 06"),
            Err(ParseError::Preamble)
        );
    }
}
