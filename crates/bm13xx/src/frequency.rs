//! Hash-clock frequencies and the expected hash rate they give (§11.1).

use core::fmt;

use crate::model::ChipModel;

/// A clock frequency, held in whole kHz so that PLL arithmetic is exact: every frequency the PLL can
/// produce from the 25 MHz reference with the dividers drivers use is a whole number of kHz or close
/// to one, and comparisons between candidates never depend on float rounding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Frequency {
    khz: u32,
}

impl Frequency {
    /// The crystal on every BM13xx board (§1).
    pub const REFERENCE: Frequency = Frequency::from_khz(25_000);

    pub const fn from_khz(khz: u32) -> Self {
        Self { khz }
    }

    /// Rounds to the nearest kHz; `None` for negative, non-finite or absurd (> 4 GHz) inputs.
    pub fn from_mhz(mhz: f64) -> Option<Self> {
        if !mhz.is_finite() || !(0.0..=4_000_000.0).contains(&mhz) {
            return None;
        }
        // `as` truncates; adding 0.5 first rounds half away from zero for non-negative values.
        Some(Self::from_khz((mhz * 1000.0 + 0.5) as u32))
    }

    pub const fn khz(self) -> u32 {
        self.khz
    }

    pub fn mhz(self) -> f64 {
        f64::from(self.khz) / 1000.0
    }
}

impl fmt::Display for Frequency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.khz / 1000;
        let frac = self.khz % 1000;
        if frac == 0 {
            write!(f, "{whole} MHz")
        } else {
            let mut digits = 3;
            let mut frac = frac;
            while frac.is_multiple_of(10) {
                frac /= 10;
                digits -= 1;
            }
            write!(f, "{whole}.{frac:0digits$} MHz")
        }
    }
}

/// Hash rate in hashes per second.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct HashesPerSecond(pub f64);

impl HashesPerSecond {
    pub fn gigahashes(self) -> f64 {
        self.0 / 1e9
    }

    pub fn terahashes(self) -> f64 {
        self.0 / 1e12
    }
}

/// What a chain should hash at: frequency × small cores × chips (ESP-Miner, bm13xx-chain; §11.1).
/// One small core tests one nonce per clock.
pub fn expected_hashrate(model: ChipModel, frequency: Frequency, chips: u32) -> HashesPerSecond {
    let per_chip = f64::from(frequency.khz()) * 1e3 * f64::from(model.hashing_small_cores());
    HashesPerSecond(per_chip * f64::from(chips))
}

/// Versions of the header one job lets a chip hash: BM1397 jobs carry up to four AsicBoost
/// midstates; BM1366 and later roll the 16 BIP320 version bits themselves.
pub const fn versions_per_job(model: ChipModel, version_rolling: bool) -> u32 {
    match (model, version_rolling) {
        (_, false) => 1,
        (ChipModel::Bm1397, true) => 4,
        (_, true) => 1 << 16,
    }
}

/// Seconds a chain needs to hash every nonce of one job: its chips split the 32-bit nonce space
/// between them by address, so the chain as a whole scans 2^32 nonces per header version. New
/// work must reach the chips sooner, or they idle until it does (ESP-Miner derives its job
/// interval from the same quantity).
pub fn full_scan_seconds(model: ChipModel, frequency: Frequency, chips: u32, versions: u32) -> f64 {
    let rate = expected_hashrate(model, frequency, chips).0;
    if rate > 0.0 {
        4_294_967_296.0 * f64::from(versions) / rate
    } else {
        f64::INFINITY
    }
}

/// How many nonces per second a chain returns when its ticket mask filters at `difficulty`:
/// each nonce costs on average `difficulty × 2^32` hashes (§11.1).
pub fn expected_nonce_rate(hashrate: HashesPerSecond, difficulty: f64) -> f64 {
    hashrate.0 / (4_294_967_296.0 * difficulty)
}
