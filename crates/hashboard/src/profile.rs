//! A tuned profile on flash: so a restart starts from the last tuned point, not from scratch.
//!
//! Layout (little-endian unless noted), no allocator needed:
//! `"HWTP"` · version (1) · chip id (2, big-endian, as register 0x00 has it) · chips (2) ·
//! core mV (2) · one clock in kHz (4) per chip · CRC-16/CCITT-FALSE of everything before (2, big-endian).

use bm13xx::ChipModel;
use bm13xx::crc::crc16;

use crate::board::BoardDescription;
use crate::mining::MAX_CHIPS;
use crate::tuner::Profile;

const MAGIC: [u8; 4] = *b"HWTP";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 4 + 1 + 2 + 2 + 2;

/// The largest encoded profile.
pub const MAX_ENCODED_LEN: usize = HEADER_LEN + 4 * MAX_CHIPS + 2;

/// A profile as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredProfile {
    pub model: ChipModel,
    pub core_mv: u32,
    pub chips: usize,
    pub clocks_khz: [u32; MAX_CHIPS],
}

/// Why a stored profile cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("not a hashwarden profile")]
    Magic,
    #[error("profile format version {0} is not supported")]
    Version(u8),
    #[error("profile is for unknown chip id {0:#06x}")]
    UnknownModel(u16),
    #[error("profile for {0} chips: more than a chain holds")]
    TooManyChips(usize),
    #[error("profile is {found} bytes, its header says {expected}")]
    Length { expected: usize, found: usize },
    #[error("profile checksum mismatch: the stored profile is corrupt")]
    Crc,
    #[error("buffer too small for the profile")]
    BufferTooSmall,
    #[error("profile is for a {found} board, this one has {expected}")]
    WrongModel {
        expected: ChipModel,
        found: ChipModel,
    },
    #[error("profile has {found} chips, the board {expected}")]
    WrongChipCount { expected: usize, found: usize },
    #[error("profile value outside the board's limits: {0}")]
    OutOfBoard(&'static str),
}

impl StoredProfile {
    pub fn from_tuned(model: ChipModel, profile: &Profile) -> Self {
        Self {
            model,
            core_mv: profile.core_mv,
            chips: profile.chips,
            clocks_khz: profile.clocks_khz,
        }
    }

    pub fn clocks(&self) -> &[u32] {
        &self.clocks_khz[..self.chips.min(MAX_CHIPS)]
    }

