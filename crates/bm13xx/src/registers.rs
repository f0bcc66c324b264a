//! Typed chip registers (§5). Each type can only hold values that are legal for its register, and
//! converts to the 32-bit word a write frame carries.

use crate::header::VersionMask;
use crate::model::ChipModel;

/// A register a host writes as a whole word.
pub trait Register: Copy {
    const ADDRESS: u8;
    fn to_value(self) -> u32;
}

/// Register addresses (§5.1, §5.2).
pub mod address {
    pub const CHIP_ID: u8 = 0x00;
    pub const HASH_RATE: u8 = 0x04;
    pub const PLL0: u8 = 0x08;
    pub const CHIP_NONCE_OFFSET: u8 = 0x0C;
    pub const HASH_COUNTING_NUMBER: u8 = 0x10;
    pub const TICKET_MASK: u8 = 0x14;
    pub const MISC_CONTROL: u8 = 0x18;
    pub const ORDERED_CLOCK_ENABLE: u8 = 0x20;
    pub const FAST_UART: u8 = 0x28;
    pub const UART_RELAY: u8 = 0x2C;
    pub const CORE_REGISTER_CONTROL: u8 = 0x3C;
    pub const CORE_REGISTER_VALUE: u8 = 0x40;
    pub const ERROR_FLAG: u8 = 0x48;
    pub const NONCE_ERROR_COUNTER: u8 = 0x4C;
    pub const ANALOG_MUX: u8 = 0x54;
    pub const IO_DRIVER_STRENGTH: u8 = 0x58;
    pub const PLL1: u8 = 0x60;
    pub const PLL3: u8 = 0x68;
    pub const PLL0_DIVIDER: u8 = 0x70;
    pub const CLOCK_ORDER_CONTROL0: u8 = 0x80;
    pub const CLOCK_ORDER_CONTROL1: u8 = 0x84;
    pub const TOTAL_HASH_COUNTER: u8 = 0x8C;
    pub const VERSION_ROLLING: u8 = 0xA4;
    pub const SOFT_RESET: u8 = 0xA8;
    /// BM1370 only; not 4-aligned, copied by ESP-Miner from an S21 Pro capture.
    pub const BM1370_B9: u8 = 0xB9;
}

/// Register 0x00 as read back: chip id, core count and (BM1397) address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChipIdentification {
    pub chip_id: u16,
    /// CORE_NUM: 0x18 on BM1397, 0 on BM1366+ (how bm13xx-chain tells the generations apart).
    pub core_num: u8,
    /// Stays 0 on BM1397 even after set-address (skot); the responder's address is in byte 6.
    pub address: u8,
}

impl ChipIdentification {
    pub const fn from_value(value: u32) -> Self {
        Self {
            chip_id: (value >> 16) as u16,
            core_num: (value >> 8) as u8,
            address: value as u8,
        }
    }

    pub const fn model(self) -> Option<ChipModel> {
        ChipModel::from_chip_id(self.chip_id)
    }
}

/// A UART baud divisor BT8D: baud = 25 MHz / (8 × (BT8D + 1)) while the UART runs from CLKI (§7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BaudDivisor(u16);

/// The divisor does not fit the model's BT8D field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("baud divisor {0} does not fit the BT8D field")]
pub struct InvalidBaudDivisor(pub u16);

impl BaudDivisor {
    /// After reset: 115 740 Bd.
    pub const RESET: Self = Self(26);
    /// The fastest rate from the 25 MHz clock: 3 125 000 Bd.
    pub const MAX_FROM_CLKI: Self = Self(0);

    /// BM1397 splits a 9-bit BT8D across 0x18; BM1366+ holds 8 bits in 0x28.
    pub const fn new(model: ChipModel, value: u16) -> Result<Self, InvalidBaudDivisor> {
        let max = match model {
            ChipModel::Bm1397 => 0x1FF,
            _ => 0xFF,
        };
        if value <= max {
            Ok(Self(value))
        } else {
            Err(InvalidBaudDivisor(value))
        }
    }

