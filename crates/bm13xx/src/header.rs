//! The 80-byte Bitcoin block header and the hashing a job frame needs: midstates for BM1397 jobs,
//! SHA-256d and share difficulty for checking what the chips return, and BIP320 version rolling.

use sha2::digest::generic_array::GenericArray;
use sha2::{Digest, Sha256};

/// SHA-256's initial hash value (FIPS 180-4 §5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// A block header. Hashes are held in internal byte order (the order they are hashed in), not the
/// byte-reversed display order explorers show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockHeader {
    pub version: u32,
    pub prev_hash: [u8; 32],
    pub merkle_root: [u8; 32],
    pub ntime: u32,
    pub nbits: u32,
    pub nonce: u32,
}

impl BlockHeader {
    pub const LEN: usize = 80;

    /// The serialised header, every integer little-endian.
    pub fn to_bytes(&self) -> [u8; 80] {
        let mut out = [0u8; 80];
        out[0..4].copy_from_slice(&self.version.to_le_bytes());
        out[4..36].copy_from_slice(&self.prev_hash);
        out[36..68].copy_from_slice(&self.merkle_root);
        out[68..72].copy_from_slice(&self.ntime.to_le_bytes());
        out[72..76].copy_from_slice(&self.nbits.to_le_bytes());
        out[76..80].copy_from_slice(&self.nonce.to_le_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8; 80]) -> Self {
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let mut prev_hash = [0u8; 32];
        prev_hash.copy_from_slice(&bytes[4..36]);
        let mut merkle_root = [0u8; 32];
        merkle_root.copy_from_slice(&bytes[36..68]);
        Self {
            version: word(0),
            prev_hash,
            merkle_root,
            ntime: word(68),
            nbits: word(72),
            nonce: word(76),
        }
    }

    /// The SHA-256 state after the first 64 header bytes, H0..H7. Everything a BM1397 needs besides
    /// the 12-byte tail it receives in the clear.
    pub fn midstate(&self) -> Midstate {
        let bytes = self.to_bytes();
        let mut state = SHA256_IV;
        sha2::compress256(
            &mut state,
            core::slice::from_ref(GenericArray::from_slice(&bytes[..64])),
        );
        Midstate(state)
    }

    /// SHA-256d of the header, in internal byte order (byte 31 most significant).
    pub fn hash(&self) -> [u8; 32] {
        sha256d(&self.to_bytes())
    }

    /// The difficulty this header's hash meets (difficulty 1 = target 0xFFFF·2^208).
    pub fn share_difficulty(&self) -> f64 {
        difficulty_of_hash(&self.hash())
    }
}

/// SHA-256 applied twice, as Bitcoin hashes headers.
pub fn sha256d(data: &[u8]) -> [u8; 32] {
    let first = Sha256::digest(data);
    Sha256::digest(first).into()
}

/// The difficulty a hash meets: the difficulty-1 target over the hash read as a little-endian
/// 256-bit number. A zero hash meets every difficulty.
pub fn difficulty_of_hash(hash: &[u8; 32]) -> f64 {
    const TWO_64: f64 = 18_446_744_073_709_551_616.0;
    let value = hash.rchunks_exact(8).fold(0.0f64, |acc, limb| {
        let mut le = [0u8; 8];
        le.copy_from_slice(limb);
        acc * TWO_64 + u64::from_le_bytes(le) as f64
    });
    if value == 0.0 {
        return f64::INFINITY;
    }
    // 0xFFFF · 2^208, the difficulty-1 target.
    let two_208 = TWO_64 * TWO_64 * TWO_64 * 65_536.0;
    65_535.0 * two_208 / value
}

/// A SHA-256 intermediate state, words H0..H7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Midstate(pub [u32; 8]);

