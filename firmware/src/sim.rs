//! `--sim`: the real board code (hashboard bring-up, job dispatch, nonce validation) on an
//! in-process simulated board, mining locally generated work or a pool's — the whole pipeline
//! with no hardware. The loop owns the chain; the pool and the API are tasks it talks to over
//! channels.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bm13xx::{BlockHeader, InitConfig, NonceLayout, Response, TicketDifficulty, VersionMask};
use chipsim::{ChainConfig, ChainSim, SimLink};
use hashboard::board::BoardDescription;
use hashboard::chain::Chain;
use hashboard::mining::{Dispatcher, NonceOutcome, Share, Work, estimate_hashrate};
use hashboard::sim::SimTimeDelay;
use serde::Serialize;
use stratum::Accounting;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::cgminer::{self, ChainRow, PoolRow, Snapshot};
use crate::config::MiningSettings;
use crate::pool::{PoolLink, Submission};

/// The simulator's share floor: nonces are genuine at ticket × 2^-26.
const FLOOR_LOG2: u32 = 26;
/// Locally generated work's share difficulty (before the floor's scaling).
const LOCAL_POOL_DIFFICULTY: f64 = 1024.0;
/// How often fresh local work goes to the chips.
pub const JOB_INTERVAL: Duration = Duration::from_secs(5);
/// How often the daemon logs its state.
const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// While mining, the simulator follows the wall clock and timeouts are real.
struct TokioDelay;

impl embedded_hal_async::delay::DelayNs for TokioDelay {
    async fn delay_ns(&mut self, ns: u32) {
        tokio::time::sleep(Duration::from_nanos(u64::from(ns))).await;
    }
}

/// Where the chips' work comes from.
pub enum WorkSource {
    /// Generated here: exercises the board without a network.
    Local,
    /// From a Stratum pool; shares go back to it.
    Pool(PoolLink),
}

impl WorkSource {
    /// The pool's verdicts so far; none for local work.
    fn accounting(&self) -> Accounting {
        match self {
            WorkSource::Pool(link) => *link.accounting.borrow(),
            WorkSource::Local => Accounting::default(),
        }
    }

    fn pool_rows(&self) -> Vec<PoolRow> {
        let WorkSource::Pool(link) = self else {
            return Vec::new();
        };
        let active = *link.active.borrow();
        link.pools
            .iter()
            .enumerate()
            .map(|(i, (url, user))| PoolRow {
                url: url.clone(),
                user: user.clone(),
                alive: active == Some(i),
            })
            .collect()
    }
}

/// The chain is drained when it has been quiet this long.
const DRAIN_QUIET_MS: u32 = 50;

/// How long a stopping daemon waits for its last shares to reach the pool.
const POOL_FLUSH_GRACE: Duration = Duration::from_secs(2);

/// What the nonces turned out to be.
#[derive(Debug, Default)]
struct Tally {
    nonces: u64,
    shares: u64,
    hardware_errors: u64,
    duplicates: u64,
    stale: u64,
}

impl Tally {
    /// Counts one nonce; returns it when it is a share for the pool.
    fn record(&mut self, outcome: NonceOutcome) -> Option<Share> {
        match outcome {
            NonceOutcome::Share(share) => {
                self.nonces += 1;
                self.shares += 1;
                return Some(share);
            }
            NonceOutcome::Valid { .. } => self.nonces += 1,
            NonceOutcome::HardwareError { chip_index } => {
                self.hardware_errors += 1;
                warn!(chip_index, "hardware error");
            }
            NonceOutcome::Duplicate { .. } => self.duplicates += 1,
            NonceOutcome::Stale { job_id } => {
                self.stale += 1;
                warn!(job_id, "nonce for a job no longer known");
            }
        }
        None
    }
}

/// Jobs remembered for submitting their shares; the chips forget older ones sooner.
const REMEMBERED_JOBS: usize = 256;

/// How the simulated run goes.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    pub seed: u64,
    /// Simulated seconds per wall second.
    pub speed: f64,
    /// Wall time to run; until stopped when absent.
    pub duration: Option<Duration>,
    /// Where to serve the cgminer API; not served when absent.
    pub api_listen: Option<SocketAddr>,
}

/// How often the APIs' snapshot is refreshed.
const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(1);
/// The window of cgminer's "MHS 5s".
const SHORT_RATE_WINDOW: Duration = Duration::from_secs(5);

