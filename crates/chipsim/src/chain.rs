//! A chain of chips behind one UART (protocol.md §14): the sans-IO core of the simulator.
//!
//! Bytes from the host go in with the rate the host sends at; simulated time is advanced by the
//! caller; bytes for the host come out. Everything is deterministic for a seed and the same
//! sequence of calls.

use std::collections::VecDeque;

use bm13xx::{
    ChipAddressing, ChipModel, Command, DecodeError, ErrorKind, Event, HostDecoder, HostFrame,
    NonceLayout, Response, ResponseFormat,
};
use serde::Serialize;

use crate::chip::SimChip;
use crate::faults::{FaultScript, Faults};
use crate::physics::Nominal;
use crate::rng::Rng;

/// UARTs tolerate a few percent of rate mismatch; BM1366's "1 Mbaud" is 4 % off and works.
const BAUD_TOLERANCE: f64 = 0.05;

/// Whether a UART at `chip_baud` understands one at `host_baud`.
fn listens_at(chip_baud: u32, host_baud: u32) -> bool {
    chip_baud > 0 && (f64::from(host_baud) / f64::from(chip_baud) - 1.0).abs() <= BAUD_TOLERANCE
}

/// How a chain is built.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainConfig {
    pub model: ChipModel,
    pub chips: u32,
    pub seed: u64,
    /// Nonces are genuine at difficulty `ticket × 2^-share_floor_log2` (0 = real difficulty).
    pub share_floor_log2: u32,
    /// Where the core and chip bits go in a nonce.
    pub nonce_layout: NonceLayout,
    pub ambient_c: f64,
    /// Chips in series on the regulator's output: each gets `vout / voltage_domains`, as on
    /// hashboards whose domains stack (the TPS546 is then commanded at the stack's voltage).
    pub voltage_domains: u32,
    /// The silicon's grade: J/TH at the model's nominal clock and voltage, where it differs from
    /// the model's typical figure (a better bin, an older part, a worn board). `None` is typical.
    pub joules_per_th: Option<f64>,
}

/// The grades a chain may be given, J/TH: from better than any shipping part to a very tired one.
pub const GRADE_RANGE_J_PER_TH: core::ops::RangeInclusive<f64> = 5.0..=200.0;

impl ChainConfig {
    pub fn new(model: ChipModel, chips: u32, seed: u64) -> Self {
        Self {
            model,
            chips,
            seed,
            share_floor_log2: 26,
            nonce_layout: NonceLayout::default_for(
                model,
                if model == ChipModel::Bm1397 {
                    ResponseFormat::Short
                } else {
                    ResponseFormat::Long
                },
            ),
            ambient_c: 25.0,
            voltage_domains: 1,
            joules_per_th: None,
        }
    }
}

/// The configuration cannot make a chain.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("a chain holds 1 to 256 chips, not {0}")]
    ChipCount(u32),
    #[error("the share floor is 2^-k with k from 0 to 32, not k = {0}")]
    ShareFloor(u32),
    #[error("a silicon grade is 5 to 200 J/TH, not {0}")]
    Grade(f64),
}

/// Counters of what crossed the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ChainStats {
    pub frames_received: u64,
    /// Frames with a bad CRC: real chips drop them silently (protocol.md §14.1).
    pub crc_dropped: u64,
    /// Bytes that were no frame at all.
    pub garbage_bytes: u64,
    /// Frames that reached a chip listening at another rate, which saw garbage.
    pub wrong_baud_frames: u64,
    pub responses_sent: u64,
    pub nonces_sent: u64,
}

/// The simulated chain.
#[derive(Debug, Clone)]
pub struct ChainSim {
    config: ChainConfig,
    addressing: ChipAddressing,
    chips: Vec<SimChip>,
    decoder: HostDecoder,
    /// Bytes on their way to the host, each with the rate it was sent at.
    output: VecDeque<(u8, u32)>,
    now_s: f64,
    core_volts: f64,
    fan_duty: f64,
    ambient_c: f64,
    faults: Faults,
    script: FaultScript,
    /// The reset line is held low: every chip is in reset.
    in_reset: bool,
    /// The core supply is off: the chips have lost their state and stay silent until it returns.
    unpowered: bool,
    line_rng: Rng,
    stats: ChainStats,
}

