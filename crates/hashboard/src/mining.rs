//! Work in, job frames out, nonces back, shares out — the sans-IO half of mining.
//!
//! [`Dispatcher`] turns work into job frames with the model's job-id rotation and remembers each in
//! a 128-slot table keyed by the id the chips echo. [`Dispatcher::check`] takes a nonce response
//! back to the header it solves — with the version rolled for the midstate (BM1397) or ORed with
//! the returned version bits (BM1366+) — hashes it, and sorts it: a share for the pool, a valid
//! nonce below the pool's difficulty, a hardware error, a duplicate, or stale.

use bm13xx::{
    BlockHeader, ChipAddressing, ChipModel, HeaderJob, Job, JobFormat, JobFrame, JobId,
    MidstateJob, NonceFields, NonceLayout, NonceResponse, VersionMask, decode_nonce,
};

/// The most chips on one chain (8-bit addresses).
pub const MAX_CHIPS: usize = 256;
/// Nonces remembered for duplicate detection (chips repeat nonces; ESP-Miner drops the repeat).
const RECENT: usize = 64;

/// One unit of work from the pool side: a header to hash (merkle root already built for an
/// extranonce), the version bits the pool lets us roll, and the difficulty it wants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Work {
    /// The caller's reference (pool job and extranonce), echoed in shares.
    pub work_id: u64,
    pub header: BlockHeader,
    pub version_mask: VersionMask,
    pub pool_difficulty: f64,
}

/// A nonce good enough for the pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share {
    pub work_id: u64,
    pub nonce: u32,
    /// The full version that was hashed; the pool gets `version ^ work version` as rolled bits.
    pub version: u32,
    pub ntime: u32,
    pub difficulty: f64,
    pub chip_index: u32,
}

/// What a nonce turned out to be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NonceOutcome {
    /// Meets the pool's difficulty.
    Share(Share),
    /// A genuine solution below the pool's difficulty: counts towards hash rate.
    Valid { chip_index: u32, difficulty: f64 },
    /// Does not solve its job: the chip erred.
    HardwareError { chip_index: u32 },
    /// Seen already (chips sometimes repeat nonces).
    Duplicate { chip_index: u32 },
    /// For a job id with no job behind it (overwritten, or never sent).
    Stale { job_id: u8 },
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    work: Work,
    job: Job,
}

/// Per-chip counters, for measurement and the tuner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChipCounters {
    pub valid: u32,
    pub hardware_errors: u32,
    /// Sum of the difficulty credited for valid nonces (ticket difficulty each).
    pub credited_difficulty: f64,
}

impl ChipCounters {
    const ZERO: Self = Self {
        valid: 0,
        hardware_errors: 0,
        credited_difficulty: 0.0,
    };

    /// Share of this chip's nonces that were wrong.
    pub fn error_rate(&self) -> f64 {
        let total = self.valid + self.hardware_errors;
        if total == 0 {
            0.0
        } else {
            f64::from(self.hardware_errors) / f64::from(total)
        }
    }
}

/// Job dispatch and nonce checking for one chain.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    model: ChipModel,
    layout: NonceLayout,
    addressing: ChipAddressing,
    /// 1 in production; the simulator's share floor (2^-k) in tests. Every difficulty the chips
    /// work at is scaled by it.
    difficulty_scale: f64,
    /// The ticket difficulty the chips filter at, before scaling; nonces below it are errors.
    ticket_difficulty: f64,
    /// The lowest ticket a nonce still on the wire may have been found under: below the ticket
    /// just after it was raised, until [`Dispatcher::settle_ticket`].
    floor_difficulty: f64,
    /// Difficulty credited over every chip, for hash rate that stays right across ticket changes.
    credited_total: f64,
    next_id: JobId,
    slots: [Option<Slot>; 128],
    recent: [(u8, u32, u32); RECENT],
    recent_next: usize,
    counters: [ChipCounters; MAX_CHIPS],
    duplicates: u32,
    stale: u32,
}

