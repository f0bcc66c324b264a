//! What signed telemetry costs the agent per message (#16): the bare report taken into the fleet
//! view (parse, plausibility, store) — the baseline, what the agent did before miners signed —
//! against the same report in its envelope, opened by the enrolment book (envelope parse, key
//! look-up, one Ed25519 check) and then taken the same way — and split as the agent splits it:
//! the verifier thread checking 256 at a time (`report::check_many`: one Ed25519 batch
//! verification), and the loop given each verdict (`Enrolment::open_checked`, then taken). At
//! 10,000 and 100,000 enrolled miners, one report each, on one core.
//!
//! `cargo bench -p hashwarden --bench intake`

use std::hint::black_box;
use std::time::Instant;

use fleet_proto::Kind;
use fleet_proto::report::{DeviceSigner, KeyCache, check_many};
use hashwarden::enrol::{EnrolMode, Enrolment, How, Opened};
use hashwarden::fleet::FleetView;

const NOW: u64 = 1_767_225_700;
/// As the agent's verifier thread takes what is queued.
const BATCH: usize = 256;

struct Site {
    topics: Vec<String>,
    bare: Vec<Vec<u8>>,
    signed: Vec<Vec<u8>>,
    book: Enrolment,
}

fn site(miners: usize) -> Site {
    let telemetry = String::from_utf8(
        fleet_proto::examples::payload("/telemetry").expect("the documented telemetry"),
    )
    .expect("text");
    let mut book = Enrolment::new(EnrolMode::Config, 0);
    let (mut topics, mut bare, mut signed) = (vec![], vec![], vec![]);
    for m in 0..miners {
        let miner = format!("m{m:06}");
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(m as u64 + 1).to_le_bytes());
        let device = DeviceSigner::from_seed(&seed);
        book.enrol(&miner, device.public_hex(), How::Config)
            .expect("a key");
        let topic = format!("hashwarden/v1/bench/{miner}/telemetry");
        signed.push(serde_json::to_vec(&device.sign(&topic, telemetry.clone())).expect("encodes"));
        bare.push(telemetry.clone().into_bytes());
        topics.push(topic);
    }
    Site {
        topics,
        bare,
        signed,
        book,
    }
}

fn miner(topic: &str) -> &str {
    topic.split('/').nth(3).unwrap_or("")
}

/// Seconds per message, best of `runs`.
fn best(runs: usize, messages: usize, mut pass: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let started = Instant::now();
            pass();
            started.elapsed().as_secs_f64() / messages as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    println!(
        "| miners | bare report, parsed and taken (baseline) | signed, all on the loop | × baseline | verifier thread, 256 at a time | × baseline | the loop, given the verdict | × baseline |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for miners in [10_000, 100_000] {
        let mut site = site(miners);
        let mut fleet = FleetView::with_max_miners(miners);
        // Every miner known once, as on a running site.
        for (topic, bare) in site.topics.iter().zip(&site.bare) {
            fleet
                .ingest(miner(topic), Kind::Telemetry, bare, NOW)
                .expect("taken");
        }
        let runs = if miners > 10_000 { 3 } else { 5 };
        let bare = best(runs, miners, || {
            for (topic, bare) in site.topics.iter().zip(&site.bare) {
                let _ = black_box(fleet.ingest(miner(topic), Kind::Telemetry, bare, NOW));
            }
        });
        let signed = best(runs, miners, || {
            for (topic, wire) in site.topics.iter().zip(&site.signed) {
                let name = miner(topic);
                if let Ok(Opened::Report(payload)) = site.book.open(name, topic, wire, NOW) {
                    let _ = black_box(fleet.ingest(name, Kind::Telemetry, payload.as_bytes(), NOW));
                } else {
                    panic!("{name}: not opened");
                }
            }
        });
        let mut keys = KeyCache::new(miners);
        let mut verdicts = Vec::with_capacity(miners);
        let verifier = best(runs, miners, || {
            verdicts.clear();
            for (topics, wires) in site.topics.chunks(BATCH).zip(site.signed.chunks(BATCH)) {
                let items: Vec<(&str, &[u8])> = topics
                    .iter()
                    .zip(wires)
                    .map(|(t, w)| (t.as_str(), w.as_slice()))
                    .collect();
                verdicts.extend(check_many(&items, &mut keys));
            }
        });
        let given = best(runs, miners, || {
            for (topic, verdict) in site.topics.iter().zip(&verdicts) {
                let name = miner(topic);
                let Ok(Opened::Report(payload)) =
                    site.book.open_checked(name, verdict.clone(), NOW)
                else {
                    panic!("{name}: not opened");
                };
                let _ = black_box(fleet.ingest(name, Kind::Telemetry, payload.as_bytes(), NOW));
            }
        });
        println!(
            "| {miners} | {:.1} µs | {:.1} µs | {:.1}× | {:.1} µs | {:.1}× | {:.1} µs | {:.1}× |",
            bare * 1e6,
            signed * 1e6,
            signed / bare,
            verifier * 1e6,
            verifier / bare,
            given * 1e6,
            given / bare,
        );
    }
}
