//! What a nonce response says besides the nonce: job id, midstate or small core, rolled version
//! bits (§3.3), and which chip and core found it (§3.4).

use crate::model::ChipModel;
use crate::response::{NonceResponse, ResponseFormat};

/// Where the core id, small-core id and chip-address field sit in the big-endian view of the nonce
/// (§3.4). Only per-chip and per-core statistics depend on this; share validity does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NonceLayout {
    pub core_shift: u8,
    pub core_bits: u8,
    pub chip_shift: u8,
    /// Small-core id inside the nonce (shift, bits), where the layout puts it there.
    pub small_core: Option<(u8, u8)>,
}

impl NonceLayout {
    /// Core V[31:25], chip field V[24:17]: ESP-Miner's decoding for every model, confirmed for
    /// BM1366 by the odd-nonce observation in ESP-Miner PR #167. The default for BM1397 too: an
    /// ESP-Miner BM1397 test nonce has V[31:24] = 209, impossible under the 8-bit alternative with
    /// 168 cores.
    pub const ESP_MINER: Self = Self {
        core_shift: 25,
        core_bits: 7,
        chip_shift: 17,
        small_core: None,
    };

    /// The alternative BM1397 reading (cgminer's chip map, bm13xx-rs comments): core V[31:24],
    /// small core V[23:22], chip field V[21:14].
    pub const BM1397_CGMINER: Self = Self {
        core_shift: 24,
        core_bits: 8,
        chip_shift: 14,
        small_core: Some((22, 2)),
    };

    /// BM1366+ with version rolling off (9-byte responses; bm13xx-rs comments): core V[31:25],
    /// chip field V[21:14].
    pub const BM1366_SHORT: Self = Self {
        core_shift: 25,
        core_bits: 7,
        chip_shift: 14,
        small_core: Some((22, 3)),
    };

    /// The layout this crate assumes for a model and response size unless told otherwise.
    pub const fn default_for(model: ChipModel, format: ResponseFormat) -> Self {
        match (model, format) {
            (ChipModel::Bm1397, _) | (_, ResponseFormat::Long) => Self::ESP_MINER,
            (_, ResponseFormat::Short) => Self::BM1366_SHORT,
        }
    }
}

const fn field(value: u32, shift: u8, bits: u8) -> u32 {
    (value >> shift) & ((1u32 << bits) - 1)
}

/// The logical-address spacing used at enumeration: chip i has address i × interval (§6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChipAddressing {
    interval: u16,
}

/// A chain of zero chips, or of more than the 256 the 8-bit address space holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a chain holds 1 to 256 chips, not {0}")]
pub struct InvalidChipCount(pub u32);

impl ChipAddressing {
    /// interval = 256 / n, integer division, as ESP-Miner assigns addresses.
    pub const fn for_chain(chips: u32) -> Result<Self, InvalidChipCount> {
        if chips == 0 || chips > 256 {
            return Err(InvalidChipCount(chips));
        }
        Ok(Self {
            interval: (256 / chips) as u16,
        })
    }

    /// Bitmain's own spacings are not always 256 / n (the T17 used 8 for 30 chips).
    pub const fn with_interval(interval: u8) -> Option<Self> {
        if interval == 0 {
            None
        } else {
            Some(Self {
                interval: interval as u16,
            })
        }
    }

    pub const fn interval(self) -> u16 {
        self.interval
    }

    /// The address of the chip at `index` in chain order.
    pub const fn address_of(self, index: u32) -> Option<u8> {
        let address = index * self.interval as u32;
        if address < 256 {
            Some(address as u8)
        } else {
            None
        }
    }

    /// The chip index for a chip-address value (register responses carry the address itself; nonces
    /// carry a field that counts upward from it within the interval).
    pub const fn index_of(self, address_field: u8) -> u32 {
        address_field as u32 / self.interval as u32
    }
}

/// Everything a nonce response tells, decoded for one chip model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NonceFields {
    /// Header-order nonce, as submitted to the pool.
    pub nonce: u32,
    pub job_id: u8,
    /// Which of a BM1397 job's midstates produced the nonce.
    pub midstate: Option<u8>,
    pub small_core: Option<u8>,
    /// Version bits to OR into the job's version (11-byte responses).
    pub version_bits: Option<u32>,
    /// The chip-address field inside the nonce.
    pub chip_address_field: u8,
    pub chip_index: u32,
    pub core: u8,
}

