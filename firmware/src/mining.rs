//! One chain's mining: where work comes from, the job table and nonce checks, the counts, and
//! shares on their way to the pool.

use std::collections::VecDeque;
use std::time::Duration;

use bm13xx::{BlockHeader, NonceLayout, Response, VersionMask};
use hashboard::mining::{Dispatcher, NonceOutcome, Share, Work};
use stratum::Accounting;
use tracing::{debug, warn};

use crate::board::Hardware;
use crate::pool::{PoolLink, Submission};
use crate::snapshot::PoolRow;

/// Locally generated work's share difficulty (before a simulated chain's scaling).
const LOCAL_POOL_DIFFICULTY: f64 = 1024.0;
/// The longest a chain goes without fresh work (chips with version rolling last minutes per job).
const MAX_JOB_INTERVAL: Duration = Duration::from_secs(5);
/// The shortest: the loop's own granularity.
const MIN_JOB_INTERVAL: Duration = Duration::from_millis(1);

/// How often a chain needs new work: half the time its chips take to scan a job (at the
/// board's highest clock, so no clock change outruns it), in wall time when the chips run
/// `speed` times faster. A BM1397 chain with four midstates is through a job in ~5 ms; without
/// new work it would idle until the next one.
pub fn job_interval(board: &hashboard::board::BoardDescription, speed: f64) -> Duration {
    let versions = bm13xx::versions_per_job(board.model, true);
    let scan_s = bm13xx::full_scan_seconds(
        board.model,
        board.max_frequency,
        board.chips_per_chain,
        versions,
    );
    let wall_s = scan_s / 2.0 / speed.max(f64::MIN_POSITIVE);
    if wall_s.is_finite() {
        Duration::from_secs_f64(wall_s.min(MAX_JOB_INTERVAL.as_secs_f64())).max(MIN_JOB_INTERVAL)
    } else {
        MAX_JOB_INTERVAL
    }
}

/// Where the chips' work comes from.
#[derive(Debug)]
pub enum WorkSource {
    /// Generated here: exercises the board without a network.
    Local,
    /// From a Stratum pool; shares go back to it.
    Pool(PoolLink),
}

impl WorkSource {
    /// The pool's verdicts so far; none for local work.
    pub fn accounting(&self) -> Accounting {
        match self {
            WorkSource::Pool(link) => *link.accounting.borrow(),
            WorkSource::Local => Accounting::default(),
        }
    }

