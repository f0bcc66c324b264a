//! What miners publish, and the site inputs the agent reads.

use serde::{Deserialize, Serialize};

use crate::topic::Name;

/// `…/status`, retained: the payload is the bare string, so any MQTT tool can read it.
pub const ONLINE: &str = "online";
/// The last will: the broker publishes it when the miner's connection dies.
pub const OFFLINE: &str = "offline";

/// What a miner is doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Mining,
    Sleeping,
    PowerTarget,
    Tuning,
    Overheated,
}

/// Hash rate over three windows, TH/s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Hashrate {
    pub s5: f64,
    pub m1: f64,
    pub m15: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fan {
    pub rpm: u32,
    pub percent: f64,
}

/// One chain's health.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChainHealth {
    pub index: u32,
    pub chips_expected: u32,
    pub chips_alive: u32,
    pub hashrate_ths: f64,
    pub hw_error_rate: f64,
    pub max_chip_temp_c: Option<f64>,
}

/// `…/telemetry`, every few seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    pub v: u32,
    /// Unix seconds.
    pub at: u64,
    pub uptime_s: u64,
    pub firmware: String,
    pub mode: Mode,
    pub hashrate_ths: Hashrate,
    /// Sum of the difficulties of validated shares since start.
    pub share_difficulty: f64,
    pub shares_accepted: u64,
    pub shares_rejected: u64,
    pub power_w: f64,
    pub efficiency_j_per_th: Option<f64>,
    pub board_temp_c: Option<f64>,
    pub fans: Vec<Fan>,
    pub chains: Vec<ChainHealth>,
    pub hw_error_rate: f64,
}

/// One point of the tuner's efficiency curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    pub core_mv: u32,
    pub hashrate_ths: f64,
    pub power_w: f64,
}

/// What the machine is, for the agent's economics before it has measured anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nameplate {
    pub model: String,
    pub chip: String,
    pub chips: u32,
    pub hashrate_ths: f64,
    pub power_w: f64,
}

/// `…/state`, retained: what the machine is set to and what it can do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub v: u32,
    pub at: u64,
    pub mode: Mode,
    pub power_target_w: Option<f64>,
    /// What the tuner optimises the clocks and voltage for, when the operator asked it to.
    #[serde(default)]
    pub tune: Option<crate::command::TuneMode>,
    pub firmware: String,
    pub nameplate: Nameplate,
    /// The tuner's measured points, highest voltage first (empty until a tune has run).
    pub curve: Vec<CurvePoint>,
    /// A sleeping machine stays asleep across reboots until woken.
    pub durable_sleep: bool,
}

/// How a command went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    /// Verified and queued.
    Accepted,
    /// Done (for sleep: the chains are idle).
    Applied,
    /// Verified, but applying it failed.
    Failed,
    /// Refused before anything changed.
    Rejected,
    /// Seen already; nothing new was done.
    Duplicate,
}

/// `…/ack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub v: u32,
    /// The command's id, when it could be read.
    pub id: Option<String>,
    pub miner: Name,
    pub status: AckStatus,
    pub reason: Option<String>,
    pub at: u64,
}

/// `hashwarden/v1/<site>/market`: the market as a feed publishes it — a hashprice, or the
/// network's figures to compute it from (the agent checks either for plausibility).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Market {
    pub v: u32,
    /// Unix seconds the figures are for.
    pub at: u64,
    #[serde(default)]
    pub hashprice_usd_per_ph_day: Option<f64>,
    #[serde(default)]
    pub difficulty: Option<f64>,
    #[serde(default)]
    pub height: Option<u64>,
    /// Average fees per block over the last 144 blocks, BTC.
    #[serde(default)]
    pub fees_per_block_btc: Option<f64>,
    #[serde(default)]
    pub btc_usd: Option<f64>,
}

/// `hashwarden/v1/<site>/power`: the site's power price now, from a real-time feed (a utility's
/// or an ISO's, through whatever bridge the site runs). It may be negative: some markets pay for
/// consumption at times.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerPrice {
    pub v: u32,
    /// Unix seconds the price holds from.
    pub at: u64,
    pub usd_per_kwh: f64,
}

/// `maestro/target`: demand response as many sites run it. 0 = curtail, 100 = run; a site that
/// hears nothing for four minutes curtails by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaestroTarget {
    pub target: u8,
    pub timestamp: u64,
}

/// `hashwarden/v1/<site>/grid`: a site power cap or target from the grid operator or EMS.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GridSignal {
    pub v: u32,
    pub at: u64,
    /// The most the site may draw, kW; `None` lifts the cap.
    pub cap_kw: Option<f64>,
    /// Until when the signal holds (unix seconds).
    pub until: Option<u64>,
    /// When the cap takes effect (unix seconds); absent or past: at once. A cap announced ahead
    /// is demand response with notice: the agent sheds in time to be under it by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
}
