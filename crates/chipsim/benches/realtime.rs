//! How many chips one core simulates in real time, at several share floors.
//!
//! `cargo bench -p chipsim --bench realtime` prints the table in docs/BENCHMARKS.md. Each row
//! brings a chain up with the real init sequence, gives it AsicBoost work, and simulates 30 s of
//! mining while draining the UART; "× real time" is simulated seconds per second of one core.
//! The baseline, measured in the same run, is the raw SHA-256d rate of this core on block headers:
//! the nonce search can at best approach it.

use std::hint::black_box;
use std::time::Instant;

use bm13xx::{
    BlockHeader, ChipModel, InitConfig, InitSequence, Job, JobId, MidstateJob, Step, VersionMask,
};
use chipsim::{ChainConfig, ChainSim};

fn header() -> BlockHeader {
    BlockHeader {
        version: 0x2000_0000,
        prev_hash: [0x42; 32],
        merkle_root: [0x17; 32],
        ntime: 0x6470_25b5,
        nbits: 0x1705_ae3a,
        nonce: 0,
    }
}

/// A BM1397 chain brought up exactly as a host would, then given work.
fn mining_chain(chips: u32, floor_log2: u32) -> ChainSim {
    let mut config = ChainConfig::new(ChipModel::Bm1397, chips, 1);
    config.share_floor_log2 = floor_log2;
    let mut sim = ChainSim::new(config).expect("valid");
    let mut baud = 115_200;
    for step in InitSequence::new(InitConfig::esp_miner(ChipModel::Bm1397, chips)).expect("valid") {
        match step.expect("solvable") {
            Step::Send { frame, .. } | Step::Enumerate { frame, .. } => {
                sim.receive(frame.as_bytes(), baud)
            }
            Step::SetHostBaud { baud: b, .. } => baud = b,
        }
    }
    sim.take_output(baud);
    let job = MidstateJob::from_header(
        JobId::new(ChipModel::Bm1397, 4).expect("valid"),
        &header(),
        Some(VersionMask::BIP320),
    );
    sim.receive(Job::Midstate(job).encode().as_bytes(), baud);
    sim
}

/// Simulated seconds per wall second, and hashes searched per wall second, for `chains` chains
/// stepped together on one core.
fn run(chains: u32, chips: u32, floor_log2: u32, simulated_s: f64) -> (f64, f64) {
    let mut sims: Vec<ChainSim> = (0..chains)
        .map(|_| mining_chain(chips, floor_log2))
        .collect();
    let start = Instant::now();
    let mut bytes = 0;
    let steps = (simulated_s / 0.05) as u32;
    for _ in 0..steps {
        for sim in &mut sims {
            sim.advance(0.05);
            bytes += black_box(sim.take_output(3_125_000)).len();
        }
    }
    let wall = start.elapsed().as_secs_f64();
    black_box(bytes);
    let hashes: u64 = sims
        .iter()
        .flat_map(|s| s.chips())
        .map(|c| c.stats.hashes_tried)
        .sum();
    (simulated_s / wall, hashes as f64 / wall)
}

fn raw_sha256d_rate() -> f64 {
    let mut h = header();
    let start = Instant::now();
    let n = 2_000_000u32;
    let mut sink = 0u8;
    for nonce in 0..n {
        h.nonce = nonce;
        sink ^= black_box(h.hash())[0];
    }
    black_box(sink);
    f64::from(n) / start.elapsed().as_secs_f64()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let simulated_s = if quick { 5.0 } else { 30.0 };
    let raw = raw_sha256d_rate();
    println!(
        "raw SHA-256d on one core: {:.2} M headers/s (baseline)\n",
        raw / 1e6
    );
    println!(
        "| chains × BM1397 chips | share floor | × real time | chips in real time on one core | search rate ÷ raw SHA-256d |"
    );
    println!("|---|---|---|---|---|");
    for (chains, chips, floor) in [
        (1, 100, 24),
        (3, 100, 24),
        (3, 100, 26),
        (3, 100, 28),
        (3, 100, 32),
        (10, 100, 32),
    ] {
        let (factor, hashes) = run(chains, chips, floor, simulated_s);
        println!(
            "| {chains} × {chips} | 2^-{floor} | {factor:.1}× | {:.0} | {:.2} |",
            f64::from(chains * chips) * factor,
            hashes / raw
        );
    }
    // A BM1397 at 425 MHz and ticket difficulty 256: 285.6 GH/s / (2^32 · 256) nonces per second.
    let per_chip = 285.6e9 / (4_294_967_296.0 * 256.0);
    println!(
        "\n{simulated_s} simulated seconds per row; ticket difficulty 256 (ESP-Miner's BM1397 default), {per_chip:.2} nonces per chip per second."
    );
}
