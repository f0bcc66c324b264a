//! The demo's story clock: months of market in about a minute of wall time, at a steady pace
//! except through the windows worth watching (the demand-response event), which run slowly
//! enough for real miners to be seen answering.

/// A stretch of the story at one pace.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stretch {
    wall_from: f64,
    story_from: u64,
    story_to: u64,
    /// Story seconds per wall second.
    pace: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoryClock {
    stretches: Vec<Stretch>,
}

impl StoryClock {
    /// The story from `start` to `end` told in `wall_s` seconds, the `slow` windows (clipped to
    /// the story, overlaps merged) at `slow_pace` story seconds per wall second and the rest at
    /// whatever steady pace fits.
    pub fn new(
        start: u64,
        end: u64,
        slow: &[(u64, u64)],
        slow_pace: f64,
        wall_s: f64,
    ) -> Result<Self, String> {
        if end <= start {
            return Err("the story is empty".into());
        }
        if !(slow_pace.is_finite() && slow_pace > 0.0 && wall_s.is_finite() && wall_s > 0.0) {
            return Err("paces and the wall time must be positive".into());
        }
        let mut windows: Vec<(u64, u64)> = slow
            .iter()
            .map(|&(from, to)| (from.clamp(start, end), to.clamp(start, end)))
            .filter(|(from, to)| from < to)
            .collect();
        windows.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (from, to) in windows {
            match merged.last_mut() {
                Some(last) if from <= last.1 => last.1 = last.1.max(to),
                _ => merged.push((from, to)),
            }
        }
        let slow_story: u64 = merged.iter().map(|(from, to)| to - from).sum();
        let fast_wall = wall_s - slow_story as f64 / slow_pace;
        let fast_story = end - start - slow_story;
        if fast_story > 0 && fast_wall <= 0.0 {
            return Err(format!(
                "the slow windows alone take {:.0} s, more than the {wall_s:.0} s given",
                slow_story as f64 / slow_pace
            ));
        }
        let fast_pace = if fast_story > 0 {
            fast_story as f64 / fast_wall
        } else {
            slow_pace
        };
        let mut stretches = Vec::new();
        let mut story = start;
        let mut wall = 0.0;
        let mut push = |from: u64, to: u64, pace: f64, wall: &mut f64| {
            if from < to {
                stretches.push(Stretch {
                    wall_from: *wall,
                    story_from: from,
                    story_to: to,
                    pace,
                });
                *wall += (to - from) as f64 / pace;
            }
        };
        for (from, to) in merged {
            push(story, from, fast_pace, &mut wall);
            push(from, to, slow_pace, &mut wall);
            story = to;
        }
        push(story, end, fast_pace, &mut wall);
        Ok(Self { stretches })
    }

    /// The story's time `wall_s` seconds after it began; `None` once it is over.
    pub fn story_at(&self, wall_s: f64) -> Option<u64> {
        let stretch = self
            .stretches
            .iter()
            .rev()
            .find(|s| s.wall_from <= wall_s.max(0.0))?;
        let at = stretch.story_from as f64 + (wall_s.max(0.0) - stretch.wall_from) * stretch.pace;
        (at < stretch.story_to as f64).then_some(at as u64)
    }

    /// Story seconds per wall second at story time `at`.
    pub fn pace_at(&self, at: u64) -> f64 {
        self.stretches
            .iter()
            .find(|s| s.story_from <= at && at < s.story_to)
            .or(self.stretches.last())
            .map_or(1.0, |s| s.pace)
    }

    /// How long the whole story takes, wall seconds.
    pub fn wall_length(&self) -> f64 {
        self.stretches.last().map_or(0.0, |s| {
            s.wall_from + (s.story_to - s.story_from) as f64 / s.pace
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: u64 = 86_400;

    #[test]
    fn a_hundred_days_fit_the_wall_time_with_the_event_in_slow_motion() {
        let start = 1_764_547_200;
        let event = (start + 40 * DAY, start + 40 * DAY + 5 * 3600);
        let clock =
            StoryClock::new(start, start + 100 * DAY, &[event], 1800.0, 50.0).expect("fits");
        assert!((clock.wall_length() - 50.0).abs() < 1e-6);
        assert_eq!(clock.pace_at(event.0 + 60), 1800.0);
        // The other 99.8 days share the 40 s the event leaves.
        let fast = (100 * DAY - 5 * 3600) as f64 / 40.0;
        assert!((clock.pace_at(start) - fast).abs() < 1e-6);
        assert_eq!(clock.story_at(0.0), Some(start));
        assert_eq!(clock.story_at(50.001), None);
        // The event starts where the fast stretch before it ends.
        let event_wall = (event.0 - start) as f64 / fast;
        let at = clock.story_at(event_wall + 2.0).expect("in the event");
        assert!(at.abs_diff(event.0 + 3600) <= 1, "{at}");
    }

    #[test]
    fn windows_outside_the_story_or_overlapping_are_tidied() {
        let clock = StoryClock::new(
            1000,
            2000,
            &[(500, 1100), (1050, 1200), (3000, 4000), (1500, 1500)],
            10.0,
            30.0,
        )
        .expect("fits");
        assert_eq!(clock.pace_at(1150), 10.0);
        assert!(clock.pace_at(1300) > 10.0);
        assert!((clock.wall_length() - 30.0).abs() < 1e-9);
    }

    #[test]
    fn a_story_that_cannot_fit_is_refused() {
        assert!(StoryClock::new(0, 1000, &[(0, 900)], 10.0, 60.0).is_err());
        assert!(StoryClock::new(10, 10, &[], 10.0, 60.0).is_err());
        assert!(StoryClock::new(0, 10, &[], 0.0, 60.0).is_err());
        assert!(StoryClock::new(0, 10, &[], 1.0, f64::NAN).is_err());
    }

    proptest! {
        #[test]
        fn story_time_only_moves_forward(
            length in 1_000u64..10_000_000,
            from in 0.0f64..1.0,
            width in 0.0f64..0.2,
            steps in proptest::collection::vec(0.0f64..70.0, 1..40),
        ) {
            let start = 1_700_000_000;
            let a = start + (length as f64 * from) as u64;
            let b = a + (length as f64 * width) as u64;
            let slow_pace = (length as f64 / 600.0).max(1.0);
            let Ok(clock) = StoryClock::new(start, start + length, &[(a, b)], slow_pace, 60.0) else {
                return Ok(());
            };
            let mut walls = steps;
            walls.sort_by(f64::total_cmp);
            let mut last = start;
            for wall in walls {
                match clock.story_at(wall) {
                    Some(at) => {
                        prop_assert!(at >= last && at < start + length);
                        last = at;
                    }
                    None => prop_assert!(wall >= clock.wall_length() - 1e-6),
                }
            }
        }
    }
}
