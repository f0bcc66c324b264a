//! Workloads shared by the criterion benches and the ratio table.
#![allow(dead_code)]

use bm13xx::{
    BlockHeader, ChipModel, Command, Destination, Event, HeaderJob, Job, JobId, MidstateJob,
    NonceResponse, RegisterResponse, Response, ResponseDecoder, ResponseFormat, Side,
    StreamDecoder, VersionMask,
};

/// UART line rate at 3.125 Mbaud, 8N1: ten bit times per byte.
pub const LINE_RATE_BYTES_PER_S: f64 = 3_125_000.0 / 10.0;

/// A deterministic xorshift, so every run decodes the same stream.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What a busy BM1397 chain sends back: mostly nonces, some register reads, and the damage a real
/// line shows (one frame in 100 with a flipped bit, one in 200 followed by a few bytes of noise).
pub fn mixed_rx_stream(len: usize) -> Vec<u8> {
    let mut rng = Rng::new(0x5EED);
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        let roll = rng.below(1000);
        let response = if roll < 40 {
            Response::Register(RegisterResponse {
                value: rng.next() as u32,
                chip_address: (rng.below(8) * 32) as u8,
                register: 0x04,
                extra: None,
            })
        } else {
            Response::Nonce(NonceResponse {
                nonce_bytes: (rng.next() as u32).to_le_bytes(),
                byte6: 0,
                byte7: (rng.below(32) * 4 + rng.below(4)) as u8,
                version_bits: None,
            })
        };
        let frame = response.encode();
        let start = out.len();
        out.extend_from_slice(frame.as_bytes());
        if roll >= 990 {
            let bit = rng.below(8 * 7) as usize;
            out[start + 2 + bit / 8] ^= 1 << (bit % 8);
        }
        if rng.below(200) == 0 {
            for _ in 0..rng.below(6) + 1 {
                out.push(rng.next() as u8);
            }
        }
    }
    out
}

pub fn sample_header(seed: u64) -> BlockHeader {
    let mut rng = Rng::new(seed);
    let mut hash = || {
        let mut h = [0u8; 32];
        for chunk in h.chunks_exact_mut(8) {
            chunk.copy_from_slice(&rng.next().to_le_bytes());
        }
        h
    };
    BlockHeader {
        version: 0x2000_0000,
        prev_hash: hash(),
        merkle_root: hash(),
        ntime: 0x6470_25b5,
        nbits: 0x1705_ae3a,
        nonce: 0,
    }
}

pub fn bm1397_job() -> Job {
    let id = JobId::new(ChipModel::Bm1397, 8).expect("valid id");
    Job::Midstate(MidstateJob::from_header(
        id,
        &sample_header(1),
        Some(VersionMask::BIP320),
    ))
}

pub fn bm1366_job() -> Job {
    let id = JobId::new(ChipModel::Bm1366, 8).expect("valid id");
    Job::Header(HeaderJob::new(id, &sample_header(2)))
}

/// What a BM1366 host sends while mining: a job every few frames between register traffic.
pub fn tx_stream(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 100);
    let job = bm1366_job().encode();
    let read = Command::read(Destination::All, 0x8C).encode();
    while out.len() < len {
        out.extend_from_slice(job.as_bytes());
        out.extend_from_slice(read.as_bytes());
    }
    out
}

/// Decodes and counts frames; the count keeps the work from being optimised away.
pub fn decode_count<S: Side>(decoder: &mut StreamDecoder<S>, stream: &[u8], chunk: usize) -> u64 {
    let mut frames = 0;
    for piece in stream.chunks(chunk) {
        frames += decoder
            .feed(piece)
            .filter(|e| matches!(e, Event::Frame { .. }))
            .count() as u64;
    }
    frames
        + decoder
            .finish()
            .filter(|e| matches!(e, Event::Frame { .. }))
            .count() as u64
}

pub fn rx_decoder() -> ResponseDecoder {
    ResponseDecoder::chip_to_host(ResponseFormat::Short)
}

/// The baseline: how ESP-Miner-style code checks a stream, a bit-serial CRC5 over each fixed-size
/// candidate and a byte-by-byte resync on failure.
pub fn naive_decode_count(stream: &[u8]) -> u64 {
    let mut frames = 0;
    let mut i = 0;
    while i + 9 <= stream.len() {
        if stream[i] == 0xAA
            && stream[i + 1] == 0x55
            && bm13xx::crc::crc5_bit_serial(&stream[i + 2..i + 9], 56) == 0
        {
            frames += 1;
            i += 9;
        } else {
            i += 1;
        }
    }
    frames
}
