//! Criterion benchmarks: decoder throughput on a realistic mixed stream and job-frame encoding.
//! `cargo bench -p bm13xx --bench ratios` prints the same workloads as ratios in one table.

mod common;

use std::hint::black_box;

use common::*;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn decode(c: &mut Criterion) {
    let rx = mixed_rx_stream(1 << 20);
    let tx = tx_stream(1 << 20);
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(rx.len() as u64));
    group.bench_function("rx_mixed_whole", |b| {
        b.iter(|| decode_count(&mut rx_decoder(), black_box(&rx), rx.len()))
    });
    group.bench_function("rx_mixed_64_byte_reads", |b| {
        b.iter(|| decode_count(&mut rx_decoder(), black_box(&rx), 64))
    });
    group.bench_function("rx_naive_baseline", |b| {
        b.iter(|| naive_decode_count(black_box(&rx)))
    });
    group.throughput(Throughput::Bytes(tx.len() as u64));
    group.bench_function("tx_jobs_and_commands", |b| {
        b.iter(|| {
            let mut decoder = bm13xx::HostDecoder::host_to_chip(bm13xx::ChipModel::Bm1366);
            decode_count(&mut decoder, black_box(&tx), 256)
        })
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let bm1397 = bm1397_job();
    let bm1366 = bm1366_job();
    let header = sample_header(3);
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("bm1397_job_frame", |b| {
        b.iter(|| black_box(&bm1397).encode())
    });
    group.bench_function("bm1366_job_frame", |b| {
        b.iter(|| black_box(&bm1366).encode())
    });
    group.bench_function("bm1397_job_from_header_4_midstates", |b| {
        b.iter(|| {
            let id = bm13xx::JobId::new(bm13xx::ChipModel::Bm1397, 4).expect("valid");
            bm13xx::MidstateJob::from_header(
                id,
                black_box(&header),
                Some(bm13xx::VersionMask::BIP320),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