    pub fn encode(&self, out: &mut [u8]) -> Result<usize, ProfileError> {
        let chips = self.chips.min(MAX_CHIPS);
        let len = HEADER_LEN + 4 * chips + 2;
        let out = out.get_mut(..len).ok_or(ProfileError::BufferTooSmall)?;
        out[..4].copy_from_slice(&MAGIC);
        out[4] = VERSION;
        out[5..7].copy_from_slice(&self.model.chip_id().to_be_bytes());
        out[7..9].copy_from_slice(&(chips as u16).to_le_bytes());
        out[9..11].copy_from_slice(&(self.core_mv.min(u32::from(u16::MAX)) as u16).to_le_bytes());
        for (slot, clock) in out[HEADER_LEN..len - 2]
            .chunks_exact_mut(4)
            .zip(self.clocks())
        {
            slot.copy_from_slice(&clock.to_le_bytes());
        }
        let crc = crc16(&out[..len - 2]);
        out[len - 2..].copy_from_slice(&crc.to_be_bytes());
        Ok(len)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProfileError> {
        let header = bytes.get(..HEADER_LEN).ok_or(ProfileError::Length {
            expected: HEADER_LEN + 2,
            found: bytes.len(),
        })?;
        if header[..4] != MAGIC {
            return Err(ProfileError::Magic);
        }
        if header[4] != VERSION {
            return Err(ProfileError::Version(header[4]));
        }
        let chips = usize::from(u16::from_le_bytes([header[7], header[8]]));
        if chips > MAX_CHIPS {
            return Err(ProfileError::TooManyChips(chips));
        }
        let expected = HEADER_LEN + 4 * chips + 2;
        if bytes.len() != expected {
            return Err(ProfileError::Length {
                expected,
                found: bytes.len(),
            });
        }
        if crc16(bytes) != 0 {
            return Err(ProfileError::Crc);
        }
        let chip_id = u16::from_be_bytes([header[5], header[6]]);
        let model = ChipModel::from_chip_id(chip_id).ok_or(ProfileError::UnknownModel(chip_id))?;
        let mut clocks_khz = [0u32; MAX_CHIPS];
        for (clock, raw) in clocks_khz
            .iter_mut()
            .zip(bytes[HEADER_LEN..expected - 2].chunks_exact(4))
        {
            *clock = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
        }
        Ok(Self {
            model,
            core_mv: u32::from(u16::from_le_bytes([header[9], header[10]])),
            chips,
            clocks_khz,
        })
    }

    /// Whether this profile may run on `board` as it is: same chips, and every value within the
    /// board's limits (a profile from another board, or an edited file, must not overdrive this one).
    pub fn check_for(&self, board: &BoardDescription) -> Result<(), ProfileError> {
        if self.model != board.model {
            return Err(ProfileError::WrongModel {
                expected: board.model,
                found: self.model,
            });
        }
        let expected = board.chips_per_chain as usize;
        if self.chips != expected {
            return Err(ProfileError::WrongChipCount {
                expected,
                found: self.chips,
            });
        }
        if !(board.min_core_mv..=board.max_core_mv).contains(&self.core_mv) {
            return Err(ProfileError::OutOfBoard("core voltage"));
        }
        let (min, max) = (board.min_frequency.khz(), board.max_frequency.khz());
        if self.clocks().iter().any(|c| !(min..=max).contains(c)) {
            return Err(ProfileError::OutOfBoard("clock"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::BM1397_HASHBOARD_12;

    fn sample() -> StoredProfile {
        let mut clocks_khz = [0u32; MAX_CHIPS];
        for (i, c) in clocks_khz.iter_mut().take(12).enumerate() {
            *c = 450_000 + 12_500 * i as u32 % 100_000;
        }
        StoredProfile {
            model: ChipModel::Bm1397,
            core_mv: 1375,
            chips: 12,
            clocks_khz,
        }
    }

    #[test]
    fn round_trip_and_layout() {
        let mut buf = [0u8; MAX_ENCODED_LEN];
        let len = sample().encode(&mut buf).expect("fits");
        assert_eq!(len, 11 + 48 + 2);
        assert_eq!(
            &buf[..11],
            &[b'H', b'W', b'T', b'P', 1, 0x13, 0x97, 12, 0, 0x5F, 0x05]
        );
        assert_eq!(StoredProfile::decode(&buf[..len]), Ok(sample()));
        assert_eq!(sample().check_for(&BM1397_HASHBOARD_12), Ok(()));
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let mut buf = [0u8; MAX_ENCODED_LEN];
        let len = sample().encode(&mut buf).expect("fits");
        for bit in 0..len * 8 {
            let mut damaged = buf;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                StoredProfile::decode(&damaged[..len]).is_err(),
                "bit {bit} went unnoticed"
            );
        }
        assert!(matches!(
            StoredProfile::decode(&buf[..len - 1]),
            Err(ProfileError::Length { .. })
        ));
        assert_eq!(
            StoredProfile::decode(b"HW"),
            Err(ProfileError::Length {
                expected: 13,
                found: 2
            })
        );
    }

    #[test]
    fn profiles_that_would_overdrive_the_board_are_refused() {
        let mut hot = sample();
        hot.clocks_khz[3] = 900_000;
        assert_eq!(
            hot.check_for(&BM1397_HASHBOARD_12),
            Err(ProfileError::OutOfBoard("clock"))
        );
        let mut high = sample();
        high.core_mv = 1600;
        assert_eq!(
            high.check_for(&BM1397_HASHBOARD_12),
            Err(ProfileError::OutOfBoard("core voltage"))
        );
        let mut other = sample();
        other.model = ChipModel::Bm1370;
        assert!(matches!(
            other.check_for(&BM1397_HASHBOARD_12),
            Err(ProfileError::WrongModel { .. })
        ));
        let mut fewer = sample();
        fewer.chips = 4;
        assert!(matches!(
            fewer.check_for(&BM1397_HASHBOARD_12),
            Err(ProfileError::WrongChipCount { .. })
        ));
    }
}
