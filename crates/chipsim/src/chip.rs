//! One simulated chip: its register file, addressing state, job table, silicon and temperature,
//! and the nonce search that makes its answers genuine.

use bm13xx::pll::Pll0Divider;
use bm13xx::registers::{CoreRegisterControl, FastUartConfig, MiscControl, address};
use bm13xx::{
    BlockHeader, ChipAddressing, ChipModel, Job, NonceLayout, NonceResponse, PllParameter,
    RegisterResponse, Response, TicketMask,
};

use crate::physics::{Silicon, Thermal};
use crate::rng::Rng;

/// Register values after reset (protocol.md §5.1 for BM1397, §5.2 for BM1366+).
fn reset_registers(model: ChipModel) -> [u32; 256] {
    let mut regs = [0u32; 256];
    regs[usize::from(address::CHIP_ID)] = model.reset_chip_id_register();
    let common: &[(u8, u32)] = &[
        (address::HASH_RATE, 0x8000_0000),
        (address::ORDERED_CLOCK_ENABLE, 0x0000_FFFF),
        (address::UART_RELAY, 0x000F_0000),
        (address::CORE_REGISTER_CONTROL, 0x0000_4000),
        (address::ERROR_FLAG, 0xFF00_0000),
        (0x5C, 0x0000_FFFF),
        (address::CLOCK_ORDER_CONTROL0, 0xD95C_8410),
        (address::CLOCK_ORDER_CONTROL1, 0xFB73_EA62),
    ];
    let specific: &[(u8, u32)] = match model {
        ChipModel::Bm1397 => &[
            (address::PLL0, 0xC060_0161),
            (address::MISC_CONTROL, 0x0000_3A01),
            (address::FAST_UART, 0x0600_000F),
            (address::IO_DRIVER_STRENGTH, 0x0211_2111),
            (address::PLL1, 0x0064_0111),
            (0x64, 0x0068_0111),
            (address::PLL3, 0x0070_0111),
            (address::PLL0_DIVIDER, 0x0304_0607),
        ],
        _ => &[
            (address::PLL0, 0xC054_0165),
            (address::MISC_CONTROL, 0x0000_C100),
            (address::FAST_UART, 0x0130_1A00),
            (address::IO_DRIVER_STRENGTH, 0x0001_2111),
            (address::PLL1, 0x2050_0174),
            (address::VERSION_ROLLING, 0x0000_FFFF),
            (address::SOFT_RESET, 0x0007_0000),
        ],
    };
    for &(register, value) in common.iter().chain(specific) {
        regs[usize::from(register)] = value;
    }
    regs
}

/// A PLL word read the raw way (§7: the UART's PLL clock uses the raw formula), in Hz.
fn raw_pll_hz(word: u32) -> f64 {
    let fbdiv = f64::from((word >> 16) & 0xFFF);
    let refdiv = f64::from((word >> 8) & 0x3F);
    let p1 = f64::from((word >> 4) & 0x7);
    let p2 = f64::from(word & 0x7);
    let divide = refdiv * p1 * p2;
    if divide == 0.0 {
        0.0
    } else {
        25e6 * fbdiv / divide
    }
}

/// The most hashes spent looking for one nonce: about 5 s of one core. At ticket difficulty 256
/// this allows floors down to 2^-16.
pub const MAX_SEARCH: u64 = 1 << 24;

/// What a chip found while hashing: a nonce response, good or (hardware error) bad.
#[derive(Debug, Clone, Copy)]
pub struct Found {
    pub response: Response,
    pub valid: bool,
}

#[derive(Debug, Clone)]
pub struct SimChip {
    pub model: ChipModel,
    pub index: u32,
    pub address: u8,
    pub addressed: bool,
    pub relaying: bool,
    regs: [u32; 256],
    /// The per-core registers reached through 0x3C (one set: the simulator does not tell cores apart).
    core_regs: [u8; 32],
    pub silicon: Silicon,
    pub thermal: Thermal,
    jobs: Vec<Option<Job>>,
    current_job: Option<u8>,
    rng: Rng,
    /// Low nonce bits walked by the search, so successive searches cover new ground.
    cursor: u32,
    /// Hashes done since reset, for the hash counters.
    hashes: f64,
    /// Hash rate over the last step, for register 0x04.
    last_rate: f64,
    pub stats: ChipStats,
}

