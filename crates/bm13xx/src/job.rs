//! Job frames, host → chip, header `0x21` (§4).

use crate::buf::Encoded;
use crate::crc::crc16;
use crate::header::{BlockHeader, Midstate, VersionMask};
use crate::model::{ChipModel, JobFormat};
use crate::{PREAMBLE_TX, ParseError};

/// The largest job frame: BM1397 with four midstate slots.
pub const MAX_JOB_LEN: usize = 2 + 22 + 4 * 32;

/// A job frame, encoded.
pub type JobFrame = Encoded<MAX_JOB_LEN>;

const JOB_HEADER: u8 = 0x21;
/// Bytes after the preamble in a job frame, besides the midstates (header, length, id, count,
/// starting nonce, 12-byte tail, CRC16).
const MIDSTATE_FIXED: usize = 22;
const FULL_HEADER_LEN: usize = 88;
/// ESP-Miner's length byte for full-header jobs: 82 data bytes + 4, the rule every other frame uses.
pub const FULL_HEADER_LENGTH_BYTE: u8 = 0x56;
/// The length byte bm13xx-rs, cgminer and skot's notes send for full-header jobs; chips ignore it.
pub const FULL_HEADER_LEGACY_LENGTH_BYTE: u8 = 0x36;

/// A job id the chip can echo back intact: below 128 and a multiple of the model's step, because the
/// low bits of the echoed byte carry the midstate or small-core index (§3.3, §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobId(u8);

/// The value cannot be a job id for that chip model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("job id {value} is not a multiple of {step} below 128")]
pub struct InvalidJobId {
    pub value: u8,
    pub step: u8,
}

impl JobId {
    /// Id 0, valid for every model.
    pub const ZERO: JobId = JobId(0);

    pub const fn new(model: ChipModel, value: u8) -> Result<Self, InvalidJobId> {
        let step = model.job_id_step();
        if value < 128 && value.is_multiple_of(step) {
            Ok(Self(value))
        } else {
            Err(InvalidJobId { value, step })
        }
    }

    pub const fn value(self) -> u8 {
        self.0
    }

    /// The id after this one in ESP-Miner's rotation (§4.3).
    pub const fn next(self, model: ChipModel) -> Self {
        Self((self.0 + model.job_id_increment()) % 128)
    }
}

/// A BM1397 job: midstates plus the 12 header bytes after them (§4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MidstateJob {
    pub job_id: u8,
    /// The count byte: how many midstates the chip works on (1, or 4 with AsicBoost).
    pub midstate_count: u8,
    pub starting_nonce: u32,
    pub nbits: u32,
    pub ntime: u32,
    /// Header bytes 64..68: the last 4 bytes of the internal-order merkle root.
    pub merkle_tail: [u8; 4],
    pub midstates: [Midstate; 4],
    /// How many midstate slots the frame carries (1..=4); ESP-Miner always sends 4.
    pub slots: u8,
}

impl MidstateJob {
    /// A job for `header`, ESP-Miner style: four slots, and with a version mask four midstates,
    /// where midstate k hashes the version rolled k times (AsicBoost, §4.1).
    pub fn from_header(job_id: JobId, header: &BlockHeader, rolling: Option<VersionMask>) -> Self {
        let mut midstates = [Midstate::default(); 4];
        let count = match rolling {
            Some(mask) => {
                for (k, slot) in (0u32..).zip(midstates.iter_mut()) {
                    let rolled = BlockHeader {
                        version: mask.roll(header.version, k),
                        ..*header
                    };
                    *slot = rolled.midstate();
                }
                4
            }
            None => {
                midstates[0] = header.midstate();
                1
            }
        };
        let mut merkle_tail = [0u8; 4];
        merkle_tail.copy_from_slice(&header.merkle_root[28..]);
        Self {
            job_id: job_id.value(),
            midstate_count: count,
            starting_nonce: 0,
            nbits: header.nbits,
            ntime: header.ntime,
            merkle_tail,
            midstates,
            slots: 4,
        }
    }

    /// Header bytes 64..80 for a nonce: what the chip hashes after the midstate.
    pub fn tail(&self, nonce: u32) -> [u8; 16] {
        let mut tail = [0u8; 16];
        tail[0..4].copy_from_slice(&self.merkle_tail);
        tail[4..8].copy_from_slice(&self.ntime.to_le_bytes());
        tail[8..12].copy_from_slice(&self.nbits.to_le_bytes());
        tail[12..16].copy_from_slice(&nonce.to_le_bytes());
        tail
    }