/// Hash rate over a recent window of wall time, from (wall time, simulated seconds, nonces)
/// samples, so a stall shows within seconds instead of diluting a run-long average.
#[derive(Debug, Default)]
struct RateWindow {
    samples: VecDeque<(tokio::time::Instant, f64, u64)>,
}

impl RateWindow {
    fn add(&mut self, now: tokio::time::Instant, simulated_s: f64, nonces: u64) {
        self.samples.push_back((now, simulated_s, nonces));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(t, _, _)| now - *t >= SHORT_RATE_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    fn hashes_per_second(&self, ticket: f64) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some(&(_, s0, n0)), Some(&(_, s1, n1))) if s1 > s0 => {
                estimate_hashrate((n1 - n0) as u32, ticket, s1 - s0)
                    .map_or(0.0, |r| r.hashes_per_second)
            }
            _ => 0.0,
        }
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
    pub stale: u64,
    pub hashrate_ths: f64,
    pub expected_ths: f64,
    /// The simulator's side: nonces it sent, hottest chip, chips in thermal shutdown now.
    pub sim_nonces_sent: u64,
    pub hottest_chip_c: f64,
    pub chips_overheated: usize,
    /// Bytes and frames the daemon's UART decoder could not use (garbage, CRC, truncation).
    pub uart_errors: u64,
    /// The pool's verdicts, when mining pool work.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<Accounting>,
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
    mut source: WorkSource,
    options: RunOptions,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Summary, String> {
    let RunOptions {
        seed,
        speed,
        duration,
        api_listen,
    } = options;
    let (snapshot_tx, snapshots) = watch::channel(Snapshot {
        board: board.name,
        ..Snapshot::default()
    });
    let api = api_listen.map(|address| tokio::spawn(cgminer::serve(address, snapshots)));
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
    let started = tokio::time::Instant::now();
    let mut next_snapshot = started;
    let mut rates = RateWindow::default();
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let mut tally = Tally::default();
    let mut job = 0u64;
    tokio::pin!(stop);
    let mut wait = TokioDelay;
    let mut sent_jobs: VecDeque<(u64, String, Vec<u8>)> = VecDeque::with_capacity(REMEMBERED_JOBS);
    loop {
        let now = tokio::time::Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        let fresh = match &mut source {
            WorkSource::Local if now >= next_job => {
                next_job = now + JOB_INTERVAL;
                Some(local_work(job + 1))
            }
            WorkSource::Local => None,
            WorkSource::Pool(link) => link.work.try_recv().ok().map(|pool_work| {
                let work = Work {
                    work_id: job + 1,
                    header: pool_work.header,
                    version_mask: VersionMask::new(pool_work.version_mask),
                    pool_difficulty: pool_work.difficulty,
                };
                if sent_jobs.len() == REMEMBERED_JOBS {
                    sent_jobs.pop_front();
                }
                sent_jobs.push_back((work.work_id, pool_work.job_id, pool_work.extranonce2));
                work
            }),
        };
        if let Some(work) = fresh {
            job += 1;
            let frame = dispatcher.dispatch(work);
            chain
                .write_frame(frame.as_bytes())
                .await
                .map_err(|e| format!("{e:?}"))?;
        }
        if now >= next_snapshot {
            let (now_s, hottest_c) = control.with_sim(|s| (s.now_s(), hottest_chip(s)));
            let simulated_s = now_s - start_s;
            rates.add(now, simulated_s, tally.nonces);
            let mhs_av = estimate_hashrate(tally.nonces as u32, ticket, simulated_s)
                .map_or(0.0, |r| r.hashes_per_second / 1e6);
            let pool_accounting = source.accounting();
            snapshot_tx.send_replace(Snapshot {
                elapsed_s: (now - started).as_secs(),
                mhs_av,
                mhs_5s: rates.hashes_per_second(ticket) / 1e6,
                accepted: pool_accounting.accepted,
                rejected: pool_accounting.rejected,
                stale: pool_accounting.stale + tally.stale,
                hardware_errors: tally.hardware_errors,
                nonces: tally.nonces,
                pools: source.pool_rows(),
                chains: vec![ChainRow {
                    chips,
                    model: board.model.name(),
                    frequency_mhz: settings.frequency.mhz(),
                    temperature_c: hottest_c,
                    mhs_av,
                    hardware_errors: tally.hardware_errors,
                }],
                board: board.name,
            });
            next_snapshot = now + SNAPSHOT_INTERVAL;
        }
        if now >= next_report {
            let seconds = control.with_sim(|s| s.now_s()) - start_s;
            let rate = estimate_hashrate(tally.nonces as u32, ticket, seconds);
            info!(
                nonces = tally.nonces,
                shares = tally.shares,
                hardware_errors = tally.hardware_errors,
                hashrate_ths = rate.map_or(0.0, |r| r.hashes_per_second / 1e12),
                "mining"
            );
            next_report = now + REPORT_INTERVAL;
        }
        let response = tokio::select! {
            r = chain.next_response(&mut wait, 100) => r.map_err(|e| format!("{e:?}"))?,
            () = &mut stop => break,
        };
        if let Some(response) = response {
            take_response(response, &mut dispatcher, &mut tally, &source, &sent_jobs);
        }
    }
    // Stop the chips' clock, then take what they already sent: a stop loses no found work, and
    // the counts reconcile with what the chain sent.
    clock.abort();
    let _ = clock.await;
    if let Some(api) = api {
        api.abort();
    }
    while let Some(response) = chain
        .next_response(&mut wait, DRAIN_QUIET_MS)
        .await
        .map_err(|e| format!("{e:?}"))?
    {
        take_response(response, &mut dispatcher, &mut tally, &source, &sent_jobs);
    }
    let (now_s, sim_nonces_sent, hottest_chip_c, chips_overheated) = control.with_sim(|s| {
        (
            s.now_s(),
            s.stats().nonces_sent,
            hottest_chip(s),
            s.chips().iter().filter(|c| c.thermal.overheated).count(),
        )
    });
    let simulated_s = now_s - start_s;
    let expected = bm13xx::expected_hashrate(board.model, settings.frequency, chips).terahashes();
    Ok(Summary {
        board: board.name,
        chips,
        simulated_s,
        nonces: tally.nonces,
        shares: tally.shares,
        hardware_errors: tally.hardware_errors,
        duplicates: tally.duplicates,
        stale: tally.stale,
        hashrate_ths: estimate_hashrate(tally.nonces as u32, ticket, simulated_s)
            .map_or(0.0, |r| r.hashes_per_second / 1e12),
        expected_ths: expected,
        sim_nonces_sent,
        hottest_chip_c,
        chips_overheated,
        uart_errors: {
            let stats = chain.decoder_stats();
            stats.preamble_errors + stats.crc_errors + stats.truncated + stats.length_errors
        },
        pool: match source {
            WorkSource::Pool(link) => Some(link.finish(POOL_FLUSH_GRACE).await),
            WorkSource::Local => None,
        },
    })
}