    pub const fn value(self) -> u16 {
        self.0
    }

    /// The rate when the UART is clocked from the 25 MHz reference.
    pub const fn baud_from_clki(self) -> u32 {
        self.baud_from(25_000_000)
    }

    /// The rate from any UART clock: above 3.125 Mbaud the clock is a PLL output divided by
    /// DIV4 + 1 (§7).
    pub const fn baud_from(self, clock_hz: u32) -> u32 {
        clock_hz / (8 * (self.0 as u32 + 1))
    }
}

/// BM1397 misc control (0x18): BT8D plus the other bits drivers write. Only BT8D is typed; the rest
/// of the word is kept as the sources write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MiscControl {
    other_bits: u32,
    divisor: BaudDivisor,
}

impl MiscControl {
    const BT8D_MASK: u32 = 0x0F00_1F00;
    /// ESP-Miner's bits besides BT8D: TFS = 3 (SCL0), INV_CLKO, RFS, HASHRATE_TWS = 1.
    pub const ESP_MINER_BITS: u32 = 0x0000_6031;

    pub const fn new(other_bits: u32, divisor: BaudDivisor) -> Self {
        Self {
            other_bits: other_bits & !Self::BT8D_MASK,
            divisor,
        }
    }

    /// ESP-Miner's value for a divisor: 26 → 0x00007A31, 0 → 0x00006031.
    pub const fn esp_miner(divisor: BaudDivisor) -> Self {
        Self::new(Self::ESP_MINER_BITS, divisor)
    }

    pub const fn from_value(value: u32) -> Self {
        let bt8d = ((value >> 8) & 0x1F) | (((value >> 24) & 0x0F) << 5);
        Self {
            other_bits: value & !Self::BT8D_MASK,
            divisor: BaudDivisor(bt8d as u16),
        }
    }

    pub const fn divisor(self) -> BaudDivisor {
        self.divisor
    }
}

impl Register for MiscControl {
    const ADDRESS: u8 = address::MISC_CONTROL;

    fn to_value(self) -> u32 {
        let bt8d = u32::from(self.divisor.0);
        self.other_bits | ((bt8d & 0x1F) << 8) | ((bt8d >> 5) << 24)
    }
}

/// BM1366+ fast UART configuration (0x28): BT8D in [15:8], clock select in [27:26].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FastUartConfig {
    other_bits: u32,
    divisor: BaudDivisor,
}

impl FastUartConfig {
    const BT8D_MASK: u32 = 0x0000_FF00;
    /// The bits ESP-Miner and bm13xx-rs write with BT8D 2 ("1 Mbaud": 0x11300200).
    pub const ONE_MBAUD_BITS: u32 = 0x1130_0000;
    /// cgminer's bits for 3.125 Mbaud (0x01300000).
    pub const CGMINER_BITS: u32 = 0x0130_0000;

    pub const fn new(other_bits: u32, divisor: BaudDivisor) -> Self {
        Self {
            other_bits: other_bits & !Self::BT8D_MASK,
            divisor,
        }
    }

    pub const fn from_value(value: u32) -> Self {
        Self {
            other_bits: value & !Self::BT8D_MASK,
            divisor: BaudDivisor(((value >> 8) & 0xFF) as u16),
        }
    }

    pub const fn divisor(self) -> BaudDivisor {
        self.divisor
    }

    /// BCLK_SEL = 1 means the UART runs from PLL1, not the 25 MHz reference.
    pub const fn clocked_from_pll(self) -> bool {
        self.other_bits & 0x0C00_0000 != 0
    }
}

impl Register for FastUartConfig {
    const ADDRESS: u8 = address::FAST_UART;

    fn to_value(self) -> u32 {
        self.other_bits | (u32::from(self.divisor.0) << 8)
    }
}

/// Core register control (0x3C): reaches the per-core registers of §5.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoreRegisterControl {
    Write {
        core_id: u16,
        register: u8,
        value: u8,
    },
    Read {
        core_id: u16,
        register: u8,
    },
}