    fn encode(&self) -> JobFrame {
        let slots = usize::from(self.slots.clamp(1, 4));
        let mut frame = JobFrame::new();
        frame.extend(&PREAMBLE_TX);
        frame.extend(&[
            JOB_HEADER,
            (MIDSTATE_FIXED + 32 * slots) as u8,
            self.job_id,
            self.midstate_count,
        ]);
        frame.extend(&self.starting_nonce.to_le_bytes());
        // Header bytes 64..76 with their three words in reverse order.
        frame.extend(&self.nbits.to_le_bytes());
        frame.extend(&self.ntime.to_le_bytes());
        frame.extend(&self.merkle_tail);
        for midstate in &self.midstates[..slots] {
            frame.extend(&midstate.to_wire());
        }
        let crc = crc16(&frame.as_bytes()[2..]);
        frame.extend(&crc.to_be_bytes());
        frame
    }

    fn parse(frame: &[u8]) -> Self {
        let word = |at: usize| {
            u32::from_le_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]])
        };
        let slots = (frame.len() - 2 - MIDSTATE_FIXED) / 32;
        let mut midstates = [Midstate::default(); 4];
        for (slot, wire) in midstates
            .iter_mut()
            .zip(frame[22..22 + 32 * slots].chunks_exact(32))
        {
            let mut bytes = [0u8; 32];
            bytes.copy_from_slice(wire);
            *slot = Midstate::from_wire(&bytes);
        }
        Self {
            job_id: frame[4],
            midstate_count: frame[5],
            starting_nonce: word(6),
            nbits: word(10),
            ntime: word(14),
            merkle_tail: [frame[18], frame[19], frame[20], frame[21]],
            midstates,
            slots: slots as u8,
        }
    }
}

/// A BM1366/BM1368/BM1370 job: the first 76 header bytes; the chip computes midstates and rolls the
/// version itself (§4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeaderJob {
    pub job_id: u8,
    pub starting_nonce: u32,
    /// The header; its nonce field is not sent.
    pub header: BlockHeader,
    /// The length byte on the wire: [`FULL_HEADER_LENGTH_BYTE`] or the legacy
    /// [`FULL_HEADER_LEGACY_LENGTH_BYTE`]. Both work on real chips.
    pub length_byte: u8,
}

impl HeaderJob {
    pub fn new(job_id: JobId, header: &BlockHeader) -> Self {
        Self {
            job_id: job_id.value(),
            starting_nonce: 0,
            header: BlockHeader {
                nonce: 0,
                ..*header
            },
            length_byte: FULL_HEADER_LENGTH_BYTE,
        }
    }

    fn encode(&self) -> JobFrame {
        let mut frame = JobFrame::new();
        frame.extend(&PREAMBLE_TX);
        frame.extend(&[JOB_HEADER, self.length_byte, self.job_id, 0x01]);
        frame.extend(&self.starting_nonce.to_le_bytes());
        let bytes = self.header.to_bytes();
        // Header bytes 0..76 as 19 words in reverse order, bytes inside each word unchanged.
        for word in bytes[..76].rchunks_exact(4) {
            frame.extend(word);
        }
        let crc = crc16(&frame.as_bytes()[2..]);
        frame.extend(&crc.to_be_bytes());
        frame
    }

    fn parse(frame: &[u8]) -> Self {
        let mut bytes = [0u8; 80];
        for (dest, src) in bytes[..76]
            .rchunks_exact_mut(4)
            .zip(frame[10..86].chunks_exact(4))
        {
            dest.copy_from_slice(src);
        }
        Self {
            job_id: frame[4],
            starting_nonce: u32::from_le_bytes([frame[6], frame[7], frame[8], frame[9]]),
            header: BlockHeader::from_bytes(&bytes),
            length_byte: frame[3],
        }
    }
}

/// A job frame of either format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Job {
    Midstate(MidstateJob),
    Header(HeaderJob),
}

impl Job {
    pub fn job_id(&self) -> u8 {
        match self {
            Self::Midstate(job) => job.job_id,
            Self::Header(job) => job.job_id,
        }
    }

    pub fn starting_nonce(&self) -> u32 {
        match self {
            Self::Midstate(job) => job.starting_nonce,
            Self::Header(job) => job.starting_nonce,
        }
    }

    pub fn nbits(&self) -> u32 {
        match self {
            Self::Midstate(job) => job.nbits,
            Self::Header(job) => job.header.nbits,
        }
    }

    pub fn ntime(&self) -> u32 {
        match self {
            Self::Midstate(job) => job.ntime,
            Self::Header(job) => job.header.ntime,
        }
    }

    /// The midstate count byte (always 1 for full-header jobs).
    pub fn midstate_count(&self) -> u8 {
        match self {
            Self::Midstate(job) => job.midstate_count,
            Self::Header(_) => 1,
        }
    }