impl Dispatcher {
    pub fn new(
        model: ChipModel,
        layout: NonceLayout,
        addressing: ChipAddressing,
        ticket_difficulty: f64,
        difficulty_scale: f64,
    ) -> Self {
        Self {
            model,
            layout,
            addressing,
            difficulty_scale,
            ticket_difficulty,
            floor_difficulty: ticket_difficulty,
            credited_total: 0.0,
            // The first job gets the id after 0, as ESP-Miner's rotation starts.
            next_id: JobId::ZERO.next(model),
            slots: [None; 128],
            recent: [(0xFF, 0, 0); RECENT],
            recent_next: 0,
            counters: [ChipCounters::ZERO; MAX_CHIPS],
            duplicates: 0,
            stale: 0,
        }
    }

    /// The job frame for `work`, remembered under the next job id. BM1397 gets four midstates
    /// rolled within the pool's mask (AsicBoost) when the mask allows it; BM1366+ roll the
    /// version in hardware from the full header.
    pub fn dispatch(&mut self, work: Work) -> JobFrame {
        let id = self.next_id;
        self.next_id = id.next(self.model);
        let job = match self.model.job_format() {
            JobFormat::Midstate => {
                let rolling = (work.version_mask.bits() != 0).then_some(work.version_mask);
                Job::Midstate(MidstateJob::from_header(id, &work.header, rolling))
            }
            JobFormat::FullHeader => Job::Header(HeaderJob::new(id, &work.header)),
        };
        self.slots[usize::from(id.value())] = Some(Slot { work, job });
        job.encode()
    }

    /// Sorts a nonce the chain returned.
    pub fn check(&mut self, response: &NonceResponse) -> NonceOutcome {
        self.check_detailed(response).0
    }

    /// Sorts a nonce and also returns its decoded fields (core id, small core, …) for per-core
    /// statistics.
    pub fn check_detailed(&mut self, response: &NonceResponse) -> (NonceOutcome, NonceFields) {
        let fields = decode_nonce(self.model, response, self.layout, self.addressing);
        (self.sort(&fields), fields)
    }

    fn sort(&mut self, fields: &NonceFields) -> NonceOutcome {
        let chip_index = fields.chip_index;
        let Some(slot) = self
            .slots
            .get(usize::from(fields.job_id))
            .copied()
            .flatten()
        else {
            self.stale += 1;
            return NonceOutcome::Stale {
                job_id: fields.job_id,
            };
        };
        let version = self.version_of(&slot, fields);
        let key = (fields.job_id, fields.nonce, version);
        if self.recent.contains(&key) {
            self.duplicates += 1;
            return NonceOutcome::Duplicate { chip_index };
        }
        self.recent[self.recent_next] = key;
        self.recent_next = (self.recent_next + 1) % RECENT;

        let header = BlockHeader {
            version,
            nonce: fields.nonce,
            ..slot.work.header
        };
        let difficulty = header.share_difficulty() / self.difficulty_scale;
        let counters = self.counters.get_mut(chip_index as usize);
        // Chips only return nonces that pass their ticket mask: 32 + k leading zero bits, which is
        // difficulty 2^k × (1 − 2^-16) at the least. A nonce below that did not solve its job.
        let passes = |ticket: f64| difficulty >= ticket * (65_535.0 / 65_536.0);
        if !passes(self.floor_difficulty) {
            if let Some(c) = counters {
                c.hardware_errors += 1;
            }
            return NonceOutcome::HardwareError { chip_index };
        }
        let credit = if passes(self.ticket_difficulty) {
            self.ticket_difficulty
        } else {
            self.floor_difficulty
        };
        self.credited_total += credit;
        if let Some(c) = counters {
            c.valid += 1;
            c.credited_difficulty += credit;
        }
        if difficulty >= slot.work.pool_difficulty {
            NonceOutcome::Share(Share {
                work_id: slot.work.work_id,
                nonce: fields.nonce,
                version,
                ntime: header.ntime,
                difficulty,
                chip_index,
            })
        } else {
            NonceOutcome::Valid {
                chip_index,
                difficulty,
            }
        }
    }

