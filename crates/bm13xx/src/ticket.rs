//! The ticket mask (register 0x14): the difficulty below which a chip keeps its nonces to itself
//! (§10).

use crate::registers::{Register, address};

/// A difficulty a chip can filter on: a power of two, 2^0 ..= 2^32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TicketDifficulty {
    log2: u8,
}

impl TicketDifficulty {
    pub const ONE: Self = Self { log2: 0 };

    /// 2^`log2`; `None` above 2^32, where the 32-bit mask runs out.
    pub const fn from_log2(log2: u8) -> Option<Self> {
        if log2 <= 32 {
            Some(Self { log2 })
        } else {
            None
        }
    }

    /// ESP-Miner's rule: the largest power of two ≤ ceil(difficulty). Difficulties below 1 filter
    /// nothing (mask 0); above 2^32 they clamp to 2^32. `None` for NaN or negative input.
    ///
    /// ```
    /// let ticket = bm13xx::TicketDifficulty::at_most(1000.0).expect("a difficulty");
    /// assert_eq!(ticket.value(), 512.0);
    /// assert_eq!(ticket.mask().value(), 0x0000_80FF);
    /// ```
    pub fn at_most(difficulty: f64) -> Option<Self> {
        if difficulty.is_nan() || difficulty < 0.0 {
            return None;
        }
        if difficulty >= 4_294_967_296.0 {
            return Some(Self { log2: 32 });
        }
        let truncated = difficulty as u64;
        let ceiled = if (truncated as f64) < difficulty {
            truncated + 1
        } else {
            truncated
        };
        let log2 = if ceiled <= 1 {
            0
        } else {
            63 - ceiled.leading_zeros()
        };
        Some(Self { log2: log2 as u8 })
    }

    pub const fn log2(self) -> u8 {
        self.log2
    }

    pub fn value(self) -> f64 {
        (1u64 << self.log2) as f64
    }

    pub const fn mask(self) -> TicketMask {
        // The top `log2` bits of a 32-bit word, byte-swapped: each register byte is the bit-reversed
        // byte of the mask 2^k − 1.
        let top = if self.log2 == 0 {
            0
        } else {
            u32::MAX << (32 - self.log2 as u32)
        };
        TicketMask(top.swap_bytes())
    }
}

/// Register 0x14 as the chip holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TicketMask(u32);

impl TicketMask {
    pub const fn value(self) -> u32 {
        self.0
    }

    /// Any word a chip can hold; values that are not a power-of-two mask are still honoured by the
    /// chip's byte-wise rule, so a simulator must accept them.
    pub const fn from_register(value: u32) -> Self {
        Self(value)
    }

    /// The chip's filter (skot/BM1397): hash bytes 31..28 zero, and hash byte 27 − i AND mask
    /// byte i zero for i = 0..3, where mask byte i is register byte 3 − i (big-endian).
    pub fn accepts(self, hash: &[u8; 32]) -> bool {
        if hash[28..].iter().any(|&b| b != 0) {
            return false;
        }
        let register = self.0.to_be_bytes();
        (0..4).all(|i| hash[27 - i] & register[3 - i] == 0)
    }

    /// The difficulty a power-of-two mask filters at, or `None` for a word that is not one.
    pub fn difficulty(self) -> Option<TicketDifficulty> {
        let top = self.0.swap_bytes();
        let log2 = top.leading_ones();
        (top == if log2 == 0 {
            0
        } else {
            u32::MAX << (32 - log2)
        })
        .then_some(TicketDifficulty { log2: log2 as u8 })
    }
}

impl Register for TicketMask {
    const ADDRESS: u8 = address::TICKET_MASK;

    fn to_value(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_table() {
        let table: [(f64, u32); 11] = [
            (1.0, 0x0000_0000),
            (2.0, 0x0000_0080),
            (4.0, 0x0000_00C0),
            (8.0, 0x0000_00E0),
            (16.0, 0x0000_00F0),
            (32.0, 0x0000_00F8),
            (64.0, 0x0000_00FC),
            (256.0, 0x0000_00FF),
            (512.0, 0x0000_80FF),
            (1024.0, 0x0000_C0FF),
            (65536.0, 0x0000_FFFF),
        ];
        for (difficulty, register) in table {
            let ticket = TicketDifficulty::at_most(difficulty).expect("valid");
            assert_eq!(ticket.mask().value(), register, "difficulty {difficulty}");
            assert_eq!(ticket.mask().difficulty(), Some(ticket));
        }
    }

    #[test]
    fn rounds_down_to_a_power_of_two_after_ceiling() {
        let of = |d| TicketDifficulty::at_most(d).expect("valid").mask().value();
        assert_eq!(of(1000.0), 0x0000_80FF);
        // ceil(255.5) = 256.
        assert_eq!(of(255.5), 0x0000_00FF);
        assert_eq!(of(0.5), 0);
        assert_eq!(of(1e12), 0xFFFF_FFFF);
        assert!(TicketDifficulty::at_most(f64::NAN).is_none());
        assert!(TicketDifficulty::at_most(-1.0).is_none());
        assert!(TicketDifficulty::from_log2(33).is_none());
    }

    #[test]
    fn chip_filter_follows_the_byte_rule() {
        let mask = TicketDifficulty::at_most(256.0).expect("valid").mask();
        let mut hash = [0u8; 32];
        hash[27] = 0x01;
        assert!(
            !mask.accepts(&hash),
            "byte 27 must be clear at difficulty 256"
        );
        hash[27] = 0;
        hash[26] = 0xFF;
        assert!(mask.accepts(&hash));
        hash[28] = 1;
        assert!(
            !mask.accepts(&hash),
            "difficulty 1 needs bytes 28..31 clear"
        );

        let mask = TicketDifficulty::at_most(512.0).expect("valid").mask();
        let mut hash = [0u8; 32];
        hash[26] = 0x80;
        assert!(!mask.accepts(&hash));
        hash[26] = 0x7F;
        assert!(mask.accepts(&hash));
    }

    #[test]
    fn arbitrary_register_words_are_not_difficulties() {
        assert_eq!(TicketMask::from_register(0x0000_0001).difficulty(), None);
        assert_eq!(
            TicketMask::from_register(0xFFFF_FFFF).difficulty(),
            TicketDifficulty::from_log2(32)
        );
    }
}