    /// How many bytes the encoded frame has.
    pub fn wire_len(&self) -> usize {
        match self {
            Self::Midstate(job) => 2 + MIDSTATE_FIXED + 32 * usize::from(job.slots.clamp(1, 4)),
            Self::Header(_) => FULL_HEADER_LEN,
        }
    }

    pub fn encode(&self) -> JobFrame {
        match self {
            Self::Midstate(job) => job.encode(),
            Self::Header(job) => job.encode(),
        }
    }

    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, crate::BufferTooSmall> {
        self.encode().copy_to(out)
    }

    /// The whole frame length a job's length byte implies in `format`, or `None` if that length byte
    /// is not one the format uses. The legacy 0x36 means 88 bytes for full-header jobs but one
    /// midstate slot for BM1397, so the format must be known to read a job.
    pub(crate) const fn frame_len(format: JobFormat, length_byte: u8) -> Option<usize> {
        match format {
            JobFormat::Midstate => match length_byte {
                0x36 | 0x56 | 0x76 | 0x96 => Some(length_byte as usize + 2),
                _ => None,
            },
            JobFormat::FullHeader => match length_byte {
                FULL_HEADER_LENGTH_BYTE | FULL_HEADER_LEGACY_LENGTH_BYTE => Some(FULL_HEADER_LEN),
                _ => None,
            },
        }
    }