impl ChainSim {
    pub fn new(config: ChainConfig) -> Result<Self, ConfigError> {
        let addressing =
            ChipAddressing::for_chain(config.chips).map_err(|e| ConfigError::ChipCount(e.0))?;
        if config.share_floor_log2 > 32 {
            return Err(ConfigError::ShareFloor(config.share_floor_log2));
        }
        let grade = match config.joules_per_th {
            Some(j) if GRADE_RANGE_J_PER_TH.contains(&j) => {
                j / Nominal::of(config.model).joules_per_th
            }
            Some(j) => return Err(ConfigError::Grade(j)),
            None => 1.0,
        };
        let chips = (0..config.chips)
            .map(|i| {
                let mut chip = SimChip::new(config.model, i, config.seed, config.ambient_c);
                chip.silicon.regrade(grade);
                chip
            })
            .collect();
        Ok(Self {
            addressing,
            chips,
            decoder: HostDecoder::host_to_chip(config.model),
            output: VecDeque::new(),
            now_s: 0.0,
            core_volts: Nominal::of(config.model).volts,
            fan_duty: 0.5,
            ambient_c: config.ambient_c,
            faults: Faults::default(),
            script: FaultScript::default(),
            in_reset: false,
            unpowered: false,
            line_rng: Rng::fork(config.seed, 0),
            stats: ChainStats::default(),
            config,
        })
    }

    pub fn config(&self) -> &ChainConfig {
        &self.config
    }

    pub fn chips(&self) -> &[SimChip] {
        &self.chips
    }

    pub fn stats(&self) -> &ChainStats {
        &self.stats
    }

    pub fn now_s(&self) -> f64 {
        self.now_s
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
        self.track_power();
    }

    pub fn set_fault_script(&mut self, script: FaultScript) {
        self.script = script;
    }

    /// How many stacked domains share the regulator's output (at least 1).
    pub fn voltage_domains(&self) -> f64 {
        f64::from(self.config.voltage_domains.max(1))
    }

    /// The voltage each chip gets.
    pub fn core_volts(&self) -> f64 {
        if self.faults.regulator_fault {
            0.0
        } else {
            self.core_volts
        }
    }

    pub fn set_core_volts(&mut self, volts: f64) {
        self.core_volts = volts.max(0.0);
        self.track_power();
    }

    /// Chips without core voltage lose everything: when the supply goes, they are back at
    /// power-on state, and a host must bring them up again once it returns.
    fn track_power(&mut self) {
        let powered = self.core_volts() > 0.0;
        if !powered && !self.unpowered {
            self.chips.iter_mut().for_each(SimChip::reset);
            self.decoder = HostDecoder::host_to_chip(self.config.model);
            self.output.clear();
        }
        self.unpowered = !powered;
    }

    /// The duty the fan was told to run at.
    pub fn fan_duty(&self) -> f64 {
        self.fan_duty
    }

    /// The airflow the chips actually get: none if the fan has failed.
    pub fn effective_fan_duty(&self) -> f64 {
        if self.faults.fan_failure {
            0.0
        } else {
            self.fan_duty
        }
    }

    pub fn set_fan_duty(&mut self, duty: f64) {
        self.fan_duty = duty.clamp(0.0, 1.0);
    }

    pub fn ambient_c(&self) -> f64 {
        self.ambient_c
    }

    pub fn set_ambient_c(&mut self, celsius: f64) {
        self.ambient_c = celsius;
    }

    /// The UART rate chip 0 listens at: where a host must be to be understood.
    pub fn baud(&self) -> u32 {
        self.chips.first().map_or(0, SimChip::baud)
    }