/// The core id or core register id does not fit its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("core id must be below 512 and core register id below 32")]
pub struct InvalidCoreRegister;

impl CoreRegisterControl {
    pub const fn write(core_id: u16, register: u8, value: u8) -> Result<Self, InvalidCoreRegister> {
        if core_id >= 512 || register >= 32 {
            return Err(InvalidCoreRegister);
        }
        Ok(Self::Write {
            core_id,
            register,
            value,
        })
    }

    pub const fn read(core_id: u16, register: u8) -> Result<Self, InvalidCoreRegister> {
        if core_id >= 512 || register >= 32 {
            return Err(InvalidCoreRegister);
        }
        Ok(Self::Read { core_id, register })
    }

    pub const fn from_value(value: u32) -> Self {
        let core_id = ((value >> 16) & 0x1FF) as u16;
        let register = ((value >> 8) & 0x1F) as u8;
        if value & 0x8000 != 0 {
            Self::Write {
                core_id,
                register,
                value: value as u8,
            }
        } else {
            Self::Read { core_id, register }
        }
    }
}

impl Register for CoreRegisterControl {
    const ADDRESS: u8 = address::CORE_REGISTER_CONTROL;

    fn to_value(self) -> u32 {
        const DO_CMD: u32 = 0x8000_0000;
        match self {
            Self::Write {
                core_id,
                register,
                value,
            } => {
                DO_CMD
                    | u32::from(core_id) << 16
                    | 0x8000
                    | u32::from(register) << 8
                    | u32::from(value)
            }
            // Reads put 0xFF in the value byte, as every source does.
            Self::Read { core_id, register } => {
                DO_CMD | u32::from(core_id) << 16 | u32::from(register) << 8 | 0xFF
            }
        }
    }
}

/// Version rolling (0xA4, BM1366+): MID_AUTO_GEN and enable, plus the pool mask >> 13 (§9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionRolling {
    mask: VersionMask,
}

/// Chips can only roll BIP320's bits 13..=28.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("version mask {0:#010x} has bits outside 0x1FFFE000")]
pub struct InvalidVersionMask(pub u32);

impl VersionRolling {
    pub const fn new(mask: VersionMask) -> Result<Self, InvalidVersionMask> {
        if mask.bits() & !VersionMask::BIP320.bits() != 0 {
            return Err(InvalidVersionMask(mask.bits()));
        }
        Ok(Self { mask })
    }

    pub const fn mask(self) -> VersionMask {
        self.mask
    }

    /// Whether a read-back value turns on the 11-byte responses (bit 31 or bit 28, §14.4).
    pub const fn long_responses(value: u32) -> bool {
        value & 0x9000_0000 != 0
    }
}

impl Register for VersionRolling {
    const ADDRESS: u8 = address::VERSION_ROLLING;

    fn to_value(self) -> u32 {
        0x9000_0000 | (self.mask.bits() >> 13)
    }
}

/// BM1397 hash rate (0x04), read about once a second: bit 31 flags a "long" reading, bits 30..0
/// the rate. ESP-Miner's unit is 2^20 H/s; skot's notes say 2^24 (§5.1, §15). This follows
/// ESP-Miner, whose figures match Bitaxe hash rates on hardware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashRateReading(pub u32);

impl HashRateReading {
    /// Hashes per second per unit of the register.
    pub const UNIT: f64 = 1_048_576.0;

    /// The rate, or `None` for the readings ESP-Miner ignores (bit 31 set, 0x007FFFFF).
    pub fn hashes_per_second(self) -> Option<crate::HashesPerSecond> {
        if self.0 & 0x8000_0000 != 0 || self.0 == 0x007F_FFFF {
            return None;
        }
        Some(crate::HashesPerSecond(f64::from(self.0) * Self::UNIT))
    }
}