impl Midstate {
    /// The 32 bytes a BM1397 job frame carries: words H7..H0, each big-endian (§4.1).
    pub fn to_wire(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(self.0.iter().rev()) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    pub fn from_wire(wire: &[u8; 32]) -> Self {
        let mut words = [0u32; 8];
        for (word, chunk) in words.iter_mut().rev().zip(wire.chunks_exact(4)) {
            *word = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        Self(words)
    }

    /// Finishes the header hash from this midstate and the last 16 header bytes, the way a BM1397
    /// core does: one compression for the tail, then SHA-256 of that digest.
    pub fn finish_sha256d(&self, tail: &[u8; 16]) -> [u8; 32] {
        let mut block = [0u8; 64];
        block[..16].copy_from_slice(tail);
        // SHA-256 padding for an 80-byte message: a 1 bit, zeros, then the length 640 in bits.
        block[16] = 0x80;
        block[62..64].copy_from_slice(&640u16.to_be_bytes());
        let mut state = self.0;
        sha2::compress256(
            &mut state,
            core::slice::from_ref(GenericArray::from_slice(&block)),
        );
        let mut first = [0u8; 32];
        for (chunk, word) in first.chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        Sha256::digest(first).into()
    }
}

/// Converts the prev-hash string of Stratum's `mining.notify` (internal order with each 4-byte word
/// byte-swapped) to internal order. The conversion is its own inverse.
pub fn prev_hash_from_stratum(stratum: &[u8; 32]) -> [u8; 32] {
    let mut out = *stratum;
    for word in out.chunks_exact_mut(4) {
        word.reverse();
    }
    out
}

/// A BIP320 version-rolling mask: the header version bits a miner may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionMask(u32);

impl VersionMask {
    /// The mask pools grant by default (bits 13..=28).
    pub const BIP320: VersionMask = VersionMask(0x1FFF_E000);

    pub const fn new(mask: u32) -> Self {
        Self(mask)
    }

    pub const fn bits(self) -> u32 {
        self.0
    }

    /// The version rolled `steps` times: each step adds the mask's lowest set bit, carrying only
    /// through mask bits and wrapping inside the mask (ESP-Miner's `increment_bitmask`). A BM1397
    /// job's midstate k is computed from the version rolled k times (§4.1).
    pub const fn roll(self, version: u32, steps: u32) -> u32 {
        let mask = self.0;
        if mask == 0 {
            return version;
        }
        let lowest = mask & mask.wrapping_neg();
        let mut rolled = version;
        let mut i = 0;
        while i < steps {
            // Filling the non-mask bits with ones makes the carry run across them.
            rolled = ((rolled | !mask).wrapping_add(lowest) & mask) | (version & !mask);
            i += 1;
        }
        rolled
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hex::decode_array;

    /// ESP-Miner's pinned Stratum work, shared by the header and job tests.
    pub(crate) fn esp_miner_job_header() -> BlockHeader {
        stratum_header(
            "bf44fd3513dc7b837d60e5c628b572b448d204a8000007490000000000000000",
            "cd1be82132ef0d12053dcece1fa0247fcfdb61d4dbd3eb32ea9ef9b4c604a846",
            0x6465_8bd8,
            0x1705_dd01,
            0,
        )
    }

    #[test]
    fn midstate_matches_esp_miner_verifier() {
        let midstate = esp_miner_job_header().midstate();
        // The verifier prints the state as little-endian words H0..H7.
        let printed: [u8; 32] =
            decode_array("91DFEA528A9F73683D0D495DD6DD7415E1CA21CB411759E3E05D7D5FF285314D")
                .expect("hex");
        let mut expected_wire = printed;
        expected_wire.reverse();
        assert_eq!(midstate.to_wire(), expected_wire);
        assert_eq!(&midstate.to_wire()[..4], &[0x4D, 0x31, 0x85, 0xF2]);
        assert_eq!(Midstate::from_wire(&midstate.to_wire()), midstate);
    }

    #[test]
    fn midstate_path_equals_full_sha256d() {
        let mut header = esp_miner_job_header();
        header.nonce = 0x1234_5678;
        let bytes = header.to_bytes();
        let mut tail = [0u8; 16];
        tail.copy_from_slice(&bytes[64..]);
        assert_eq!(header.midstate().finish_sha256d(&tail), header.hash());
        assert_eq!(BlockHeader::from_bytes(&bytes), header);
    }

    /// A header from Stratum fields as ESP-Miner's share tests give them (version 0x20000004).
    fn stratum_header(
        prev_hash: &str,
        merkle_root: &str,
        ntime: u32,
        nbits: u32,
        nonce: u32,
    ) -> BlockHeader {
        BlockHeader {
            version: 0x2000_0004,
            prev_hash: prev_hash_from_stratum(&decode_array(prev_hash).expect("hex")),
            merkle_root: decode_array(merkle_root).expect("hex"),
            ntime,
            nbits,
            nonce,
        }
    }

    /// ESP-Miner test_mining.c "Test nonce diff checking" 1 and 2: nonce 0x276E8947 gives
    /// difficulty 18, nonce 0x0A029ED1 gives 683 (protocol.md §3.2).
    #[test]
    fn esp_miner_share_checks() {
        let first = stratum_header(
            "d02b10fc0d4711eae1a805af50a8a83312a2215e00017f2b0000000000000000",
            "6d0359c451434605c52a5a9ce074340be47c2c63840731f9edf1db3f26b1cdd9",
            0x646f_f1a9,
            0x1705_ae3a,
            0x276E_8947,
        );
        assert_eq!(first.share_difficulty() as u64, 18);
        let second = stratum_header(
            "0c859545a3498373a57452fac22eb7113df2a465000543520000000000000000",
            "5bdc1968499c3393873edf8e07a1c3a50a97fc3a9d1a376bbf77087dd63778eb",
            0x6470_25b5,
            0x1705_ae3a,
            0x0A02_9ED1,
        );
        assert_eq!(second.share_difficulty() as u64, 683);
        // The wrong nonce gives some other, almost surely tiny, difficulty.
        let wrong = BlockHeader {
            nonce: 0x0A02_9ED2,
            ..second
        };
        assert!(wrong.share_difficulty() < 683.0);
    }

    #[test]
    fn difficulty_one_target() {
        let mut hash = [0u8; 32];
        hash[26] = 0xFF;
        hash[27] = 0xFF;
        assert_eq!(difficulty_of_hash(&hash), 1.0);
        assert_eq!(difficulty_of_hash(&[0u8; 32]), f64::INFINITY);
    }

    #[test]
    fn version_rolling_matches_esp_miner() {
        let mask = VersionMask::new(0x00FF_FF00);
        assert_eq!(mask.roll(0x2000_0004, 1), 0x2000_0104);
        assert_eq!(mask.roll(0x2000_0004, 2), 0x2000_0204);
        assert_eq!(mask.roll(0x2000_0004, 4), 0x2000_0404);
        assert_eq!(VersionMask::BIP320.roll(0x2000_0000, 1), 0x2000_2000);
        // Wraps inside the mask and never touches the bits outside it.
        assert_eq!(VersionMask::BIP320.roll(0x3FFF_E000, 1), 0x2000_0000);
        // Carries across a gap in a split mask.
        assert_eq!(VersionMask::new(0x0000_0500).roll(0x100, 1), 0x400);
    }
}
