//! Prints the benchmark table of docs/BENCHMARKS.md: each workload's median rate over interleaved
//! rounds, as a ratio to the 3.125 Mbaud line rate and to a naive decoder measured in the same run.
//!
//! `cargo bench -p bm13xx --bench ratios` (add `-- --quick` for a short run).

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::*;

struct Workload {
    name: &'static str,
    /// Bytes (or frames, for encoders) handled per call.
    units_per_call: f64,
    unit: &'static str,
    run: Box<dyn FnMut() -> u64>,
}

/// Calls `run` for about `budget` and returns units per second.
fn measure(workload: &mut Workload, budget: Duration) -> f64 {
    let start = Instant::now();
    let mut calls = 0u64;
    let mut sink = 0u64;
    while start.elapsed() < budget {
        sink = sink.wrapping_add((workload.run)());
        calls += 1;
    }
    black_box(sink);
    workload.units_per_call * calls as f64 / start.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, budget) = if quick {
        (3, Duration::from_millis(100))
    } else {
        (11, Duration::from_millis(300))
    };

    let rx = mixed_rx_stream(1 << 20);
    let tx = tx_stream(1 << 20);
    let frames_in_rx = naive_decode_count(&rx);
    let bm1397 = bm1397_job();
    let bm1366 = bm1366_job();
    let header = sample_header(3);
    let bm1397_len = bm1397.encode().len() as f64;
    let bm1366_len = bm1366.encode().len() as f64;

    let rx_len = rx.len() as f64;
    let tx_len = tx.len() as f64;
    let rx2 = rx.clone();
    let rx3 = rx.clone();
    let mut workloads = [
        Workload {
            name: "decode rx, whole buffer",
            units_per_call: rx_len,
            unit: "B",
            run: Box::new(move || decode_count(&mut rx_decoder(), black_box(&rx), rx.len())),
        },
        Workload {
            name: "decode rx, 64-byte reads",
            units_per_call: rx_len,
            unit: "B",
            run: Box::new(move || decode_count(&mut rx_decoder(), black_box(&rx2), 64)),
        },
        Workload {
            name: "naive rx baseline (bit-serial CRC5)",
            units_per_call: rx_len,
            unit: "B",
            run: Box::new(move || naive_decode_count(black_box(&rx3))),
        },
        Workload {
            name: "decode tx (BM1366 jobs + reads)",
            units_per_call: tx_len,
            unit: "B",
            run: Box::new(move || {
                let mut decoder = bm13xx::HostDecoder::host_to_chip(bm13xx::ChipModel::Bm1366);
                decode_count(&mut decoder, black_box(&tx), 256)
            }),
        },
        Workload {
            name: "encode BM1397 job frame (4 midstates)",
            units_per_call: 1.0,
            unit: "frame",
            run: Box::new(move || black_box(&bm1397).encode().len() as u64),
        },
        Workload {
            name: "encode BM1366 job frame",
            units_per_call: 1.0,
            unit: "frame",
            run: Box::new(move || black_box(&bm1366).encode().len() as u64),
        },
        Workload {
            name: "build BM1397 job from header (4 SHA-256 midstates) + encode",
            units_per_call: 1.0,
            unit: "frame",
            run: Box::new(move || {
                let id = bm13xx::JobId::new(bm13xx::ChipModel::Bm1397, 4).expect("valid");
                let job = bm13xx::MidstateJob::from_header(
                    id,
                    black_box(&header),
                    Some(bm13xx::VersionMask::BIP320),
                );
                bm13xx::Job::Midstate(job).encode().len() as u64
            }),
        },
    ];

    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); workloads.len()];
    // Rounds interleave the workloads so that machine noise hits them all alike.
    for _ in 0..rounds {
        for (workload, rates) in workloads.iter_mut().zip(&mut samples) {
            rates.push(measure(workload, budget));
        }
    }
    let rates: Vec<f64> = samples.into_iter().map(median).collect();
    let naive = rates[2];

    println!("| workload | median rate | × line rate (3.125 Mbaud) | × naive decoder |");
    println!("|---|---|---|---|");
    for (i, (workload, rate)) in workloads.iter().zip(&rates).enumerate() {
        let (rate_text, line_ratio, naive_ratio) = if workload.unit == "B" {
            let frames = if i < 3 {
                format!(
                    ", {:.1} M frames/s",
                    rate / rx_len * frames_in_rx as f64 / 1e6
                )
            } else {
                String::new()
            };
            (
                format!("{:.1} MB/s{frames}", rate / 1e6),
                format!("{:.0}×", rate / LINE_RATE_BYTES_PER_S),
                if i < 3 {
                    format!("{:.1}×", rate / naive)
                } else {
                    "—".into()
                },
            )
        } else {
            // Frames per second the line can carry: line bytes/s over the frame length.
            let len = if i == 5 { bm1366_len } else { bm1397_len };
            (
                format!("{:.2} M frames/s", rate / 1e6),
                format!("{:.0}×", rate / (LINE_RATE_BYTES_PER_S / len)),
                "—".into(),
            )
        };
        println!(
            "| {} | {rate_text} | {line_ratio} | {naive_ratio} |",
            workload.name
        );
    }
    println!(
        "\n{} rounds × {} ms per workload, median; stream of {} bytes with {} good frames.",
        rounds,
        budget.as_millis(),
        rx_len,
        frames_in_rx
    );
}
