//! The four chip models and the facts that differ between them.

use core::fmt;
use core::str::FromStr;

use crate::frequency::Frequency;

/// A Bitmain hashing chip that speaks the BM13xx UART protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChipModel {
    Bm1397,
    Bm1366,
    Bm1368,
    Bm1370,
}

/// How a model lays out a job frame (§4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobFormat {
    /// BM1397: the host sends SHA-256 midstates (§4.1).
    Midstate,
    /// BM1366+: the host sends the 76-byte header and the chip computes midstates (§4.2).
    FullHeader,
}

/// Where a model keeps the UART baud divisor (§7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BaudRegister {
    /// BM1397: register 0x18, BT8D split across [12:8] and [27:24].
    MiscControl,
    /// BM1366+: register 0x28, BT8D in [15:8].
    FastUart,
}

impl ChipModel {
    pub const ALL: [ChipModel; 4] = [Self::Bm1397, Self::Bm1366, Self::Bm1368, Self::Bm1370];

    /// The CHIP_ID field, bits [31:16] of register 0x00 (§3.5).
    pub const fn chip_id(self) -> u16 {
        match self {
            Self::Bm1397 => 0x1397,
            Self::Bm1366 => 0x1366,
            Self::Bm1368 => 0x1368,
            Self::Bm1370 => 0x1370,
        }
    }

    /// Looks a model up by the CHIP_ID a chip reports. cgminer has seen BM1370 parts answer 0x1368,
    /// which therefore cannot be told apart from a BM1368 here: the board description decides.
    pub const fn from_chip_id(id: u16) -> Option<Self> {
        match id {
            0x1397 => Some(Self::Bm1397),
            0x1366 => Some(Self::Bm1366),
            0x1368 => Some(Self::Bm1368),
            0x1370 => Some(Self::Bm1370),
            _ => None,
        }
    }

    /// Big cores per chip (§11.1).
    pub const fn cores(self) -> u16 {
        match self {
            Self::Bm1397 => 168,
            Self::Bm1366 => 112,
            Self::Bm1368 => 80,
            Self::Bm1370 => 128,
        }
    }

    /// Small cores inside each big core (§11.1).
    pub const fn small_cores_per_core(self) -> u8 {
        match self {
            Self::Bm1397 => 4,
            Self::Bm1366 => 8,
            Self::Bm1368 | Self::Bm1370 => 16,
        }
    }

    /// The small-core count ESP-Miner uses for hash-rate maths. It is below cores × small cores on
    /// BM1366+ because some small cores are fused off; the spec recommends these figures (§15).
    pub const fn hashing_small_cores(self) -> u32 {
        match self {
            Self::Bm1397 => 672,
            Self::Bm1366 => 894,
            Self::Bm1368 => 1276,
            Self::Bm1370 => 2040,
        }
    }

    pub const fn job_format(self) -> JobFormat {
        match self {
            Self::Bm1397 => JobFormat::Midstate,
            _ => JobFormat::FullHeader,
        }
    }

    pub const fn baud_register(self) -> BaudRegister {
        match self {
            Self::Bm1397 => BaudRegister::MiscControl,
            _ => BaudRegister::FastUart,
        }
    }

    /// Job ids are multiples of this: the low bits of the echoed byte carry other fields (§3.3).
    pub const fn job_id_step(self) -> u8 {
        match self {
            Self::Bm1397 => 4,
            _ => 8,
        }
    }

    /// The job-id increment ESP-Miner uses (§4.3). BM1368/BM1370 step by 24 so that consecutive
    /// jobs differ in the bits the chip echoes back.
    pub const fn job_id_increment(self) -> u8 {
        match self {
            Self::Bm1397 => 4,
            Self::Bm1366 => 8,
            Self::Bm1368 | Self::Bm1370 => 24,
        }
    }

    /// Whether the PLL post-divider fields hold `value − 1` (BM1366+) or the raw divider (BM1397, §8.2).
    pub const fn postdiv_minus_one(self) -> bool {
        !matches!(self, Self::Bm1397)
    }

    /// ESP-Miner's FBDIV search window (§8.3).
    pub const fn fbdiv_window(self) -> (u16, u16) {
        match self {
            Self::Bm1397 => (60, 200),
            Self::Bm1366 | Self::Bm1368 => (144, 235),
            Self::Bm1370 => (160, 239),
        }
    }

    /// ESP-Miner's default hash clock (§8.3, §11.1).
    pub const fn default_frequency(self) -> Frequency {
        Frequency::from_khz(match self {
            Self::Bm1397 => 425_000,
            Self::Bm1366 => 485_000,
            Self::Bm1368 => 490_000,
            Self::Bm1370 => 525_000,
        })
    }

    /// The hash clock after reset, where every ramp starts (§8.4).
    pub const fn reset_frequency(self) -> Frequency {
        Frequency::from_khz(50_000)
    }

    /// Register 0x00 after reset (§3.5).
    pub const fn reset_chip_id_register(self) -> u32 {
        match self {
            Self::Bm1397 => 0x1397_1800,
            _ => (self.chip_id() as u32) << 16,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Bm1397 => "bm1397",
            Self::Bm1366 => "bm1366",
            Self::Bm1368 => "bm1368",
            Self::Bm1370 => "bm1370",
        }
    }

    /// The part number as datasheets, chip markings and AxeOS write it.
    pub const fn part_number(self) -> &'static str {
        match self {
            Self::Bm1397 => "BM1397",
            Self::Bm1366 => "BM1366",
            Self::Bm1368 => "BM1368",
            Self::Bm1370 => "BM1370",
        }
    }
}

impl fmt::Display for ChipModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The text named no chip model this crate knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown chip model (expected bm1397, bm1366, bm1368 or bm1370)")]
pub struct UnknownModel;

impl FromStr for ChipModel {
    type Err = UnknownModel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
            .ok_or(UnknownModel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_chip_id_registers() {
        let values: [u32; 4] = ChipModel::ALL.map(ChipModel::reset_chip_id_register);
        assert_eq!(values, [0x1397_1800, 0x1366_0000, 0x1368_0000, 0x1370_0000]);
        for model in ChipModel::ALL {
            assert_eq!(ChipModel::from_chip_id(model.chip_id()), Some(model));
            assert_eq!(model.name().parse(), Ok(model));
            assert_eq!(model.name().to_uppercase().parse(), Ok(model));
        }
        assert_eq!("bm1399".parse::<ChipModel>(), Err(UnknownModel));
    }

    #[test]
    fn job_id_rotations_follow_esp_miner() {
        let rotation = |model: ChipModel| {
            let mut id = crate::JobId::new(model, 0).expect("valid");
            core::array::from_fn::<u8, 4, _>(|_| {
                id = id.next(model);
                id.value()
            })
        };
        assert_eq!(rotation(ChipModel::Bm1397), [4, 8, 12, 16]);
        assert_eq!(rotation(ChipModel::Bm1366), [8, 16, 24, 32]);
        assert_eq!(rotation(ChipModel::Bm1368), [24, 48, 72, 96]);
        // After 124 the BM1397 id wraps to 0.
        let last = crate::JobId::new(ChipModel::Bm1397, 124).expect("valid");
        assert_eq!(last.next(ChipModel::Bm1397).value(), 0);
    }
}
