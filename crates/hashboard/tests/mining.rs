//! Mining against the simulator: shares are real solutions, hardware errors injected by the
//! simulator are counted and never become shares, duplicates and garbage are survived.

mod common;

use bm13xx::{BlockHeader, ChipModel, InitConfig, NonceLayout, Response, VersionMask};
use chipsim::Faults;
use chipsim::SimControl;
use common::{Bench, SimDelay, SimPort, bench};
use hashboard::chain::Chain;
use hashboard::mining::{CoreCounts, Dispatcher, NonceOutcome, Share, Work};

/// The simulator's share floor in these tests: 2^-32, so difficulties are scaled by it.
const SCALE: f64 = 1.0 / 4_294_967_296.0;
const POOL_DIFFICULTY: f64 = 1024.0;

fn work(work_id: u64, version: u32) -> Work {
    Work {
        work_id,
        header: BlockHeader {
            version,
            prev_hash: [0x5A; 32],
            merkle_root: [work_id as u8; 32],
            ntime: 0x6470_25b5,
            nbits: 0x1705_ae3a,
            nonce: 0,
        },
        version_mask: VersionMask::BIP320,
        pool_difficulty: POOL_DIFFICULTY,
    }
}

#[derive(Debug, Default)]
struct Tally {
    cores: Box<CoreCounts<4>>,
    shares: Vec<(Share, Work)>,
    valid: u32,
    hardware_errors: u32,
    duplicates: u32,
    stale: u32,
}

/// The chain as the board sees it, and the test's hold on the simulated board.
struct Rig {
    control: SimControl,
    delay: SimDelay,
}

async fn up(model: ChipModel, chips: u32, faults: Faults) -> (Chain<SimPort>, Rig) {
    let Bench {
        port,
        control,
        mut delay,
        mut reset,
    } = bench(model, chips, 21, Faults::default());
    let chain = Chain::bring_up(
        port,
        &mut reset,
        &mut delay,
        InitConfig::esp_miner(model, chips),
    )
    .await
    .expect("comes up");
    control.set_faults(faults);
    (chain, Rig { control, delay })
}

async fn mine(
    chain: &mut Chain<SimPort>,
    b: &mut Rig,
    dispatcher: &mut Dispatcher,
    jobs: &[Work],
    seconds: f64,
) -> Tally {
    let mut tally = Tally::default();
    let start = b.control.with_sim(|s| s.now_s());
    let per_job = seconds / jobs.len() as f64;
    for work in jobs {
        let frame = dispatcher.dispatch(*work);
        chain.write_frame(frame.as_bytes()).await.expect("writes");
        let until = b.control.with_sim(|s| s.now_s()) + per_job;
        while b.control.with_sim(|s| s.now_s()) < until {
            let Some(response) = chain.next_response(&mut b.delay, 100).await.expect("reads")
            else {
                continue;
            };
            let Response::Nonce(nonce) = response else {
                continue;
            };
            let (outcome, fields) = dispatcher.check_detailed(&nonce);
            tally.cores.record(&outcome, &fields);
            match outcome {
                NonceOutcome::Share(share) => {
                    let origin = *jobs
                        .iter()
                        .find(|w| w.work_id == share.work_id)
                        .expect("known work");
                    tally.shares.push((share, origin));
                }
                NonceOutcome::Valid { .. } => tally.valid += 1,
                NonceOutcome::HardwareError { .. } => tally.hardware_errors += 1,
                NonceOutcome::Duplicate { .. } => tally.duplicates += 1,
                NonceOutcome::Stale { .. } => tally.stale += 1,
            }
        }
    }
    assert!(b.control.with_sim(|s| s.now_s()) - start >= seconds);
    tally
}

