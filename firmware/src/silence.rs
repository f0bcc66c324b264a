//! Chips that stop answering while the chain runs: a chip dead of its own (a cracked die, a
//! lifted ball) or cut off behind a broken link still counts in the enumeration, so the chain
//! would report every chip up while part of it hashes nothing. A chip counts as silent once it
//! has sent nothing — no valid nonce, no erring one — for as long as it takes to find
//! [`SILENT_AFTER_NONCES`] nonces at its clock and the chain's ticket; one nonce brings it back.

/// Nonces' worth of silence before a chip counts as dead. Nonces arrive as a Poisson process,
/// so a live chip goes this long without one with probability e^-25 ≈ 1e-11 per window: about
/// one false alarm a century for a 300-chip machine, and that one heals with the next nonce.
pub const SILENT_AFTER_NONCES: f64 = 25.0;

/// A chip going silent or coming back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    Silent { chip: usize, quiet_s: f64 },
    Back { chip: usize },
}

#[derive(Debug, Clone, Copy)]
struct Heard {
    /// Nonces (valid and erring) counted when last seen to change.
    answers: u64,
    /// Chip time of that change (or of the watch's start).
    at_s: f64,
    silent: bool,
}

/// One chain's watch over its chips.
#[derive(Debug, Default)]
pub struct SilenceWatch {
    chips: Vec<Heard>,
}

impl SilenceWatch {
    /// Forgets what it heard: the chain was slept, stopped or lost, and its chips start afresh
    /// at the next look.
    pub fn reset(&mut self) {
        self.chips.clear();
    }

    /// Chips that count as silent now.
    pub fn silent(&self) -> u32 {
        self.chips.iter().filter(|c| c.silent).count() as u32
    }

    /// Takes each chip's answers so far (`answers[i]`, counted since the chain was initialised)
    /// and the nonces a second it should find (`expected_per_s[i]`) at chip time `chip_s`; the
    /// chips that went silent or came back since the last look.
    pub fn observe(&mut self, chip_s: f64, answers: &[u64], expected_per_s: &[f64]) -> Vec<Change> {
        // A different chain (re-enumerated) or counts that went down (re-initialised): start over.
        let restarted = self.chips.len() != answers.len()
            || self.chips.iter().zip(answers).any(|(c, &n)| n < c.answers);
        if restarted {
            self.chips = answers
                .iter()
                .map(|&answers| Heard {
                    answers,
                    at_s: chip_s,
                    silent: false,
                })
                .collect();
            return Vec::new();
        }
        let mut changes = Vec::new();
        for (chip, (heard, &answers)) in self.chips.iter_mut().zip(answers).enumerate() {
            if answers > heard.answers {
                heard.answers = answers;
                heard.at_s = chip_s;
                if heard.silent {
                    heard.silent = false;
                    changes.push(Change::Back { chip });
                }
                continue;
            }
            let rate = expected_per_s.get(chip).copied().unwrap_or(0.0);
            // A chip clocked to nothing (or a rate that is not a number) is not expected to
            // answer: it cannot be found silent.
            if heard.silent || !(rate.is_finite() && rate > 0.0) {
                continue;
            }
            let quiet_s = chip_s - heard.at_s;
            if quiet_s * rate >= SILENT_AFTER_NONCES {
                heard.silent = true;
                changes.push(Change::Silent { chip, quiet_s });
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: f64 = 0.25;

    /// Seconds of silence that make a chip at `RATE` silent.
    fn window() -> f64 {
        SILENT_AFTER_NONCES / RATE
    }

    #[test]
    fn a_chip_that_stops_answering_is_silent_after_its_window_and_back_with_one_nonce() {
        let mut watch = SilenceWatch::default();
        let rates = [RATE; 3];
        assert!(watch.observe(0.0, &[0, 0, 0], &rates).is_empty());
        // Chips 0 and 2 keep answering; chip 1 never does.
        let mut t = 0.0;
        let mut counts = [0u64, 0, 0];
        let mut changes = Vec::new();
        while t < window() + 10.0 {
            t += 1.0;
            counts[0] += 1;
            counts[2] += 1;
            changes.extend(watch.observe(t, &counts, &rates));
        }
        assert_eq!(
            changes,
            [Change::Silent {
                chip: 1,
                quiet_s: window()
            }]
        );
        assert_eq!(watch.silent(), 1);
        counts[1] = 1;
        assert_eq!(
            watch.observe(t + 1.0, &counts, &rates),
            [Change::Back { chip: 1 }]
        );
        assert_eq!(watch.silent(), 0);
    }

    #[test]
    fn silence_shorter_than_the_window_is_not_death() {
        let mut watch = SilenceWatch::default();
        watch.observe(0.0, &[5], &[RATE]);
        assert!(watch.observe(window() - 0.5, &[5], &[RATE]).is_empty());
        assert_eq!(watch.silent(), 0);
    }

    #[test]
    fn a_slower_clock_is_given_a_longer_window_and_a_stopped_one_none() {
        let mut watch = SilenceWatch::default();
        watch.observe(0.0, &[0, 0], &[RATE / 2.0, 0.0]);
        let changes = watch.observe(window() + 1.0, &[0, 0], &[RATE / 2.0, 0.0]);
        assert!(changes.is_empty(), "{changes:?}");
        let changes = watch.observe(2.0 * window(), &[0, 0], &[RATE / 2.0, f64::NAN]);
        assert_eq!(changes.len(), 1, "{changes:?}");
    }

    #[test]
    fn a_reinitialised_chain_starts_afresh() {
        let mut watch = SilenceWatch::default();
        watch.observe(0.0, &[10, 10], &[RATE; 2]);
        watch.observe(window() + 1.0, &[20, 10], &[RATE; 2]);
        assert_eq!(watch.silent(), 1);
        // Counts went down: the chain was re-initialised and nobody is silent yet.
        assert!(
            watch
                .observe(window() + 2.0, &[0, 0], &[RATE; 2])
                .is_empty()
        );
        assert_eq!(watch.silent(), 0);
        watch.reset();
        assert_eq!(watch.silent(), 0);
    }
}