/// BM1366+ hash counters (0x88–0x8C): each count is 2^32 hashes (one difficulty-1 share). The
/// counters wrap modulo 2^32, so the delta is taken with wrapping arithmetic.
pub fn hashrate_from_counter(
    previous: u32,
    current: u32,
    seconds: f64,
) -> Option<crate::HashesPerSecond> {
    // ESP-Miner ignores samples closer than a second apart: the counter moves too little.
    // (NaN fails this comparison too.)
    if seconds.partial_cmp(&1.0).is_none_or(|order| order.is_lt()) {
        return None;
    }
    let delta = current.wrapping_sub(previous);
    Some(crate::HashesPerSecond(
        f64::from(delta) * 4_294_967_296.0 / seconds,
    ))
}

/// A register with no typed meaning (init magic copied from captures): address and word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RawWrite {
    pub register: u8,
    pub value: u32,
}

/// Hash counting number (0x10, BM1366+; §11.3). Semantics are disputed, so it is only computed the
/// way ESP-Miner does; chips accept any value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashCountingNumber(pub u32);

impl HashCountingNumber {
    /// floor((2^32 / np2(cores) / np2(chips)) × 25 / f_MHz × 0.5 − e), e = 268 on BM1370 (erratum).
    /// Exact in integers: 2^32 × 25 000 / (np2(cores) · np2(chips) · f_kHz · 2).
    pub const fn esp_miner(model: ChipModel, frequency: crate::Frequency, chips: u32) -> Self {
        let cores = (model.cores() as u64).next_power_of_two();
        let chips = if chips == 0 {
            1
        } else {
            (chips as u64).next_power_of_two()
        };
        let khz = if frequency.khz() == 0 {
            1
        } else {
            frequency.khz() as u64
        };
        let value = (1u64 << 32) * 25_000 / (cores * chips * khz * 2);
        let erratum = match model {
            ChipModel::Bm1370 => 268,
            _ => 0,
        };
        Self(value.saturating_sub(erratum) as u32)
    }
}

impl Register for HashCountingNumber {
    const ADDRESS: u8 = address::HASH_COUNTING_NUMBER;