/// What happened to one chip, for tests and the oracle's scoring.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ChipStats {
    pub nonces: u64,
    pub bad_nonces: u64,
    pub hashes_tried: u64,
    /// Nonces not sent because the search ran past [`MAX_SEARCH`] (floor too close to real
    /// difficulty for a CPU).
    pub abandoned: u64,
}

impl SimChip {
    pub fn new(model: ChipModel, index: u32, seed: u64, ambient_c: f64) -> Self {
        let mut rng = Rng::fork(seed, u64::from(index) + 1);
        let silicon = Silicon::sample(model, &mut rng);
        Self {
            model,
            index,
            address: 0,
            addressed: false,
            relaying: true,
            regs: reset_registers(model),
            core_regs: [0; 32],
            silicon,
            thermal: Thermal::at(ambient_c),
            jobs: vec![None; 128],
            current_job: None,
            rng,
            cursor: 0,
            hashes: 0.0,
            last_rate: 0.0,
            stats: ChipStats::default(),
        }
    }

    /// Back to power-on state (reset pin); the silicon and its temperature stay what they are.
    pub fn reset(&mut self) {
        self.address = 0;
        self.addressed = false;
        self.relaying = true;
        self.regs = reset_registers(self.model);
        self.core_regs = [0; 32];
        self.jobs.fill(None);
        self.current_job = None;
        self.last_rate = 0.0;
        self.hashes = 0.0;
    }

    pub fn register(&self, register: u8) -> u32 {
        self.regs[usize::from(register)]
    }

    /// Whether a register command for `destination` is for this chip. Before addressing, every
    /// chip sits at address 0.
    pub fn is_for(&self, destination: bm13xx::Destination) -> bool {
        match destination {
            bm13xx::Destination::All => true,
            bm13xx::Destination::Chip(a) => a == self.address,
        }
    }

    /// Applies a register write. A core-register read through 0x3C makes the chip send the value
    /// on its own, as a register-0x40 response (§5.3, §1), which is returned.
    pub fn write(&mut self, register: u8, value: u32) -> Option<Response> {
        match register {
            // Chip id and the counters are read-only.
            address::CHIP_ID | address::HASH_RATE | address::TOTAL_HASH_COUNTER => None,
            address::CORE_REGISTER_CONTROL => {
                self.regs[usize::from(register)] = value;
                self.core_register_command(value)
            }
            _ => {
                self.regs[usize::from(register)] = value;
                None
            }
        }
    }

    fn core_register_command(&mut self, value: u32) -> Option<Response> {
        const DO_CMD: u32 = 0x8000_0000;
        if value & DO_CMD == 0 {
            return None;
        }
        match CoreRegisterControl::from_value(value) {
            CoreRegisterControl::Write {
                register, value, ..
            } => {
                self.core_regs[usize::from(register & 0x1F)] = value;
                None
            }
            CoreRegisterControl::Read { core_id, register } => {
                // 0x40: [24:16] core id, [7:0] the core register's value.
                let reply = (u32::from(core_id) << 16)
                    | u32::from(self.core_regs[usize::from(register & 0x1F)]);
                self.regs[usize::from(address::CORE_REGISTER_VALUE)] = reply;
                Some(self.read(address::CORE_REGISTER_VALUE))
            }
        }
    }

    /// The answer to a register read, as this chip sends it.
    pub fn read(&self, register: u8) -> Response {
        let value = match register {
            address::HASH_RATE if self.model == ChipModel::Bm1397 => {
                // Units of 2^20 H/s (protocol.md §5.1, ESP-Miner).
                (self.last_rate / 1_048_576.0).min(f64::from(0x7FFF_FFFEu32)) as u32
            }
            address::TOTAL_HASH_COUNTER if self.model != ChipModel::Bm1397 => {
                (self.hashes / 4_294_967_296.0) as u64 as u32
            }
            _ => self.regs[usize::from(register)],
        };
        Response::Register(RegisterResponse {
            value,
            chip_address: self.address,
            register,
            extra: self.long_responses().then_some([0, 0]),
        })
    }

    /// BM1366+ answer in 11 bytes once register 0xA4 enables version rolling (§3.1, §14.4).
    pub fn long_responses(&self) -> bool {
        self.model != ChipModel::Bm1397
            && bm13xx::registers::VersionRolling::long_responses(
                self.regs[usize::from(address::VERSION_ROLLING)],
            )
    }

