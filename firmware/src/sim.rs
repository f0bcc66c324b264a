//! `--sim`: the real board code (hashboard bring-up, job dispatch, nonce validation) on an
//! in-process simulated board, mining locally generated work — the whole pipeline, no hardware
//! and no network.

use std::time::Duration;

use bm13xx::{BlockHeader, InitConfig, NonceLayout, Response, TicketDifficulty, VersionMask};
use chipsim::{ChainConfig, ChainSim, SimLink};
use hashboard::board::BoardDescription;
use hashboard::chain::Chain;
use hashboard::mining::{Dispatcher, NonceOutcome, Work, estimate_hashrate};
use hashboard::sim::SimTimeDelay;
use serde::Serialize;

use crate::config::MiningSettings;
use tracing::{info, warn};

/// The simulator's share floor: nonces are genuine at ticket × 2^-26.
const FLOOR_LOG2: u32 = 26;
/// Locally generated work's share difficulty (before the floor's scaling).
const LOCAL_POOL_DIFFICULTY: f64 = 1024.0;
/// How often fresh local work goes to the chips.
const JOB_INTERVAL: Duration = Duration::from_secs(5);
/// How often the daemon logs its state.
const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// While mining, the simulator follows the wall clock and timeouts are real.
struct TokioDelay;

impl embedded_hal_async::delay::DelayNs for TokioDelay {
    async fn delay_ns(&mut self, ns: u32) {
        tokio::time::sleep(Duration::from_nanos(u64::from(ns))).await;
    }
}

/// How a run went, printed as one JSON line at the end.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub board: &'static str,
    pub chips: u32,
    pub simulated_s: f64,
    pub nonces: u64,
    pub shares: u64,
    pub hardware_errors: u64,
    pub duplicates: u64,
    pub hashrate_ths: f64,
    pub expected_ths: f64,
}

/// Local work: a fresh header per job, so every job is different work.
fn local_work(n: u64) -> Work {
    let mut merkle_root = [0u8; 32];
    merkle_root[..8].copy_from_slice(&n.to_le_bytes());
    Work {
        work_id: n,
        header: BlockHeader {
            version: 0x2000_0000,
            prev_hash: [0x42; 32],
            merkle_root,
            ntime: 1_767_225_600 + n as u32,
            nbits: 0x1702_4a86,
            nonce: 0,
        },
        version_mask: VersionMask::BIP320,
        pool_difficulty: LOCAL_POOL_DIFFICULTY,
    }
}

/// Brings a simulated board up with the real bring-up code and mines for `duration` of wall time
/// (or until `stop` resolves), with simulated time `speed` times faster.
pub async fn run(
    board: &'static BoardDescription,
    settings: MiningSettings,
    seed: u64,
    speed: f64,
    duration: Option<Duration>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Summary, String> {
    let chips = board.chips_per_chain;
    let mut chain_config = ChainConfig::new(board.model, chips, seed);
    chain_config.share_floor_log2 = FLOOR_LOG2;
    let sim = ChainSim::new(chain_config).map_err(|e| e.to_string())?;
    let (uart, control) = SimLink::open(sim);
    let mut reset = control.reset_pin();
    let mut config = InitConfig::esp_miner(board.model, chips);
    config.frequency = settings.frequency;
    config.ticket =
        TicketDifficulty::at_most(settings.ticket_difficulty).ok_or("bad ticket difficulty")?;
    // The chips round the ticket down to a power of two; validation must use what they filter at.
    let ticket = config.ticket.value();
    let mut chain = Chain::bring_up(uart, &mut reset, &mut SimTimeDelay(control.clone()), config)
        .await
        .map_err(|e| format!("bring-up failed: {e}"))?;
    info!(
        board = board.name,
        chips,
        baud = chain.baud(),
        mhz = settings.frequency.mhz(),
        ticket,
        "chain up"
    );

    let scale = 1.0 / f64::from(1u32 << FLOOR_LOG2);
    let mut dispatcher = Dispatcher::new(
        board.model,
        NonceLayout::ESP_MINER,
        chain.addressing(),
        ticket,
        scale,
    );
    let clock = tokio::spawn(
        control
            .clone()
            .run_realtime(speed, Duration::from_millis(10)),
    );
    let start_s = control.with_sim(|s| s.now_s());
    let mut next_job = tokio::time::Instant::now();
    let mut next_report = tokio::time::Instant::now() + REPORT_INTERVAL;
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let (mut nonces, mut shares, mut errors, mut duplicates, mut job) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    tokio::pin!(stop);
    let mut wait = TokioDelay;
    loop {
        let now = tokio::time::Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        if now >= next_job {
            job += 1;
            let frame = dispatcher.dispatch(local_work(job));
            chain
                .write_frame(frame.as_bytes())
                .await
                .map_err(|e| format!("{e:?}"))?;
            next_job = now + JOB_INTERVAL;
        }
        if now >= next_report {
            let seconds = control.with_sim(|s| s.now_s()) - start_s;
            let rate = estimate_hashrate(nonces as u32, ticket, seconds);
            info!(
                nonces,
                shares,
                hardware_errors = errors,
                hashrate_ths = rate.map_or(0.0, |r| r.hashes_per_second / 1e12),
                "mining"
            );
            next_report = now + REPORT_INTERVAL;
        }
        let response = tokio::select! {
            r = chain.next_response(&mut wait, 100) => r.map_err(|e| format!("{e:?}"))?,
            () = &mut stop => break,
        };
        let Some(Response::Nonce(nonce)) = response else {
            continue;
        };
        match dispatcher.check(&nonce) {
            NonceOutcome::Share(_) => {
                nonces += 1;
                shares += 1;
            }
            NonceOutcome::Valid { .. } => nonces += 1,
            NonceOutcome::HardwareError { chip_index } => {
                errors += 1;
                warn!(chip_index, "hardware error");
            }
            NonceOutcome::Duplicate { .. } => duplicates += 1,
            NonceOutcome::Stale { job_id } => warn!(job_id, "nonce for a job no longer known"),
        }
    }
    clock.abort();
    let simulated_s = control.with_sim(|s| s.now_s()) - start_s;
    let expected = bm13xx::expected_hashrate(board.model, settings.frequency, chips).terahashes();
    Ok(Summary {
        board: board.name,
        chips,
        simulated_s,
        nonces,
        shares,
        hardware_errors: errors,
        duplicates,
        hashrate_ths: estimate_hashrate(nonces as u32, ticket, simulated_s)
            .map_or(0.0, |r| r.hashes_per_second / 1e12),
        expected_ths: expected,
    })
}