/// Every share is checked here from scratch: the header with the share's version and nonce hashes
/// to at least the pool's difficulty (scaled by the floor).
fn assert_shares_genuine(tally: &Tally) {
    for (share, origin) in &tally.shares {
        let header = BlockHeader {
            version: share.version,
            nonce: share.nonce,
            ..origin.header
        };
        assert!(
            header.share_difficulty() >= POOL_DIFFICULTY * SCALE,
            "{share:?}"
        );
        assert_eq!(
            share.version & !VersionMask::BIP320.bits(),
            origin.header.version & !VersionMask::BIP320.bits()
        );
    }
}

fn dispatcher(chain: &Chain<SimPort>) -> Dispatcher {
    Dispatcher::new(
        chain.model(),
        NonceLayout::ESP_MINER,
        chain.addressing(),
        256.0,
        SCALE,
    )
}

#[tokio::test]
async fn bm1397_asicboost_shares_are_genuine() {
    let (mut chain, mut b) = up(ChipModel::Bm1397, 4, Faults::default()).await;
    let mut d = dispatcher(&chain);
    let jobs: Vec<Work> = (1..=5).map(|i| work(i, 0x2000_0000)).collect();
    let tally = mine(&mut chain, &mut b, &mut d, &jobs, 300.0).await;
    assert_shares_genuine(&tally);
    // 4 chips × 0.26 nonces/s × 300 s ≈ 312 nonces; a quarter meet 1024 at ticket 256.
    let total = tally.valid + tally.shares.len() as u32;
    assert!((200..450).contains(&total), "{total} nonces");
    assert!(tally.shares.len() > 40, "{} shares", tally.shares.len());
    assert!(tally.hardware_errors <= 2, "{tally:?}");
    assert_eq!(tally.stale, 0);
    // Every chip contributed, and the counters agree with the tally.
    let counted: u32 = (0..4).map(|i| d.counters(i).expect("chip").valid).sum();
    assert_eq!(counted, total);
    assert!((0..4).all(|i| d.counters(i).expect("chip").valid > 0));
    // Per core: the counts add up to the chip's, and nonces come from many cores.
    for chip in 0..4 {
        let per_core: u32 = (0..128)
            .map(|core| u32::from(tally.cores.core(chip, core).expect("in range").0))
            .sum();
        assert_eq!(per_core, d.counters(chip).expect("chip").valid);
        let cores_seen = (0..128)
            .filter(|&core| tally.cores.core(chip, core).expect("in range").0 > 0)
            .count();
        assert!(
            cores_seen > 10,
            "chip {chip}: nonces from {cores_seen} cores"
        );
    }
}

#[tokio::test]
async fn bm1370_version_rolled_shares_are_genuine() {
    let (mut chain, mut b) = up(ChipModel::Bm1370, 2, Faults::default()).await;
    let mut d = dispatcher(&chain);
    let jobs: Vec<Work> = (1..=3).map(|i| work(i, 0x2000_0000)).collect();
    let tally = mine(&mut chain, &mut b, &mut d, &jobs, 60.0).await;
    assert_shares_genuine(&tally);
    assert!(tally.shares.len() > 10, "{} shares", tally.shares.len());
    assert!(
        tally.shares.iter().any(|(s, _)| s.version != 0x2000_0000),
        "versions were rolled"
    );
}

/// Overclocked far past the silicon's limit, most nonces are wrong: every one the simulator knows
/// to be wrong is counted as a hardware error, and none becomes a share.
#[tokio::test]
async fn injected_hardware_errors_are_counted_and_never_shares() {
    let (mut chain, mut b) = up(ChipModel::Bm1397, 2, Faults::default()).await;
    let setting = bm13xx::pll::solve(
        ChipModel::Bm1397,
        bm13xx::Frequency::from_khz(625_000),
        bm13xx::PllConstraints::esp_miner(ChipModel::Bm1397),
    )
    .expect("solvable");
    chain
        .write_frame(
            bm13xx::Command::write(bm13xx::Destination::All, setting.parameter)
                .encode()
                .as_bytes(),
        )
        .await
        .expect("writes");
    let mut d = dispatcher(&chain);
    let before: u64 = b
        .control
        .with_sim(|s| s.chips().iter().map(|c| c.stats.bad_nonces).sum());
    let tally = mine(&mut chain, &mut b, &mut d, &[work(9, 0x2000_0000)], 300.0).await;
    let bad: u64 = b
        .control
        .with_sim(|s| s.chips().iter().map(|c| c.stats.bad_nonces).sum::<u64>())
        - before;
    assert!(bad > 20, "the simulator injected {bad} errors");
    assert_eq!(u64::from(tally.hardware_errors), bad);
    assert_shares_genuine(&tally);
    assert!(d.counters(0).expect("chip").error_rate() > 0.3);
    assert!(
        tally.cores.worst_core(0).is_some(),
        "errors are attributed to cores"
    );
}