    /// The hash clock the PLL registers give, in MHz.
    pub fn frequency_mhz(&self) -> f64 {
        let word = self.regs[usize::from(address::PLL0)];
        match PllParameter::from_register(self.model, word) {
            Some(pll) if self.model == ChipModel::Bm1397 => {
                let divider = Pll0Divider(self.regs[usize::from(address::PLL0_DIVIDER)]);
                pll.hash_clock(divider).mhz()
            }
            Some(pll) => pll.frequency().mhz(),
            None => 0.0,
        }
    }

    /// The UART rate the baud registers give (§7).
    pub fn baud(&self) -> u32 {
        let (divisor, clock_hz) = match self.model {
            ChipModel::Bm1397 => {
                let misc = self.regs[usize::from(address::MISC_CONTROL)];
                let from_pll3 = misc & (1 << 16) != 0;
                let clock = if from_pll3 {
                    let div4 = f64::from((self.regs[usize::from(address::FAST_UART)] >> 24) & 0xF);
                    raw_pll_hz(self.regs[usize::from(address::PLL3)]) / (div4 + 1.0)
                } else {
                    25e6
                };
                (MiscControl::from_value(misc).divisor(), clock)
            }
            _ => {
                let word = self.regs[usize::from(address::FAST_UART)];
                let config = FastUartConfig::from_value(word);
                let clock = if config.clocked_from_pll() {
                    let div4 = f64::from((word >> 20) & 0xF);
                    raw_pll_hz(self.regs[usize::from(address::PLL1)]) / (div4 + 1.0)
                } else {
                    25e6
                };
                (config.divisor(), clock)
            }
        };
        (clock_hz / (8.0 * (f64::from(divisor.value()) + 1.0))) as u32
    }

    pub fn accept_job(&mut self, job: Job) {
        let id = job.job_id() & 0x7F;
        self.jobs[usize::from(id)] = Some(job);
        self.current_job = Some(id);
    }

    fn ticket_log2(&self) -> u32 {
        let mask = TicketMask::from_register(self.regs[usize::from(address::TICKET_MASK)]);
        // A word that is no power-of-two mask still filters by its leading bits.
        mask.difficulty().map_or_else(
            || mask.value().swap_bytes().leading_ones(),
            |d| u32::from(d.log2()),
        )
    }

    /// Hashes per second this chip does now (zero when it is not working).
    pub fn hashrate(&self) -> f64 {
        if self.thermal.overheated || self.current_job.is_none() {
            return 0.0;
        }
        self.frequency_mhz() * 1e6 * f64::from(self.model.hashing_small_cores())
    }

    /// Runs the chip for `dt_s` seconds: counts hashes and returns the nonces it found, in order.
    /// Each nonce is a genuine solution at `2^(ticket − floor_log2)` times difficulty 1 unless the
    /// silicon erred, in which case it is a hardware error that fails validation.
    pub fn hash_for(
        &mut self,
        dt_s: f64,
        volts: f64,
        floor_log2: u32,
        layout: NonceLayout,
        addressing: ChipAddressing,
    ) -> Vec<Found> {
        let rate = self.hashrate();
        self.last_rate = rate;
        self.hashes += rate * dt_s;
        let Some(job) = self.current_job.and_then(|id| self.jobs[usize::from(id)]) else {
            return Vec::new();
        };
        let ticket = self.ticket_log2();
        // The chip reports nonces at its ticket difficulty; in the simulator every difficulty is
        // scaled down by the floor so a CPU can afford the search.
        let expected = rate * dt_s / (4_294_967_296.0 * 2f64.powi(ticket as i32));
        let count = self.rng.poisson(expected);
        let error_rate = self
            .silicon
            .error_rate(self.frequency_mhz(), volts, self.thermal.temp_c);
        let zero_bits = (32 + ticket).saturating_sub(floor_log2);
        (0..count)
            .filter_map(|_| {
                let valid = self.rng.next_f64() >= error_rate;
                let Some(response) = self.search(&job, zero_bits, valid, layout, addressing) else {
                    self.stats.abandoned += 1;
                    return None;
                };
                self.stats.nonces += 1;
                self.stats.bad_nonces += u64::from(!valid);
                Some(Found { response, valid })
            })
            .collect()
    }