    /// Pulses the reset line: every chip back to power-on state.
    pub fn reset(&mut self) {
        self.set_reset_line(true);
        self.set_reset_line(false);
    }

    /// Drives the reset line (NRSTI, active low): held, the chips neither hear nor answer nor hash;
    /// released, they start from power-on state (protocol.md §1).
    pub fn set_reset_line(&mut self, held: bool) {
        if held {
            self.chips.iter_mut().for_each(SimChip::reset);
            self.decoder = HostDecoder::host_to_chip(self.config.model);
            self.output.clear();
        }
        self.in_reset = held;
    }

    pub fn in_reset(&self) -> bool {
        self.in_reset
    }

    /// Total power drawn by the chips now.
    pub fn power_w(&self) -> f64 {
        let volts = self.core_volts();
        self.chips
            .iter()
            .map(|c| {
                c.silicon.power_w(
                    c.frequency_mhz(),
                    volts,
                    c.thermal.temp_c,
                    c.hashrate() > 0.0,
                )
            })
            .sum()
    }

    /// How many chips, from the host's end, a frame reaches now.
    fn reachable(&self) -> usize {
        if self.in_reset || self.unpowered {
            return 0;
        }
        let present = self.faults.reachable_chips(self.config.chips) as usize;
        // A chip that does not relay hides everything after it.
        let relayed = self
            .chips
            .iter()
            .position(|c| !c.relaying)
            .map_or(self.chips.len(), |i| i + 1);
        present.min(relayed)
    }

    /// Bytes from the host, sent at `host_baud`.
    pub fn receive(&mut self, bytes: &[u8], host_baud: u32) {
        if self.in_reset || self.unpowered || self.faults.reachable_chips(self.config.chips) == 0 {
            return;
        }
        if !listens_at(self.baud(), host_baud) {
            // The first chip samples the line at the wrong rate: what it hears is noise, and what
            // it relays downstream is that noise.
            self.stats.garbage_bytes += bytes.len() as u64;
            return;
        }
        let mut decoder = std::mem::replace(
            &mut self.decoder,
            HostDecoder::host_to_chip(self.config.model),
        );
        for event in decoder.feed(bytes) {
            self.on_event(event, host_baud);
        }
        self.decoder = decoder;
    }

    fn on_event(&mut self, event: Event<HostFrame>, host_baud: u32) {
        match event {
            Event::Frame { frame, .. } => {
                self.stats.frames_received += 1;
                self.apply(frame, host_baud);
            }
            Event::Error(DecodeError {
                kind: ErrorKind::Crc,
                ..
            }) => self.stats.crc_dropped += 1,
            Event::Error(error) => self.stats.garbage_bytes += error.len as u64,
        }
    }

    /// One frame reaches the chips that can hear it, nearest first (protocol.md §14.2, §14.7).
    fn apply(&mut self, frame: HostFrame, host_baud: u32) {
        tracing::debug!(?frame, host_baud, "frame");
        let reach = self.reachable();
        let listening: Vec<usize> = (0..reach)
            .filter(|&i| listens_at(self.chips[i].baud(), host_baud))
            .collect();
        self.stats.wrong_baud_frames += (reach - listening.len()) as u64;
        match frame {
            HostFrame::Command(Command::SetAddress { address }) => {
                // Taken by the first chip without an address, which starts relaying again.
                if let Some(&i) = listening.iter().find(|&&i| !self.chips[i].addressed) {
                    let chip = &mut self.chips[i];
                    chip.address = address;
                    chip.addressed = true;
                    chip.relaying = true;
                }
            }
            HostFrame::Command(Command::ChainInactive) => {
                for &i in &listening {
                    self.chips[i].addressed = false;
                    self.chips[i].relaying = false;
                }
            }
            HostFrame::Command(Command::WriteRegister {
                destination,
                register,
                value,
            }) => {
                for &i in &listening {
                    if !self.chips[i].is_for(destination) {
                        continue;
                    }
                    let reply = self.chips[i].write(register, value);
                    if let Some(reply) =
                        reply.filter(|_| !self.faults.is_unresponsive(self.chips[i].index))
                    {
                        let baud = self.chips[i].baud();
                        self.send(reply, baud);
                    }
                }
            }
            HostFrame::Command(Command::ReadRegister {
                destination,
                register,
            }) => {
                for &i in &listening {
                    let chip = &self.chips[i];
                    if chip.is_for(destination) && !self.faults.is_unresponsive(chip.index) {
                        let (response, baud) = (chip.read(register), chip.baud());
                        self.send(response, baud);
                    }
                }
            }
            HostFrame::Job(job) => {
                for &i in &listening {
                    self.chips[i].accept_job(job);
                }
            }
        }
    }

