//! The one reading of the miner that every API renders.

use fleet_proto::Mode;
use fleet_proto::messages::Hashrate;

/// What the miner is doing, as every reader sees it: the mining loop takes one reading a second
/// and the cgminer API, the AxeOS API, `/metrics` and the MQTT telemetry all render from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub elapsed_s: u64,
    pub mhs_av: f64,
    pub mhs_5s: f64,
    pub accepted: u64,
    pub rejected: u64,
    pub stale: u64,
    pub hardware_errors: u64,
    /// Nonces that met the chips' ticket: cgminer's "Diff1 Work" in ticket units.
    pub nonces: u64,
    pub pools: Vec<PoolRow>,
    pub chains: Vec<ChainRow>,
    pub board: &'static str,
    pub mode: Mode,
    /// TH/s over 5 s, 1 min and 15 min.
    pub hashrate: Hashrate,
    /// Sum and best of the validated shares' difficulties.
    pub share_difficulty: f64,
    pub best_difficulty: f64,
    /// Regulator output power (PMBus), when the board can read it.
    pub power_w: Option<f64>,
    /// Fan (tachometer rpm, commanded duty %), when the board has a fan controller.
    pub fan: Option<(u32, f32)>,
    /// The board sensor (on the hottest chip) and the hottest chip itself (`--sim` knows it).
    pub board_temp_c: Option<f64>,
    pub hottest_chip_c: Option<f64>,
    pub core_mv: u32,
    pub frequency_mhz: f64,
    pub chips_up: u32,
    pub chips_expected: u32,
    pub asic_model: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolRow {
    pub url: String,
    pub user: String,
    pub alive: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChainRow {
    pub chips: u32,
    pub model: &'static str,
    pub frequency_mhz: f64,
    pub temperature_c: f64,
    pub mhs_av: f64,
    pub hardware_errors: u64,
}