    pub fn pool_rows(&self) -> Vec<PoolRow> {
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

/// What the nonces turned out to be.
#[derive(Debug, Default)]
pub struct Tally {
    pub nonces: u64,
    /// The work the valid nonces stand for, in difficulty-1 units (2^32 hashes each): the hash
    /// rate's measure, right across ticket changes.
    pub work: f64,
    pub shares: u64,
    pub share_difficulty: f64,
    pub best_difficulty: f64,
    pub hardware_errors: u64,
    pub duplicates: u64,
    pub stale: u64,
}

impl Tally {
    /// Counts one nonce; returns it when it is a share for the pool.
    pub fn record(&mut self, outcome: NonceOutcome) -> Option<Share> {
        match outcome {
            NonceOutcome::Share(share) => {
                self.nonces += 1;
                self.shares += 1;
                self.share_difficulty += share.difficulty;
                self.best_difficulty = self.best_difficulty.max(share.difficulty);
                return Some(share);
            }
            NonceOutcome::Valid { .. } => self.nonces += 1,
            NonceOutcome::HardwareError { chip_index } => {
                // Counted for telemetry and the APIs; the tuner provokes them on purpose, so a
                // line per error would drown the log.
                self.hardware_errors += 1;
                debug!(chip_index, "hardware error");
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

/// Hands the pool's new work to the chains in turn: the pool task sends one item per chain per
/// event, each with its own extranonce2.
pub fn deal_pool_work<'a>(source: &mut WorkSource, chains: impl Iterator<Item = &'a mut Mining>) {
    let WorkSource::Pool(link) = source else {
        return;
    };
    let mut chains: Vec<&mut Mining> = chains.collect();
    let count = chains.len();
    if count == 0 {
        return;
    }
    let mut next = 0;
    while let Ok(work) = link.work.try_recv() {
        if let Some(chain) = chains.get_mut(next % count) {
            chain.held_work = Some(work);
        }
        next += 1;
    }
}

/// Local work: a fresh header per job and per chain, so every job is different work.
fn local_work(chain: u32, n: u64) -> Work {
    let mut merkle_root = [0u8; 32];
    merkle_root[..8].copy_from_slice(&n.to_le_bytes());
    merkle_root[8..12].copy_from_slice(&chain.to_le_bytes());
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

/// One chain's mining state: its job table and nonce checks, its counts, its next work.
#[derive(Debug)]
pub struct Mining {
    /// Which chain: local work differs per chain, so no two chains hash the same header.
    chain: u32,
    dispatcher: Option<Dispatcher>,
    pub ticket: f64,
    scale: f64,
    pub tally: Tally,
    job: u64,
    sent_jobs: VecDeque<(u64, String, Vec<u8>)>,
    /// The freshest pool work for this chain, sent when the chain can take it.
    pub held_work: Option<stratum::PoolWork>,
    next_local_job: tokio::time::Instant,
    job_interval: Duration,
    /// Chip time after which nonces under an old, lower ticket stop passing.
    ticket_settles_at_s: Option<f64>,
}

impl Mining {
    pub fn new(chain: u32, ticket: f64, scale: f64, job_interval: Duration) -> Self {
        Self {
            chain,
            dispatcher: None,
            ticket,
            scale,
            tally: Tally::default(),
            job: 0,
            sent_jobs: VecDeque::with_capacity(REMEMBERED_JOBS),
            held_work: None,
            next_local_job: tokio::time::Instant::now(),
            job_interval,
            ticket_settles_at_s: None,
        }
    }

    /// A (re)initialised chain has forgotten every job: start over with fresh work at once.
    pub fn restart(&mut self, board: &impl Hardware) {
        self.dispatcher = board.addressing().map(|addressing| {
            Dispatcher::new(
                board.description().model,
                NonceLayout::ESP_MINER,
                addressing,
                self.ticket,
                self.scale,
            )
        });
        self.next_local_job = tokio::time::Instant::now();
    }

    /// The next work for the chips, if any is due. Pool work reaches `held_work` through
    /// [`deal_pool_work`].
    pub fn fresh_work(&mut self, source: &WorkSource, asleep: bool) -> Option<Work> {
        let now = tokio::time::Instant::now();
        let pool_work = match source {
            WorkSource::Local if asleep || now < self.next_local_job => return None,
            WorkSource::Local => {
                self.next_local_job = now + self.job_interval;
                return Some(local_work(self.chain, self.job + 1));
            }
            WorkSource::Pool(_) if asleep => return None,
            WorkSource::Pool(_) => self.held_work.take()?,
        };
        let work = Work {
            work_id: self.job + 1,
            header: pool_work.header,
            version_mask: VersionMask::new(pool_work.version_mask),
            pool_difficulty: pool_work.difficulty,
        };
        if self.sent_jobs.len() == REMEMBERED_JOBS {
            self.sent_jobs.pop_front();
        }
        self.sent_jobs
            .push_back((work.work_id, pool_work.job_id, pool_work.extranonce2));
        Some(work)
    }

    /// Jobs sent to the chips so far.
    pub fn jobs(&self) -> u64 {
        self.job
    }

    /// Sends work to the chips through the dispatcher's job table; the frame for the UART.
    pub fn dispatch(&mut self, work: Work) -> Option<bm13xx::JobFrame> {
        let dispatcher = self.dispatcher.as_mut()?;
        self.job += 1;
        Some(dispatcher.dispatch(work))
    }

    pub fn take(&mut self, response: Response, source: &WorkSource) {
        let (Response::Nonce(nonce), Some(dispatcher)) = (response, &mut self.dispatcher) else {
            return;
        };
        let credited = dispatcher.credited_total();
        let outcome = dispatcher.check(&nonce);
        self.tally.work += dispatcher.credited_total() - credited;
        if let Some(share) = self.tally.record(outcome)
            && let WorkSource::Pool(link) = source
        {
            submit(link, &self.sent_jobs, &share);
        }
    }

    /// The chips were told to filter at `ticket`: nonces are checked and credited at it; those
    /// found under the old mask still pass until chip time `settles_at_s`.
    pub fn set_ticket(&mut self, ticket: f64, settles_at_s: f64) {
        self.ticket = ticket;
        if let Some(dispatcher) = &mut self.dispatcher {
            dispatcher.set_ticket_difficulty(ticket);
        }
        self.ticket_settles_at_s = Some(settles_at_s);
    }

    pub fn settle_ticket_if_due(&mut self, chip_s: f64) {
        if self.ticket_settles_at_s.is_some_and(|at| chip_s >= at) {
            self.ticket_settles_at_s = None;
            if let Some(dispatcher) = &mut self.dispatcher {
                dispatcher.settle_ticket();
            }
        }
    }

    /// Each chip's (valid, erring) nonces since the chain was last (re)initialised.
    pub fn chip_counts(&self, chips: u32) -> Vec<(u32, u32)> {
        (0..chips)
            .map(|chip| {
                self.dispatcher
                    .as_ref()
                    .and_then(|d| d.counters(chip))
                    .map_or((0, 0), |c| (c.valid, c.hardware_errors))
            })
            .collect()
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
