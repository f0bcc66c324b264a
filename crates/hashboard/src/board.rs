//! Boards are data: everything that differs between hashboards lives in a description.

use bm13xx::{ChipModel, Frequency};

/// The part that sets the core voltage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Regulator {
    /// TPS546 PMBus buck; its output feeds all series domains of a chain.
    Tps546 { address: u8 },
    /// DS4432U DAC trimming a TPS40305, with an INA260 measuring the board's input.
    Ds4432u { address: u8, monitor_address: u8 },
}

/// Temperatures the board is run by, in °C.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThermalLimits {
    /// The fan controller holds the chips here.
    pub target_c: f32,
    /// Above this the chips are slowed and the fan runs flat out.
    pub throttle_c: f32,
    /// Above this hashing stops at once, whatever any command says.
    pub shutdown_c: f32,
    /// Stopped for overheating, the chips stay off at least this long, in seconds.
    pub min_cooldown_s: u32,
}

/// One kind of hashboard.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoardDescription {
    pub name: &'static str,
    pub model: ChipModel,
    pub chains: u32,
    pub chips_per_chain: u32,
    /// Chips sit in this many series voltage domains per chain; the regulator's output is the
    /// per-chip voltage times this (protocol.md §13).
    pub voltage_domains: u32,
    pub regulator: Regulator,
    /// EMC2101 address, if the board has one.
    pub fan_controller: Option<u8>,
    pub default_frequency: Frequency,
    pub min_frequency: Frequency,
    pub max_frequency: Frequency,
    /// Per-chip core voltage, mV.
    pub default_core_mv: u32,
    pub min_core_mv: u32,
    pub max_core_mv: u32,
    pub thermal: ThermalLimits,
    /// The fan never runs below this duty while chips are powered, %.
    pub min_fan_percent: f32,
}

impl BoardDescription {
    /// The regulator's output for a per-chip voltage.
    pub const fn regulator_mv(&self, core_mv: u32) -> u32 {
        core_mv * self.voltage_domains
    }

    pub const fn total_chips(&self) -> u32 {
        self.chains * self.chips_per_chain
    }

    /// Clamps a per-chip voltage to the board's window.
    pub fn clamp_core_mv(&self, core_mv: u32) -> u32 {
        core_mv.clamp(self.min_core_mv, self.max_core_mv)
    }

    pub fn clamp_frequency(&self, frequency: Frequency) -> Frequency {
        frequency.clamp(self.min_frequency, self.max_frequency)
    }
}

const BM1397_THERMAL: ThermalLimits = ThermalLimits {
    target_c: 60.0,
    throttle_c: 75.0,
    shutdown_c: 90.0,
    min_cooldown_s: 60,
};

/// A Bitaxe Max-style single-chip BM1397 board: DS4432U + INA260, EMC2101 (ESP-Miner's defaults).
pub const BITAXE_MAX: BoardDescription = BoardDescription {
    name: "bitaxe-max",
    model: ChipModel::Bm1397,
    chains: 1,
    chips_per_chain: 1,
    voltage_domains: 1,
    regulator: Regulator::Ds4432u {
        address: crate::drivers::ds4432u::DEFAULT_ADDRESS,
        monitor_address: crate::drivers::ina260::DEFAULT_ADDRESS,
    },
    fan_controller: Some(crate::drivers::emc2101::DEFAULT_ADDRESS),
    default_frequency: Frequency::from_khz(425_000),
    min_frequency: Frequency::from_khz(50_000),
    max_frequency: Frequency::from_khz(650_000),
    default_core_mv: 1400,
    min_core_mv: 1100,
    max_core_mv: 1500,
    thermal: BM1397_THERMAL,
    min_fan_percent: 20.0,
};

/// A multi-chip BM1397 hashboard: 12 chips in 4 series domains of 3 on one chain, fed by a TPS546
/// (commanded at 4 × the per-chip voltage), EMC2101 on the hottest chip.
pub const BM1397_HASHBOARD_12: BoardDescription = BoardDescription {
    name: "bm1397-hashboard-12",
    model: ChipModel::Bm1397,
    chains: 1,
    chips_per_chain: 12,
    voltage_domains: 4,
    regulator: Regulator::Tps546 {
        address: crate::drivers::tps546::DEFAULT_ADDRESS,
    },
    fan_controller: Some(crate::drivers::emc2101::DEFAULT_ADDRESS),
    default_frequency: Frequency::from_khz(425_000),
    min_frequency: Frequency::from_khz(50_000),
    max_frequency: Frequency::from_khz(650_000),
    default_core_mv: 1400,
    min_core_mv: 1100,
    max_core_mv: 1500,
    thermal: BM1397_THERMAL,
    min_fan_percent: 25.0,
};

/// Every board this crate knows, by name.
pub const BOARDS: [&BoardDescription; 2] = [&BITAXE_MAX, &BM1397_HASHBOARD_12];

pub fn by_name(name: &str) -> Option<&'static BoardDescription> {
    BOARDS.iter().copied().find(|b| b.name == name)
}