    fn send(&mut self, response: Response, baud: u32) {
        let frame = response.encode();
        let mut bytes = frame.as_bytes().to_vec();
        if self.line_rng.next_f64() < self.faults.bad_crc_rate {
            // Flip a CRC bit (bits 4..0 of the last byte).
            if let Some(last) = bytes.last_mut() {
                *last ^= 1 << self.line_rng.below(5);
            }
        }
        tracing::debug!(?response, baud, "response");
        self.stats.responses_sent += 1;
        self.output.extend(bytes.into_iter().map(|b| (b, baud)));
    }

    /// Advances simulated time: temperatures move, chips hash, nonces go out.
    pub fn advance(&mut self, dt_s: f64) {
        // Also refuses NaN.
        if !dt_s.is_finite() || dt_s <= 0.0 {
            return;
        }
        self.now_s += dt_s;
        if let Some(faults) = self.script.due(self.now_s) {
            self.set_faults(faults);
        }
        let volts = self.core_volts();
        let reach = self.reachable();
        let mut found = Vec::new();
        for (i, chip) in self.chips.iter_mut().enumerate() {
            let mut r_th = chip.silicon.r_th(if self.faults.fan_failure {
                0.0
            } else {
                self.fan_duty
            });
            if self.faults.has_thermal_runaway(chip.index) {
                r_th *= 5.0;
            }
            let powered = volts > 0.0 && !self.in_reset;
            let hashing = powered && chip.hashrate() > 0.0;
            let power = if powered {
                chip.silicon
                    .power_w(chip.frequency_mhz(), volts, chip.thermal.temp_c, hashing)
            } else {
                0.0
            };
            chip.thermal.step(dt_s, power, r_th, self.ambient_c);
            if !powered {
                continue;
            }
            let nonces = chip.hash_for(
                dt_s,
                volts,
                self.config.share_floor_log2,
                self.config.nonce_layout,
                self.addressing,
            );
            let heard = i < reach && !self.faults.is_unresponsive(chip.index);
            if heard {
                found.extend(nonces.into_iter().map(|n| (n.response, chip.baud())));
            }
        }
        for (response, baud) in found {
            self.stats.nonces_sent += 1;
            self.send(response, baud);
            if self.line_rng.next_f64() < self.faults.duplicate_nonce_rate {
                self.send(response, baud);
            }
        }
    }

    /// Bytes waiting for a host that reads at `host_baud`. Bytes sent at another rate arrive as
    /// noise; line faults flip and drop bytes on the way.
    pub fn take_output(&mut self, host_baud: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.output.len());
        while let Some((byte, baud)) = self.output.pop_front() {
            if self.line_rng.next_f64() < self.faults.drop_rate {
                continue;
            }
            let mut byte = if listens_at(baud, host_baud) {
                byte
            } else {
                self.line_rng.next_u64() as u8
            };
            if self.line_rng.next_f64() < self.faults.bit_flip_rate {
                byte ^= 1 << self.line_rng.below(8);
            }
            out.push(byte);
        }
        out
    }

    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }
}