/// Decodes a nonce response for `model` (§3.3, §3.4).
pub fn decode_nonce(
    model: ChipModel,
    response: &NonceResponse,
    layout: NonceLayout,
    addressing: ChipAddressing,
) -> NonceFields {
    let b7 = response.byte7;
    let (job_id, midstate, small_core_from_b7) = match model {
        ChipModel::Bm1397 => (b7 & 0xFC, Some(b7 & 0x03), None),
        ChipModel::Bm1366 => (b7 & 0xF8, None, Some(b7 & 0x07)),
        ChipModel::Bm1368 | ChipModel::Bm1370 => ((b7 & 0xF0) >> 1, None, Some(b7 & 0x0F)),
    };
    let v = response.nonce_be();
    let chip_address_field = field(v, layout.chip_shift, 8) as u8;
    let small_core = small_core_from_b7.or_else(|| {
        layout
            .small_core
            .map(|(shift, bits)| field(v, shift, bits) as u8)
    });
    NonceFields {
        nonce: response.nonce(),
        job_id,
        midstate,
        small_core,
        version_bits: response.version_bits.map(|bits| u32::from(bits) << 13),
        chip_address_field,
        chip_index: addressing.index_of(chip_address_field),
        core: field(v, layout.core_shift, layout.core_bits) as u8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonce(bytes: [u8; 4], byte7: u8, version_bits: Option<u16>) -> NonceResponse {
        NonceResponse {
            nonce_bytes: bytes,
            byte6: 0x02,
            byte7,
            version_bits,
        }
    }

    #[test]
    fn bm1397_capture_fields() {
        let fields = decode_nonce(
            ChipModel::Bm1397,
            &nonce([0x9B, 0x04, 0x4C, 0x0A], 0x1A, None),
            NonceLayout::ESP_MINER,
            ChipAddressing::for_chain(1).expect("valid"),
        );
        assert_eq!(fields.nonce, 0x0A4C_049B);
        assert_eq!((fields.job_id, fields.midstate), (0x18, Some(2)));
        // V = 0x9B044C0A: core V[31:25] = 0x4D, chip field V[24:17] = 0x82.
        assert_eq!(fields.core, 0x4D);
        assert_eq!(fields.chip_address_field, 0x82);
        assert_eq!(fields.chip_index, 0);
    }

    #[test]
    fn job_id_extraction_per_model() {
        let bytes = [0, 0, 0, 0];
        let addressing = ChipAddressing::for_chain(1).expect("valid");
        let bm1366 = decode_nonce(
            ChipModel::Bm1366,
            &nonce(bytes, 0x7D, None),
            NonceLayout::BM1366_SHORT,
            addressing,
        );
        assert_eq!((bm1366.job_id, bm1366.small_core), (0x78, Some(5)));
        // BM1370 echoes ((job_id >> 3) & 0xF) << 4 | small_core (§14.6).
        let byte7 = ((120u8 >> 3) & 0xF) << 4 | 0x0B;
        let bm1370 = decode_nonce(
            ChipModel::Bm1370,
            &nonce(bytes, byte7, Some(0x94FB)),
            NonceLayout::ESP_MINER,
            addressing,
        );
        assert_eq!((bm1370.job_id, bm1370.small_core), (120, Some(0x0B)));
        assert_eq!(bm1370.version_bits, Some(0x129F_6000));
    }

    /// ESP-Miner PR #167: a BM1366 at address ≥ 0x80 only returns odd header nonces, because the
    /// address MSB is V bit 24 = bit 0 of the little-endian nonce.
    #[test]
    fn address_msb_is_header_nonce_parity() {
        let addressing = ChipAddressing::for_chain(2).expect("valid");
        let odd = decode_nonce(
            ChipModel::Bm1366,
            &nonce([0x01, 0x00, 0x00, 0x00], 0, Some(0)),
            NonceLayout::ESP_MINER,
            addressing,
        );
        assert_eq!(odd.nonce & 1, 1);
        assert_eq!(odd.chip_address_field, 0x80);
        assert_eq!(odd.chip_index, 1);
    }

    #[test]
    fn cgminer_layout_is_selectable() {
        let fields = decode_nonce(
            ChipModel::Bm1397,
            &nonce([0xA7, 0xC4, 0x00, 0x00], 0x04, None),
            NonceLayout::BM1397_CGMINER,
            ChipAddressing::for_chain(4).expect("valid"),
        );
        // V = 0xA7C40000: core V[31:24] = 0xA7, small V[23:22] = 3, chip V[21:14] = 0x10.
        assert_eq!(fields.core, 0xA7);
        assert_eq!(fields.small_core, Some(3));
        assert_eq!(fields.chip_address_field, 0x10);
        assert_eq!(fields.chip_index, 0);
    }

    #[test]
    fn addressing_intervals() {
        let six = ChipAddressing::for_chain(6).expect("valid");
        assert_eq!(six.interval(), 42);
        assert_eq!(six.address_of(5), Some(210));
        assert_eq!(six.index_of(211), 5);
        assert_eq!(
            ChipAddressing::for_chain(1).expect("valid").address_of(1),
            None
        );
        assert!(ChipAddressing::for_chain(0).is_err());
        assert!(ChipAddressing::for_chain(257).is_err());
    }
}