    /// Parses one whole job frame of the given format; the CRC is reported, not enforced.
    pub fn parse(format: JobFormat, frame: &[u8]) -> Result<(Self, bool), ParseError> {
        let [p0, p1, header, length_byte, ..] = *frame else {
            return Err(ParseError::Truncated);
        };
        if [p0, p1] != PREAMBLE_TX {
            return Err(ParseError::Preamble);
        }
        if header != JOB_HEADER {
            return Err(ParseError::UnknownHeader);
        }
        let expected = Self::frame_len(format, length_byte).ok_or(ParseError::Length)?;
        if frame.len() < expected {
            return Err(ParseError::Truncated);
        }
        if frame.len() > expected {
            return Err(ParseError::Length);
        }
        let crc_ok = crc16(&frame[2..]) == 0;
        let job = match format {
            JobFormat::Midstate => Self::Midstate(MidstateJob::parse(frame)),
            JobFormat::FullHeader => Self::Header(HeaderJob::parse(frame)),
        };
        Ok((job, crc_ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex::decode_into;

    #[test]
    fn job_ids_follow_the_model_rules() {
        assert!(JobId::new(ChipModel::Bm1397, 124).is_ok());
        assert!(JobId::new(ChipModel::Bm1397, 126).is_err());
        assert!(JobId::new(ChipModel::Bm1366, 12).is_err());
        assert!(JobId::new(ChipModel::Bm1370, 128).is_err());
        let mut id = JobId::new(ChipModel::Bm1370, 0).expect("valid");
        let mut seen = [0u8; 6];
        for slot in &mut seen {
            id = id.next(ChipModel::Bm1370);
            *slot = id.value();
        }
        assert_eq!(seen, [24, 48, 72, 96, 120, 16]);
    }

    /// ESP-Miner's documented BM1397 job: id 4, count byte 4, one real midstate, slots 1–3 zero,
    /// CRC16 0x6B1D (§4.1).
    #[test]
    fn esp_miner_documented_bm1397_job() {
        let header = crate::header::tests::esp_miner_job_header();
        let mut job = MidstateJob::from_header(JobId(4), &header, None);
        job.midstate_count = 4;
        let frame = Job::Midstate(job).encode();
        let bytes = frame.as_bytes();
        assert_eq!(bytes.len(), 152);
        assert_eq!(&bytes[..6], &[0x55, 0xAA, 0x21, 0x96, 0x04, 0x04]);
        assert_eq!(
            &bytes[10..22],
            &[
                0x01, 0xDD, 0x05, 0x17, 0xD8, 0x8B, 0x65, 0x64, 0xC6, 0x04, 0xA8, 0x46
            ]
        );
        assert_eq!(&bytes[22..26], &[0x4D, 0x31, 0x85, 0xF2]);
        assert!(bytes[54..150].iter().all(|&b| b == 0));
        assert_eq!(&bytes[150..], &[0x6B, 0x1D]);
        assert_eq!(
            Job::parse(JobFormat::Midstate, bytes),
            Ok((Job::Midstate(job), true))
        );
    }

    /// A job captured on a real BM1397 (ESP-Miner test_job_command.c): the chip answered nonce
    /// 0x0A4C049B from midstate slot 2. Checking that the nonce really solves the job proves the
    /// midstate word order and the tail layout against hardware, not against this crate.
    #[test]
    fn captured_bm1397_job_solves_with_its_nonce() {
        let mut payload = [0u8; 146];
        let n =
            decode_into("18 04 9B044C0A 3AAE0517 A0847364 50E37161", &mut payload).expect("hex");
        assert_eq!(n, 18);
        let slot2 = "7E027035B1ACBAF23EA01A527344FAF76AB476D328216118B7760F7B1B22D229";
        decode_into(slot2, &mut payload[18 + 64..18 + 96]).expect("hex");
        let mut frame = [0u8; 152];
        frame[..4].copy_from_slice(&[0x55, 0xAA, 0x21, 0x96]);
        frame[4..150].copy_from_slice(&payload);
        let crc = crc16(&frame[2..150]);
        frame[150..].copy_from_slice(&crc.to_be_bytes());

        let (Job::Midstate(job), true) = Job::parse(JobFormat::Midstate, &frame).expect("parses")
        else {
            panic!("expected a valid midstate job");
        };
        assert_eq!((job.job_id, job.midstate_count, job.slots), (0x18, 4, 4));
        assert_eq!(job.nbits, 0x1705_AE3A);
        assert_eq!(job.ntime, 0x6473_84A0);
        let nonce = 0x0A4C_049B;
        assert_eq!(job.starting_nonce, nonce);
        let hash = job.midstates[2].finish_sha256d(&job.tail(nonce));
        // A chip only returns nonces whose hash has 32 leading zero bits (§10).
        assert_eq!(&hash[28..], &[0, 0, 0, 0]);
        let other = job.midstates[2].finish_sha256d(&job.tail(nonce + 1));
        assert_ne!(&other[28..], &[0, 0, 0, 0]);
    }

    #[test]
    fn full_header_job_layout_and_both_length_bytes() {
        let mut header = BlockHeader {
            version: 0x2000_0004,
            prev_hash: [0u8; 32],
            merkle_root: [0u8; 32],
            ntime: 0x6465_8bd8,
            nbits: 0x1705_dd01,
            nonce: 0,
        };
        for (i, b) in header.prev_hash.iter_mut().enumerate() {
            *b = i as u8;
        }
        for (i, b) in header.merkle_root.iter_mut().enumerate() {
            *b = 0x80 | i as u8;
        }
        let id = JobId::new(ChipModel::Bm1366, 8).expect("valid");
        let job = HeaderJob::new(id, &header);
        let frame = Job::Header(job).encode();
        let bytes = frame.as_bytes();
        assert_eq!(bytes.len(), 88);
        assert_eq!(
            &bytes[..10],
            &[0x55, 0xAA, 0x21, 0x56, 0x08, 0x01, 0, 0, 0, 0]
        );
        assert_eq!(&bytes[10..14], &0x1705_dd01u32.to_le_bytes());
        assert_eq!(&bytes[14..18], &0x6465_8bd8u32.to_le_bytes());
        // Merkle root: display order with each word byte-reversed = internal words reversed.
        assert_eq!(&bytes[18..22], &[0x9C, 0x9D, 0x9E, 0x9F]);
        assert_eq!(&bytes[46..50], &[0x80, 0x81, 0x82, 0x83]);
        assert_eq!(&bytes[50..54], &[28, 29, 30, 31]);
        assert_eq!(&bytes[82..86], &0x2000_0004u32.to_le_bytes());
        assert_eq!(
            Job::parse(JobFormat::FullHeader, bytes),
            Ok((Job::Header(job), true))
        );

        let legacy = HeaderJob {
            length_byte: FULL_HEADER_LEGACY_LENGTH_BYTE,
            ..job
        };
        let legacy_frame = Job::Header(legacy).encode();
        assert_eq!(legacy_frame.as_bytes()[3], 0x36);
        assert_eq!(&legacy_frame.as_bytes()[4..86], &bytes[4..86]);
        assert_ne!(&legacy_frame.as_bytes()[86..], &bytes[86..]);
        assert_eq!(
            Job::parse(JobFormat::FullHeader, legacy_frame.as_bytes()),
            Ok((Job::Header(legacy), true))
        );
    }

    #[test]
    fn rolled_midstates_hash_rolled_versions() {
        let header = BlockHeader {
            version: 0x2000_0000,
            prev_hash: [7u8; 32],
            merkle_root: [9u8; 32],
            ntime: 1,
            nbits: 2,
            nonce: 0,
        };
        let job = MidstateJob::from_header(JobId(0), &header, Some(VersionMask::BIP320));
        assert_eq!(job.midstate_count, 4);
        for k in 0..4u32 {
            let rolled = BlockHeader {
                version: 0x2000_0000 + k * 0x2000,
                ..header
            };
            assert_eq!(job.midstates[k as usize], rolled.midstate(), "midstate {k}");
        }
    }
}