    fn version_of(&self, slot: &Slot, fields: &NonceFields) -> u32 {
        match (&slot.job, fields.version_bits) {
            // BM1366+: the chip reports the rolled bits to OR in (protocol.md §3.3).
            (Job::Header(_), Some(bits)) => slot.work.header.version | bits,
            (Job::Header(_), None) => slot.work.header.version,
            // BM1397: midstate k was computed from the version rolled k times.
            (Job::Midstate(m), _) => {
                let k = u32::from(fields.midstate.unwrap_or(0))
                    .min(u32::from(m.midstate_count.max(1)) - 1);
                if m.midstate_count > 1 {
                    slot.work.version_mask.roll(slot.work.header.version, k)
                } else {
                    slot.work.header.version
                }
            }
        }
    }

    pub fn counters(&self, chip_index: u32) -> Option<&ChipCounters> {
        self.counters.get(chip_index as usize)
    }

    pub fn duplicates(&self) -> u32 {
        self.duplicates
    }

    pub fn stale(&self) -> u32 {
        self.stale
    }

    pub fn ticket_difficulty(&self) -> f64 {
        self.ticket_difficulty
    }

    /// The chips were just told to filter at `ticket` (the caller wrote their ticket mask).
    /// Nonces they found under the old mask may still be on the wire; until
    /// [`Dispatcher::settle_ticket`] anything passing the lower of the two is valid, credited at
    /// the ticket it passes.
    pub fn set_ticket_difficulty(&mut self, ticket: f64) {
        self.floor_difficulty = self.ticket_difficulty.min(ticket);
        self.ticket_difficulty = ticket;
    }

    /// Every nonce found under an old mask has arrived: only the current ticket passes.
    pub fn settle_ticket(&mut self) {
        self.floor_difficulty = self.ticket_difficulty;
    }

    /// The difficulty credited for every valid nonce so far: each stands for that many times
    /// 2^32 hashes, whatever ticket it was found at.
    pub fn credited_total(&self) -> f64 {
        self.credited_total
    }
}

/// Per-core nonce counts for a chain of up to `CHIPS` chips, sized by the caller: a control board
/// affords all 256 chips, a microcontroller board only its own few. Core ids are 7 bits in every
/// layout this crate reads by default (8 in BM1397's cgminer layout, which is folded onto 7).
#[derive(Debug, Clone)]
pub struct CoreCounts<const CHIPS: usize> {
    valid: [[u16; 128]; CHIPS],
    errors: [[u16; 128]; CHIPS],
}

impl<const CHIPS: usize> CoreCounts<CHIPS> {
    pub const fn new() -> Self {
        Self {
            valid: [[0; 128]; CHIPS],
            errors: [[0; 128]; CHIPS],
        }
    }

    pub fn record(&mut self, outcome: &NonceOutcome, fields: &NonceFields) {
        let (Some(valid), Some(errors)) = (
            self.valid.get_mut(fields.chip_index as usize),
            self.errors.get_mut(fields.chip_index as usize),
        ) else {
            return;
        };
        let core = usize::from(fields.core & 0x7F);
        match outcome {
            NonceOutcome::Share(_) | NonceOutcome::Valid { .. } => {
                valid[core] = valid[core].saturating_add(1)
            }
            NonceOutcome::HardwareError { .. } => errors[core] = errors[core].saturating_add(1),
            NonceOutcome::Duplicate { .. } | NonceOutcome::Stale { .. } => {}
        }
    }

    /// (valid, errors) for one core.
    pub fn core(&self, chip: u32, core: u8) -> Option<(u16, u16)> {
        let chip = chip as usize;
        let core = usize::from(core & 0x7F);
        Some((
            *self.valid.get(chip)?.get(core)?,
            *self.errors.get(chip)?.get(core)?,
        ))
    }