#[tokio::test]
async fn duplicates_and_line_garbage_are_survived() {
    let faults = Faults {
        duplicate_nonce_rate: 1.0,
        bit_flip_rate: 0.002,
        ..Faults::default()
    };
    let (mut chain, mut b) = up(ChipModel::Bm1397, 2, faults).await;
    let mut d = dispatcher(&chain);
    let tally = mine(&mut chain, &mut b, &mut d, &[work(3, 0x2000_0000)], 300.0).await;
    assert_shares_genuine(&tally);
    assert!(tally.duplicates > 20, "{tally:?}");
    assert!(
        chain.decoder_stats().errors() > 0,
        "garbage reached the decoder"
    );
    // A flipped bit inside a nonce frame fails its CRC; one that slips through is a hardware error.
    assert!(tally.shares.len() > 5);
}

async fn set_chip_ticket(chain: &mut Chain<SimPort>, ticket: f64) {
    let mask = bm13xx::TicketDifficulty::at_most(ticket)
        .expect("valid")
        .mask();
    chain
        .write_frame(
            bm13xx::Command::write(bm13xx::Destination::All, mask)
                .encode()
                .as_bytes(),
        )
        .await
        .expect("writes");
}

/// Tuning lowers the ticket to count more nonces per chip, and raises it after: the hash rate
/// credited stays the same across the change, and nonces still on the wire from the old mask are
/// not mistaken for hardware errors until the ticket settles.
#[tokio::test]
async fn a_ticket_change_keeps_the_credited_hash_rate_and_its_nonces_in_flight() {
    let (mut chain, mut b) = up(ChipModel::Bm1397, 4, Faults::default()).await;
    let mut d = dispatcher(&chain);
    let jobs: Vec<Work> = (1..=8).map(|i| work(i, 0x2000_0000)).collect();
    let at_256 = mine(&mut chain, &mut b, &mut d, &jobs, 120.0).await;
    let credited_256 = d.credited_total();

    set_chip_ticket(&mut chain, 16.0).await;
    d.set_ticket_difficulty(16.0);
    let at_16 = mine(&mut chain, &mut b, &mut d, &jobs, 120.0).await;
    let credited_16 = d.credited_total() - credited_256;
    assert_eq!(at_16.hardware_errors, 0);
    let more = f64::from(at_16.valid) / f64::from(at_256.valid.max(1));
    assert!(
        (8.0..32.0).contains(&more),
        "{more}× the nonces at ticket 16"
    );
    let ratio = credited_16 / credited_256;
    assert!(
        (0.75..1.33).contains(&ratio),
        "credited hash rate moved {ratio}×"
    );

    // The dispatcher goes back to 256 while the chips (as if their mask write were still on the
    // way) keep filtering at 16: nothing they send is an error yet.
    d.set_ticket_difficulty(256.0);
    let in_flight = mine(&mut chain, &mut b, &mut d, &jobs, 10.0).await;
    assert!(in_flight.valid > 0);
    assert_eq!(in_flight.hardware_errors, 0);
    // Settled: a nonce under the ticket is an error again, which is what the floor held off.
    d.settle_ticket();
    let settled = mine(&mut chain, &mut b, &mut d, &jobs, 10.0).await;
    assert!(
        settled.hardware_errors > 0,
        "nonces under the settled ticket are errors"
    );
}
