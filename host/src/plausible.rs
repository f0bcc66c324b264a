//! What a miner reports, checked against physics before the agent believes it. A report outside
//! these bounds is refused whole (counted and logged): one absurd figure — a power of 1e300 W, a
//! nameplate of 1e300 TH/s — would otherwise reach the planner's breakevens, the site's cap
//! arithmetic, the dashboard and `/metrics`. A report dated ahead of the agent's clock is refused
//! too: the newer of a miner's state and telemetry decides what it is set to, so a retained
//! message from the future would win over everything the real miner says.
//!
//! The bounds are deliberately wide — they say what no single machine can be, not what a good
//! one is. The largest production miners in 2026 draw about 11 kW and hash about 1.2 PH/s
//! (hydro-cooled 3U units); a Bitaxe draws 15 W.

use fleet_proto::messages::{State, Telemetry};

/// How far ahead of the agent's clock a report may be dated: the commands' clock-skew allowance
/// (docs/mqtt.md), so the same NTP-synced site passes both ways.
pub const AHEAD_S: u64 = 30;
/// No one machine draws more.
pub const MAX_POWER_W: f64 = 50_000.0;
/// No one machine hashes faster (TH/s).
pub const MAX_HASHRATE_THS: f64 = 10_000.0;
/// Chip and board temperatures, °C: wider than any sensor reads (they saturate near 150 °C), so
/// only nonsense is refused.
const TEMP_C: (f64, f64) = (-273.15, 1_000.0);
/// Chains, fans and curve points a report may list: enough for any machine, and a bound on what
/// one message can make the agent hold.
const MAX_ITEMS: usize = 64;
/// Chips per machine (an S21 Hyd has 3 × 216).
const MAX_CHIPS: u32 = 100_000;
/// Free text from a miner (firmware, model, chip): longer is cut.
pub const MAX_TEXT_CHARS: usize = 128;

/// Why a report is not believed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Implausible {
    #[error("dated {at}, {ahead} s ahead of this host's clock (at most {AHEAD_S} s)")]
    FromTheFuture { at: u64, ahead: u64 },
    #[error("{field} is {value}, outside {min}..={max}")]
    OutOfRange {
        field: &'static str,
        value: f64,
        min: f64,
        max: f64,
    },
    #[error("{field} lists {count} entries (at most {MAX_ITEMS})")]
    TooMany { field: &'static str, count: usize },
}

fn within(field: &'static str, value: f64, min: f64, max: f64) -> Result<(), Implausible> {
    // NaN fails both comparisons, so it is refused with the rest.
    if value >= min && value <= max {
        Ok(())
    } else {
        Err(Implausible::OutOfRange {
            field,
            value,
            min,
            max,
        })
    }
}

fn optional(
    field: &'static str,
    value: Option<f64>,
    min: f64,
    max: f64,
) -> Result<(), Implausible> {
    value.map_or(Ok(()), |v| within(field, v, min, max))
}

fn not_ahead(at: u64, now: u64) -> Result<(), Implausible> {
    if at > now.saturating_add(AHEAD_S) {
        return Err(Implausible::FromTheFuture {
            at,
            ahead: at - now,
        });
    }
    Ok(())
}

fn few(field: &'static str, count: usize) -> Result<(), Implausible> {
    if count > MAX_ITEMS {
        return Err(Implausible::TooMany { field, count });
    }
    Ok(())
}

/// A telemetry report received at `now` (host clock, unix s).
pub fn telemetry(t: &Telemetry, now: u64) -> Result<(), Implausible> {
    not_ahead(t.at, now)?;
    within("power_w", t.power_w, 0.0, MAX_POWER_W)?;
    for (field, value) in [
        ("hashrate_ths.s5", t.hashrate_ths.s5),
        ("hashrate_ths.m1", t.hashrate_ths.m1),
        ("hashrate_ths.m15", t.hashrate_ths.m15),
    ] {
        within(field, value, 0.0, MAX_HASHRATE_THS)?;
    }
    // A ratio the miner derives: while the hash rate ramps from zero it is legitimately huge, so
    // only a negative or non-finite one is refused.
    optional("efficiency_j_per_th", t.efficiency_j_per_th, 0.0, f64::MAX)?;
    optional("board_temp_c", t.board_temp_c, TEMP_C.0, TEMP_C.1)?;
    within("share_difficulty", t.share_difficulty, 0.0, f64::MAX)?;
    within("hw_error_rate", t.hw_error_rate, 0.0, 1.0)?;
    few("fans", t.fans.len())?;
    for fan in &t.fans {
        within("fans.percent", fan.percent, 0.0, 100.0)?;
    }
    few("chains", t.chains.len())?;
    for chain in &t.chains {
        within(
            "chains.hashrate_ths",
            chain.hashrate_ths,
            0.0,
            MAX_HASHRATE_THS,
        )?;
        within("chains.hw_error_rate", chain.hw_error_rate, 0.0, 1.0)?;
        optional(
            "chains.max_chip_temp_c",
            chain.max_chip_temp_c,
            TEMP_C.0,
            TEMP_C.1,
        )?;
    }
    Ok(())
}

/// A state report received at `now` (host clock, unix s).
pub fn state(s: &State, now: u64) -> Result<(), Implausible> {
    not_ahead(s.at, now)?;
    // A nameplate of 0 is a machine that does not know itself yet; the planner skips it.
    within("nameplate.power_w", s.nameplate.power_w, 0.0, MAX_POWER_W)?;
    within(
        "nameplate.hashrate_ths",
        s.nameplate.hashrate_ths,
        0.0,
        MAX_HASHRATE_THS,
    )?;
    within(
        "nameplate.chips",
        f64::from(s.nameplate.chips),
        0.0,
        f64::from(MAX_CHIPS),
    )?;
    optional("power_target_w", s.power_target_w, 1.0, MAX_POWER_W)?;
    few("curve", s.curve.len())?;
    for point in &s.curve {
        within("curve.power_w", point.power_w, 0.0, MAX_POWER_W)?;
        within(
            "curve.hashrate_ths",
            point.hashrate_ths,
            0.0,
            MAX_HASHRATE_THS,
        )?;
    }
    Ok(())
}

/// `text` fit to show a person: control characters and the bidirectional overrides that can
/// make a terminal show text in another order than it is (U+202A–U+202E, U+2066–U+2069) become
/// `?`, and it is cut at [`MAX_TEXT_CHARS`].
pub fn printable(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_TEXT_CHARS)
        .map(|c| {
            let bidi = matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi { '?' } else { c }
        })
        .collect();
    if text.chars().nth(MAX_TEXT_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests;
