//! The two checksums of the protocol (§2.2, §2.3), both table-driven with slicing tables.
//!
//! CRC5 is x⁵+x²+1, init 0x1F, MSB first. Byte-at-a-time it runs as an 8-bit CRC whose register
//! holds the five CRC bits in its top bits: polynomial `0x05 << 3`, init `0x1F << 3`. Both CRCs are
//! MSB-first and unreflected, so one table generator serves both: an 8-bit register is a 16-bit
//! one whose low byte stays zero.

/// Slicing tables for an MSB-first CRC with a 16-bit register: `tables[k][b]` is the register
/// contribution of byte `b` followed by `k` zero bytes, so `N` input bytes fold into the register
/// with `N` independent lookups instead of a chain of `N` dependent ones.
const fn slicing_tables<const N: usize>(poly: u16) -> [[u16; 256]; N] {
    let mut tables = [[0u16; 256]; N];
    let mut i = 0;
    while i < 256 {
        let mut reg = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            reg = if reg & 0x8000 != 0 {
                (reg << 1) ^ poly
            } else {
                reg << 1
            };
            bit += 1;
        }
        tables[0][i] = reg;
        i += 1;
    }
    let mut k = 1;
    while k < N {
        let mut i = 0;
        while i < 256 {
            let previous = tables[k - 1][i];
            tables[k][i] = (previous << 8) ^ tables[0][(previous >> 8) as usize];
            i += 1;
        }
        k += 1;
    }
    tables
}

const CRC5_POLY_SHIFTED: u8 = 0x05 << 3;
const CRC5_INIT_SHIFTED: u8 = 0x1F << 3;

/// CRC5 as an 8-bit CRC: the high bytes of the 16-bit tables for the same polynomial. A response's
/// CRC covers 7 or 9 bytes, so slicing by 4 folds most of it in with independent lookups.
const CRC5_TABLES: [[u8; 256]; 4] = {
    let wide = slicing_tables::<4>((CRC5_POLY_SHIFTED as u16) << 8);
    let mut tables = [[0u8; 256]; 4];
    let mut k = 0;
    while k < 4 {
        let mut i = 0;
        while i < 256 {
            tables[k][i] = (wide[k][i] >> 8) as u8;
            i += 1;
        }
        k += 1;
    }
    tables
};

/// The spec's bit-serial LFSR (§2.2) over the first `bits` bits of `data`, MSB first: per input bit
/// b, fb = bit4(crc) XOR b; crc = ((crc << 1) | fb) XOR (fb << 2). Slow; it is the reference the
/// tables are tested against and the baseline the benchmarks measure them against.
pub fn crc5_bit_serial(data: &[u8], bits: usize) -> u8 {
    let mut crc = 0x1Fu8;
    for i in 0..bits.min(data.len() * 8) {
        let b = (data[i / 8] >> (7 - i % 8)) & 1;
        let fb = ((crc >> 4) & 1) ^ b;
        crc = (((crc << 1) | fb) ^ (fb << 2)) & 0x1F;
    }
    crc
}

/// CRC5 register state, for CRCs that do not end on a byte boundary (responses).
#[derive(Debug, Clone, Copy)]
struct Crc5 {
    /// The five CRC bits, kept in bits 7..3.
    reg: u8,
}

impl Crc5 {
    const fn new() -> Self {
        Self {
            reg: CRC5_INIT_SHIFTED,
        }
    }

    fn bytes(mut self, data: &[u8]) -> Self {
        let t = &CRC5_TABLES;
        let mut chunks = data.chunks_exact(4);
        for c in &mut chunks {
            self.reg = t[3][usize::from(self.reg ^ c[0])]
                ^ t[2][usize::from(c[1])]
                ^ t[1][usize::from(c[2])]
                ^ t[0][usize::from(c[3])];
        }
        for &byte in chunks.remainder() {
            self.reg = t[0][usize::from(self.reg ^ byte)];
        }
        self
    }

    /// Feeds the top `count` bits of `byte`, MSB first.
    fn high_bits(mut self, byte: u8, count: u32) -> Self {
        for bit in 0..count {
            let input = (byte << bit) & 0x80;
            self.reg = if (self.reg ^ input) & 0x80 != 0 {
                (self.reg << 1) ^ CRC5_POLY_SHIFTED
            } else {
                self.reg << 1
            };
        }
        self
    }

    const fn value(self) -> u8 {
        self.reg >> 3
    }
}

/// CRC5 of whole bytes: what a command frame carries in the low 5 bits of its last byte, computed
/// over the header byte through the last payload byte (§2.2).
pub fn crc5(data: &[u8]) -> u8 {
    Crc5::new().bytes(data).value()
}