/// In `--sim` the simulator's die temperatures stand in for the board's sensor.
fn hottest_chip(sim: &ChainSim) -> f64 {
    sim.chips()
        .iter()
        .map(|c| c.thermal.temp_c)
        .fold(f64::MIN, f64::max)
}

/// Classifies a response from the chain; a share for pool work goes to the pool.
fn take_response(
    response: Response,
    dispatcher: &mut Dispatcher,
    tally: &mut Tally,
    source: &WorkSource,
    sent_jobs: &VecDeque<(u64, String, Vec<u8>)>,
) {
    if let Response::Nonce(nonce) = response
        && let Some(share) = tally.record(dispatcher.check(&nonce))
        && let WorkSource::Pool(link) = source
    {
        submit(link, sent_jobs, &share);
    }
}

fn submit(link: &PoolLink, sent_jobs: &VecDeque<(u64, String, Vec<u8>)>, share: &Share) {
    let Some((_, job_id, extranonce2)) = sent_jobs.iter().find(|(id, _, _)| *id == share.work_id)
    else {
        warn!(
            work_id = share.work_id,
            "share for work no longer remembered"
        );
        return;
    };
    let submission = Submission {
        job_id: job_id.clone(),
        extranonce2: extranonce2.clone(),
        ntime: share.ntime,
        nonce: share.nonce,
        version: share.version,
    };
    if link.shares.send(submission).is_err() {
        warn!("the pool task has stopped; share dropped");
    }
}