    /// The core of `chip` with the most errors, if any erred: where a bad core shows first.
    pub fn worst_core(&self, chip: u32) -> Option<(u8, u16)> {
        let errors = self.errors.get(chip as usize)?;
        (0u8..)
            .zip(errors.iter())
            .filter(|(_, e)| **e > 0)
            .max_by_key(|(_, e)| **e)
            .map(|(core, e)| (core, *e))
    }
}

impl<const CHIPS: usize> Default for CoreCounts<CHIPS> {
    fn default() -> Self {
        Self::new()
    }
}

/// Hash rate from validated nonces: each stands for `ticket × 2^32` hashes. With `n` nonces the
/// estimate's relative standard error is 1/√n (Poisson), so few nonces mean a wide interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HashrateEstimate {
    pub hashes_per_second: f64,
    /// 95 % confidence interval.
    pub low: f64,
    pub high: f64,
}

pub fn estimate_hashrate(
    nonces: u32,
    ticket_difficulty: f64,
    seconds: f64,
) -> Option<HashrateEstimate> {
    if seconds.is_nan() || seconds <= 0.0 || nonces == 0 {
        return None;
    }
    let n = f64::from(nonces);
    let rate = n * ticket_difficulty * 4_294_967_296.0 / seconds;
    let relative = 1.96 / sqrt(n);
    Some(HashrateEstimate {
        hashes_per_second: rate,
        low: rate * (1.0 - relative).max(0.0),
        high: rate * (1.0 + relative),
    })
}

/// Square root by Newton's method (no libm in `core`).
fn sqrt(x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    let mut guess = if x > 1.0 { x / 2.0 } else { 1.0 };
    for _ in 0..40 {
        guess = 0.5 * (guess + x / guess);
    }
    guess
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_narrows_with_more_nonces() {
        let few = estimate_hashrate(4, 256.0, 10.0).expect("estimate");
        let many = estimate_hashrate(400, 256.0, 1000.0).expect("estimate");
        assert!((few.hashes_per_second - many.hashes_per_second).abs() < 1.0);
        // A hundred times the nonces: a ten times narrower interval (1/√n).
        let ratio = (few.high - few.low) / (many.high - many.low);
        assert!((ratio - 10.0).abs() < 1e-9, "{ratio}");
        assert_eq!(estimate_hashrate(0, 256.0, 10.0), None);
        assert!((sqrt(2.0) - core::f64::consts::SQRT_2).abs() < 1e-12);
    }

    #[test]
    fn unknown_job_ids_are_stale() {
        let mut d = Dispatcher::new(
            ChipModel::Bm1397,
            NonceLayout::ESP_MINER,
            ChipAddressing::for_chain(1).expect("valid"),
            256.0,
            1.0,
        );
        let outcome = d.check(&NonceResponse {
            nonce_bytes: [1, 2, 3, 4],
            byte6: 0,
            byte7: 0x20,
            version_bits: None,
        });
        assert_eq!(outcome, NonceOutcome::Stale { job_id: 0x20 });
        assert_eq!(d.stale(), 1);
    }

    #[test]
    fn job_ids_rotate_and_overwrite_their_slot() {
        let mut d = Dispatcher::new(
            ChipModel::Bm1370,
            NonceLayout::ESP_MINER,
            ChipAddressing::for_chain(1).expect("valid"),
            256.0,
            1.0,
        );
        let work = Work {
            work_id: 1,
            header: BlockHeader {
                version: 0x2000_0000,
                prev_hash: [0; 32],
                merkle_root: [0; 32],
                ntime: 0,
                nbits: 0,
                nonce: 0,
            },
            version_mask: VersionMask::BIP320,
            pool_difficulty: 1.0,
        };
        let ids: [u8; 3] = core::array::from_fn(|_| d.dispatch(work).as_bytes()[4]);
        assert_eq!(ids, [24, 48, 72]);
    }
}