    fn to_value(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Frequency;

    #[test]
    fn bm1397_misc_control_baud_values() {
        let reset = MiscControl::esp_miner(BaudDivisor::RESET);
        assert_eq!(reset.to_value(), 0x0000_7A31);
        assert_eq!(BaudDivisor::RESET.baud_from_clki(), 115_740);
        assert_eq!(
            MiscControl::esp_miner(BaudDivisor::MAX_FROM_CLKI).to_value(),
            0x0000_6031
        );
        assert_eq!(BaudDivisor::MAX_FROM_CLKI.baud_from_clki(), 3_125_000);
        assert_eq!(
            MiscControl::from_value(0x0000_6131)
                .divisor()
                .baud_from_clki(),
            1_562_500
        );
        assert_eq!(
            MiscControl::from_value(0x0000_3A01).divisor(),
            BaudDivisor::RESET
        );
        // bm13xx-rs writes 0x00002001 for 3.125 Mbaud: other bits differ, BT8D is the same 0.
        assert_eq!(
            MiscControl::from_value(0x0000_2001).divisor(),
            BaudDivisor::MAX_FROM_CLKI
        );
        // 6.25 Mbaud: PLL3 = 0xC0700111 (2800 MHz raw), DIV4 6 → 400 MHz, BT8D 7.
        let pll3 =
            crate::PllParameter::from_register(ChipModel::Bm1397, 0xC070_0111).expect("legal");
        assert_eq!(pll3.frequency().khz(), 2_800_000);
        let divisor = MiscControl::from_value(0x0001_2701).divisor();
        assert_eq!(divisor.value(), 7);
        assert_eq!(divisor.baud_from(2_800_000_000 / 7), 6_250_000);
        // High BT8D bits live in [27:24].
        let high = MiscControl::new(0, BaudDivisor::new(ChipModel::Bm1397, 0x1FF).expect("fits"));
        assert_eq!(high.to_value(), 0x0F00_1F00);
        assert_eq!(MiscControl::from_value(high.to_value()), high);
        assert!(BaudDivisor::new(ChipModel::Bm1397, 0x200).is_err());
    }

    #[test]
    fn bm1366_fast_uart_values() {
        assert_eq!(
            FastUartConfig::from_value(0x0130_1A00).divisor(),
            BaudDivisor::RESET
        );
        let one_mbaud = FastUartConfig::from_value(0x1130_0200);
        assert_eq!(one_mbaud.divisor().baud_from_clki(), 1_041_666);
        assert_eq!(
            FastUartConfig::new(FastUartConfig::ONE_MBAUD_BITS, one_mbaud.divisor()).to_value(),
            0x1130_0200
        );
        assert_eq!(
            FastUartConfig::from_value(0x0130_0000)
                .divisor()
                .baud_from_clki(),
            3_125_000
        );
        let pll_clocked = FastUartConfig::from_value(0x1560_0700);
        assert!(pll_clocked.clocked_from_pll());
        assert_eq!(pll_clocked.divisor().value(), 7);
        assert!(!one_mbaud.clocked_from_pll());
        assert!(BaudDivisor::new(ChipModel::Bm1366, 0x100).is_err());
    }

    #[test]
    fn core_register_words_from_the_init_sequences() {
        let w = |reg, val| {
            CoreRegisterControl::write(0, reg, val)
                .expect("valid")
                .to_value()
        };
        assert_eq!(w(0, 0x74), 0x8000_8074);
        assert_eq!(w(5, 0x40), 0x8000_8540);
        assert_eq!(w(2, 0xAA), 0x8000_82AA);
        assert_eq!(w(0x0B, 0x00), 0x8000_8B00);
        assert_eq!(w(0x0D, 0xEE), 0x8000_8DEE);
        assert_eq!(
            CoreRegisterControl::from_value(0x8000_8DEE),
            CoreRegisterControl::write(0, 0x0D, 0xEE).expect("valid")
        );
        assert!(CoreRegisterControl::write(512, 0, 0).is_err());
        assert!(CoreRegisterControl::read(0, 32).is_err());
    }

    #[test]
    fn version_rolling_register() {
        let reg = VersionRolling::new(VersionMask::BIP320).expect("valid");
        assert_eq!(reg.to_value(), 0x9000_FFFF);
        assert!(VersionRolling::new(VersionMask::new(0xFFFF_FFFF)).is_err());
        assert!(VersionRolling::long_responses(0x9000_FFFF));
        assert!(!VersionRolling::long_responses(0x0000_FFFF));
    }

    #[test]
    fn hash_counting_number_table() {
        let f = |mhz: u32| Frequency::from_khz(mhz * 1000);
        assert_eq!(
            HashCountingNumber::esp_miner(ChipModel::Bm1370, f(525), 1).0,
            0x000C_2FB7
        );
        assert_eq!(
            HashCountingNumber::esp_miner(ChipModel::Bm1366, f(485), 1).0,
            0x000D_3224
        );
        assert_eq!(
            HashCountingNumber::esp_miner(ChipModel::Bm1368, f(490), 1).0,
            0x000D_0FAC
        );
    }

    #[test]
    fn hash_counters_wrap_and_need_a_second() {
        // 100 counts of 2^32 hashes over 1 s = 429.5 GH/s, across the 2^32 wrap.
        let rate = hashrate_from_counter(u32::MAX - 49, 50, 1.0).expect("valid");
        assert!((rate.gigahashes() - 429.4967296).abs() < 1e-6);
        assert_eq!(hashrate_from_counter(0, 100, 0.5), None);
        assert_eq!(hashrate_from_counter(0, 100, f64::NAN), None);
    }

    #[test]
    fn chip_identification() {
        let id = ChipIdentification::from_value(0x1397_1800);
        assert_eq!((id.chip_id, id.core_num, id.address), (0x1397, 0x18, 0));
        assert_eq!(id.model(), Some(ChipModel::Bm1397));
        assert_eq!(ChipIdentification::from_value(0x1234_0000).model(), None);
    }
}