/// The CRC5 a response carries: it covers every bit after the `AA 55` preamble except the final
/// five, so it includes the flag bits 7..5 of the last byte (§2.2, §3.1).
///
/// `body` is everything between the preamble and the last byte; `flags` is the last byte's top
/// three bits, in place (0x80 for a nonce).
pub fn response_crc5(body: &[u8], flags: u8) -> u8 {
    Crc5::new().bytes(body).high_bits(flags, 3).value()
}

/// Whether a response checks out: the CRC5 over everything after the preamble, CRC byte included,
/// leaves a zero residue (§2.2; what ESP-Miner and bm13xx-rs do).
pub fn response_residue_ok(after_preamble: &[u8]) -> bool {
    crc5(after_preamble) == 0
}

/// CRC-16/CCITT-FALSE: poly 0x1021, slicing by 8 (job frames are 88–152 bytes).
const CRC16_TABLES: [[u16; 256]; 8] = slicing_tables::<8>(0x1021);

fn crc16_bytewise(mut reg: u16, data: &[u8]) -> u16 {
    for &byte in data {
        reg = (reg << 8) ^ CRC16_TABLES[0][usize::from((reg >> 8) as u8 ^ byte)];
    }
    reg
}

/// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR) as job frames carry
/// it, high byte first (§2.3).
pub fn crc16(data: &[u8]) -> u16 {
    let t = &CRC16_TABLES;
    let mut chunks = data.chunks_exact(8);
    let mut reg = 0xFFFFu16;
    for c in &mut chunks {
        let [high, low] = reg.to_be_bytes();
        reg = t[7][usize::from(c[0] ^ high)]
            ^ t[6][usize::from(c[1] ^ low)]
            ^ t[5][usize::from(c[2])]
            ^ t[4][usize::from(c[3])]
            ^ t[3][usize::from(c[4])]
            ^ t[2][usize::from(c[5])]
            ^ t[1][usize::from(c[6])]
            ^ t[0][usize::from(c[7])];
    }
    crc16_bytewise(reg, chunks.remainder())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc5_spec_checks() {
        assert_eq!(crc5_bit_serial(&[0x53, 0x05, 0x00, 0x00], 32), 0x03);
        assert_eq!(crc5(&[0x53, 0x05, 0x00, 0x00]), 0x03);
        assert_eq!(crc5(&[0x52, 0x05, 0x00, 0x00]), 0x0A);
        assert_eq!(
            crc5(&[0x51, 0x09, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00]),
            0x1C
        );
    }

    #[test]
    fn crc5_table_matches_bit_serial_lfsr() {
        let data: [u8; 12] = [
            0x41, 0x09, 0x40, 0x18, 0x00, 0x00, 0x7A, 0x31, 0xFF, 0x00, 0xA5, 0x5A,
        ];
        for len in 0..=data.len() {
            assert_eq!(
                crc5(&data[..len]),
                crc5_bit_serial(&data, len * 8),
                "len {len}"
            );
        }
        for bits in 0..=3 {
            let with = Crc5::new()
                .bytes(&data[..8])
                .high_bits(data[8], bits)
                .value();
            assert_eq!(with, crc5_bit_serial(&data, 64 + bits as usize));
        }
    }

    #[test]
    fn crc5_response_residue_is_zero_on_a_captured_chip_id() {
        // BM1397 chip-id response, §3.5.
        let frame = [0xAA, 0x55, 0x13, 0x97, 0x18, 0x00, 0x00, 0x00, 0x06];
        assert!(response_residue_ok(&frame[2..]));
        assert_eq!(response_crc5(&frame[2..8], 0x00), 0x06);
    }

    #[test]
    fn crc16_check_value() {
        assert_eq!(crc16(b"123456789"), 0x29B1);
        assert_eq!(crc16(b""), 0xFFFF);
    }

    #[test]
    fn crc16_slicing_matches_bytewise_at_every_length() {
        let data: [u8; 40] = core::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0xA5);
        for len in 0..=data.len() {
            assert_eq!(
                crc16(&data[..len]),
                crc16_bytewise(0xFFFF, &data[..len]),
                "len {len}"
            );
        }
    }

    #[test]
    fn crc16_over_data_and_crc_is_zero() {
        let data = b"hashwarden";
        let crc = crc16(data);
        let mut whole = [0u8; 12];
        whole[..10].copy_from_slice(data);
        whole[10..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(crc16(&whole), 0);
    }
}
