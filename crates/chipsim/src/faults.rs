//! Fault injection, scriptable in simulated time.
//!
//! A script is a list of `{"at_s": T, "faults": {...}}` entries: from time `T` on, the chain has
//! exactly those faults (fields left out are off). An empty `faults` object heals everything.

use serde::{Deserialize, Serialize};

/// The faults in force at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Chance per byte the chain sends that one bit of it flips on the way to the host.
    pub bit_flip_rate: f64,
    /// Chance per byte the chain sends that it never arrives.
    pub drop_rate: f64,
    /// Chips (by chain index) that relay but no longer answer reads or return nonces.
    pub unresponsive: Vec<u32>,
    /// The chain is broken after this chip index: chips beyond it vanish in both directions.
    pub break_after: Option<u32>,
    /// Chips held in reset: they neither answer nor relay, so the chain ends before them.
    pub stuck_in_reset: Vec<u32>,
    /// Chance a nonce is sent twice (chips sometimes repeat nonces; drivers drop the repeat).
    pub duplicate_nonce_rate: f64,
    /// Chance a response goes out with its CRC bits wrong.
    pub bad_crc_rate: f64,
    /// Chips whose heat sink has come loose: thermal resistance ×5.
    pub thermal_runaway: Vec<u32>,
    /// The core regulator has shut down: no voltage, no hashing.
    pub regulator_fault: bool,
    /// The fan has stopped, whatever it is told: no airflow, and the tachometer reads stalled.
    pub fan_failure: bool,
}

impl Faults {
    /// How many chips, from the host's end, are still on the chain.
    pub fn reachable_chips(&self, chips: u32) -> u32 {
        let broken = self.break_after.map_or(chips, |k| (k + 1).min(chips));
        let reset = self
            .stuck_in_reset
            .iter()
            .copied()
            .min()
            .map_or(chips, |k| k.min(chips));
        broken.min(reset)
    }

    pub fn is_unresponsive(&self, chip: u32) -> bool {
        self.unresponsive.contains(&chip)
    }

    pub fn has_thermal_runaway(&self, chip: u32) -> bool {
        self.thermal_runaway.contains(&chip)
    }
}

/// One step of a script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptEntry {
    pub at_s: f64,
    /// Only this chain of a board with several; every chain when absent.
    #[serde(default)]
    pub chain: Option<u32>,
    #[serde(default)]
    pub faults: Faults,
}

/// A fault script, sorted by time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultScript {
    entries: Vec<ScriptEntry>,
    next: usize,
}

/// The script could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("fault script is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("fault script entry {index}: {reason}")]
    Invalid { index: usize, reason: String },
}

impl FaultScript {
    pub fn new(mut entries: Vec<ScriptEntry>) -> Result<Self, ScriptError> {
        for (index, entry) in entries.iter().enumerate() {
            let f = &entry.faults;
            let rates = [
                f.bit_flip_rate,
                f.drop_rate,
                f.duplicate_nonce_rate,
                f.bad_crc_rate,
            ];
            let reason = if !entry.at_s.is_finite() || entry.at_s < 0.0 {
                Some("at_s must be a time in seconds, 0 or later".to_string())
            } else if rates.iter().any(|r| !(0.0..=1.0).contains(r)) {
                Some("rates must be between 0 and 1".to_string())
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(ScriptError::Invalid { index, reason });
            }
        }
        entries.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        Ok(Self { entries, next: 0 })
    }

    pub fn from_json(text: &str) -> Result<Self, ScriptError> {
        Self::new(serde_json::from_str(text)?)
    }

    /// The entries for chain `index` (those naming it and those naming none), from the start.
    pub fn for_chain(&self, index: u32) -> Self {
        Self {
            entries: self
                .entries
                .iter()
                .filter(|e| e.chain.is_none_or(|chain| chain == index))
                .cloned()
                .collect(),
            next: 0,
        }
    }

    /// The fault set that takes over by time `now_s`, if a new one does.
    pub fn due(&mut self, now_s: f64) -> Option<Faults> {
        let mut latest = None;
        while let Some(entry) = self.entries.get(self.next).filter(|e| e.at_s <= now_s) {
            latest = Some(entry.faults.clone());
            self.next += 1;
        }
        latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_apply_in_time_order() {
        let mut script = FaultScript::from_json(
            r#"[{"at_s": 5, "faults": {}}, {"at_s": 1, "faults": {"break_after": 2}}]"#,
        )
        .expect("valid");
        assert_eq!(script.due(0.5), None);
        assert_eq!(script.due(1.0).map(|f| f.break_after), Some(Some(2)));
        assert_eq!(script.due(4.0), None);
        assert_eq!(script.due(10.0), Some(Faults::default()));
    }

    #[test]
    fn an_entry_can_name_its_chain() {
        let script = FaultScript::from_json(
            r#"[{"at_s": 1, "chain": 1, "faults": {"break_after": 2}},
                {"at_s": 2, "faults": {"drop_rate": 0.5}}]"#,
        )
        .expect("valid");
        let (mut first, mut second) = (script.for_chain(0), script.for_chain(1));
        assert_eq!(first.due(1.5), None);
        assert_eq!(second.due(1.5).map(|f| f.break_after), Some(Some(2)));
        assert_eq!(first.due(2.0).map(|f| f.drop_rate), Some(0.5));
        assert_eq!(second.due(2.0).map(|f| f.drop_rate), Some(0.5));
    }

    #[test]
    fn bad_scripts_are_refused_with_a_reason() {
        assert!(matches!(
            FaultScript::from_json("[{"),
            Err(ScriptError::Json(_))
        ));
        assert!(matches!(
            FaultScript::from_json(r#"[{"at_s": 1, "faults": {"no_such_fault": 1}}]"#),
            Err(ScriptError::Json(_))
        ));
        assert!(matches!(
            FaultScript::from_json(r#"[{"at_s": 1, "faults": {"drop_rate": 2}}]"#),
            Err(ScriptError::Invalid { index: 0, .. })
        ));
        assert!(matches!(
            FaultScript::from_json(r#"[{"at_s": -1}]"#),
            Err(ScriptError::Invalid { index: 0, .. })
        ));
    }

    #[test]
    fn reachable_chips() {
        let mut f = Faults::default();
        assert_eq!(f.reachable_chips(8), 8);
        f.break_after = Some(2);
        assert_eq!(f.reachable_chips(8), 3);
        f.stuck_in_reset = vec![1];
        assert_eq!(f.reachable_chips(8), 1);
        f.break_after = Some(20);
        f.stuck_in_reset.clear();
        assert_eq!(f.reachable_chips(8), 8);
    }
}