    /// Finds a nonce whose hash has `zero_bits` leading zero bits (or, for a hardware error, one
    /// that does not) and encodes it with this chip's fields (§3.3, §3.4). Gives up after
    /// [`MAX_SEARCH`] hashes, so a floor set too close to real difficulty slows nonces down
    /// (counted as abandoned) instead of hanging the simulator.
    fn search(
        &mut self,
        job: &Job,
        zero_bits: u32,
        valid: bool,
        layout: NonceLayout,
        addressing: ChipAddressing,
    ) -> Option<Response> {
        let mut budget = MAX_SEARCH;
        let core_count = u64::from(self.model.cores()).min(1 << layout.core_bits);
        let small_cores = u64::from(self.model.small_cores_per_core());
        let low_bits = u32::from(layout.chip_shift);
        let interval = u64::from(addressing.interval());
        let rolling_mask = if self.long_responses() {
            self.regs[usize::from(address::VERSION_ROLLING)] & 0xFFFF
        } else {
            0
        };
        loop {
            let core = self.rng.below(core_count) as u32;
            let field = (u64::from(self.address) + self.rng.below(interval)).min(255) as u32;
            let small_core = self.rng.below(small_cores) as u8;
            let midstate = match job {
                Job::Midstate(m) => self.rng.below(u64::from(m.midstate_count.clamp(1, 4))) as u8,
                Job::Header(_) => 0,
            };
            let version_bits = (self.rng.next_u64() as u32 & rolling_mask) as u16;
            // A run of low nonce bits under the chosen core and chip fields.
            for _ in 0..(1u32 << low_bits.min(17)) {
                budget = budget.checked_sub(1)?;
                self.cursor = self.cursor.wrapping_add(1);
                let low = self.cursor & ((1 << low_bits) - 1);
                let mut v = (core << layout.core_shift) | (field << layout.chip_shift) | low;
                if let Some((shift, bits)) = layout.small_core {
                    v = (v & !(((1 << bits) - 1) << shift))
                        | (u32::from(small_core) & ((1 << bits) - 1)) << shift;
                }
                let nonce = v.swap_bytes();
                let hash = hash_of(job, nonce, midstate, version_bits);
                self.stats.hashes_tried += 1;
                if (leading_zero_bits(&hash) >= zero_bits) == valid {
                    return Some(self.encode(job, nonce, midstate, small_core, version_bits));
                }
            }
        }
    }

    fn encode(
        &self,
        job: &Job,
        nonce: u32,
        midstate: u8,
        small_core: u8,
        version_bits: u16,
    ) -> Response {
        let job_id = job.job_id();
        let byte7 = match self.model {
            ChipModel::Bm1397 => (job_id & 0xFC) | (midstate & 0x03),
            ChipModel::Bm1366 => (job_id & 0xF8) | (small_core & 0x07),
            ChipModel::Bm1368 | ChipModel::Bm1370 => {
                (((job_id >> 3) & 0x0F) << 4) | (small_core & 0x0F)
            }
        };
        Response::Nonce(NonceResponse {
            nonce_bytes: nonce.to_le_bytes(),
            // Unknown data on BM1366+ (samples show 0x02); drivers must ignore it, so send it.
            byte6: if self.model == ChipModel::Bm1397 {
                0
            } else {
                0x02
            },
            byte7,
            version_bits: self.long_responses().then_some(version_bits),
        })
    }
}

/// The header hash for a nonce, the way the chip computes it.
pub fn hash_of(job: &Job, nonce: u32, midstate: u8, version_bits: u16) -> [u8; 32] {
    match job {
        Job::Midstate(m) => m.midstates[usize::from(midstate & 3)].finish_sha256d(&m.tail(nonce)),
        Job::Header(h) => BlockHeader {
            version: h.header.version | (u32::from(version_bits) << 13),
            nonce,
            ..h.header
        }
        .hash(),
    }
}

/// Leading zero bits of a hash read as a little-endian 256-bit number.
pub fn leading_zero_bits(hash: &[u8; 32]) -> u32 {
    let mut bits = 0;
    for &byte in hash.iter().rev() {
        bits += byte.leading_zeros();
        if byte != 0 {
            break;
        }
    }
    bits
}
