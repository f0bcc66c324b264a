//! Frequency ramps in 6.25 MHz steps (§8.4), as a sans-IO sequencer: it yields frames and the
//! time to wait after each; the caller owns the UART and the clock.

use crate::command::{Command, CommandFrame, Destination};
use crate::frequency::Frequency;
use crate::model::ChipModel;
use crate::pll::{NoPllSolution, Pll0Divider, PllConstraints, PllSetting, solve};
use crate::sequence::Step;

/// ESP-Miner's step size.
pub const RAMP_STEP: Frequency = Frequency::from_khz(6_250);
/// Time for the PLL to settle between steps.
pub const STEP_SETTLE_MS: u32 = 100;
/// BM1397 spaces the four frames of one step 10 ms apart.
const BM1397_FRAME_GAP_MS: u32 = 10;

/// The frequencies a ramp from `from` to `to` visits, ending at `to` exactly. Steps sit on the
/// 6.25 MHz grid: rounding `from` down when ramping up (up when ramping down) makes the first step
/// the next grid point past the start; a move shorter than one step is a single jump.
#[derive(Debug, Clone)]
pub struct RampPoints {
    /// Next grid index, last grid index, direction.
    grid: Option<(u32, u32, bool)>,
    target: Frequency,
    target_pending: bool,
}

impl RampPoints {
    pub fn new(from: Frequency, to: Frequency) -> Self {
        let step = RAMP_STEP.khz();
        let (from_khz, to_khz) = (from.khz(), to.khz());
        let grid = if from_khz.abs_diff(to_khz) < step {
            None
        } else if to_khz > from_khz {
            let (next, last) = (from_khz / step + 1, to_khz / step);
            (next <= last).then_some((next, last, true))
        } else {
            let (current, last) = (from_khz.div_ceil(step), to_khz.div_ceil(step));
            current
                .checked_sub(1)
                .filter(|&next| next >= last)
                .map(|next| (next, last, false))
        };
        Self {
            grid,
            target: to,
            target_pending: from != to,
        }
    }
}

impl Iterator for RampPoints {
    type Item = Frequency;

    fn next(&mut self) -> Option<Frequency> {
        if let Some((next, last, up)) = self.grid {
            self.grid = match (next == last, up) {
                (true, _) => None,
                (false, true) => Some((next + 1, last, up)),
                (false, false) => Some((next - 1, last, up)),
            };
            let point = Frequency::from_khz(next * RAMP_STEP.khz());
            if point == self.target {
                self.target_pending = false;
            }
            return Some(point);
        }
        if self.target_pending {
            self.target_pending = false;
            return Some(self.target);
        }
        None
    }
}

/// The frames of a frequency ramp, with waits. Each point is solved with the model's constraints;
/// BM1397 sends 2 × (0x70 = 0x0F0F0F00) then 2 × (0x08 = PLL word) per point, BM1366+ one 0x08
/// write.
#[derive(Debug, Clone)]
pub struct FrequencyRamp {
    model: ChipModel,
    constraints: PllConstraints,
    destination: Destination,
    points: RampPoints,
    /// The current point's PLL write and how many of its frames have been yielded.
    current: Option<(CommandFrame, u8)>,
    /// The setting of the most recent point, for the caller to record.
    last: Option<PllSetting>,
}

impl FrequencyRamp {
    pub fn new(
        model: ChipModel,
        from: Frequency,
        to: Frequency,
        constraints: PllConstraints,
    ) -> Self {
        Self {
            model,
            constraints,
            destination: Destination::All,
            points: RampPoints::new(from, to),
            current: None,
            last: None,
        }
    }

    /// Ramp one chip instead of the whole chain (per-chip tuning).
    pub fn to_chip(mut self, address: u8) -> Self {
        self.destination = Destination::Chip(address);
        self
    }

    /// The PLL setting of the last point yielded so far.
    pub fn last_setting(&self) -> Option<PllSetting> {
        self.last
    }

    /// Frames per point and the step for frame `index` of a point whose PLL write is `pll`.
    fn point_step(&self, pll: CommandFrame, index: u8) -> Option<Step> {
        match (self.model, index) {
            (ChipModel::Bm1397, 0 | 1) => {
                let divider = Command::write(self.destination, Pll0Divider::DRIVERS).encode();
                Some(Step::send(divider, BM1397_FRAME_GAP_MS))
            }
            (ChipModel::Bm1397, 2) => Some(Step::send(pll, BM1397_FRAME_GAP_MS)),
            (ChipModel::Bm1397, 3) | (_, 0) => Some(Step::send(pll, STEP_SETTLE_MS)),
            _ => None,
        }
    }
}

impl Iterator for FrequencyRamp {
    type Item = Result<Step, NoPllSolution>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((pll, index)) = self.current
                && let Some(step) = self.point_step(pll, index)
            {
                self.current = Some((pll, index + 1));
                return Some(Ok(step));
            }
            let point = self.points.next()?;
            match solve(self.model, point, self.constraints) {
                Ok(setting) => {
                    self.last = Some(setting);
                    let pll = Command::write(self.destination, setting.parameter).encode();
                    self.current = Some((pll, 0));
                }
                Err(e) => {
                    // Stop here: a ramp that cannot reach a point must not skip past it.
                    self.points = RampPoints::new(point, point);
                    self.current = None;
                    return Some(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn khz(points: RampPoints) -> ([u32; 128], usize) {
        let mut out = [0u32; 128];
        let mut n = 0;
        for p in points {
            out[n] = p.khz();
            n += 1;
        }
        (out, n)
    }

    #[test]
    fn esp_miner_example_50_to_525() {
        let (points, n) = khz(RampPoints::new(
            Frequency::from_khz(50_000),
            Frequency::from_khz(525_000),
        ));
        assert_eq!(n, 76);
        assert_eq!(&points[..3], &[56_250, 62_500, 68_750]);
        assert_eq!(points[n - 1], 525_000);
    }

    #[test]
    fn ramps_down_on_the_grid() {
        let (points, n) = khz(RampPoints::new(
            Frequency::from_khz(525_000),
            Frequency::from_khz(50_000),
        ));
        assert_eq!(n, 76);
        assert_eq!(&points[..2], &[518_750, 512_500]);
        assert_eq!(points[n - 1], 50_000);
    }

    #[test]
    fn off_grid_target_ends_exactly() {
        let (points, n) = khz(RampPoints::new(
            Frequency::from_khz(50_000),
            Frequency::from_khz(70_000),
        ));
        assert_eq!(&points[..n], &[56_250, 62_500, 68_750, 70_000]);
        let (points, n) = khz(RampPoints::new(
            Frequency::from_khz(52_000),
            Frequency::from_khz(62_500),
        ));
        assert_eq!(&points[..n], &[56_250, 62_500]);
    }

    #[test]
    fn short_moves_jump_and_no_move_is_empty() {
        let (points, n) = khz(RampPoints::new(
            Frequency::from_khz(500_000),
            Frequency::from_khz(503_000),
        ));
        assert_eq!(&points[..n], &[503_000]);
        let (points, n) = khz(RampPoints::new(
            Frequency::from_khz(503_000),
            Frequency::from_khz(500_000),
        ));
        assert_eq!(&points[..n], &[500_000]);
        let (_, n) = khz(RampPoints::new(
            Frequency::from_khz(500_000),
            Frequency::from_khz(500_000),
        ));
        assert_eq!(n, 0);
        let (points, n) = khz(RampPoints::new(
            Frequency::from_khz(6_250),
            Frequency::from_khz(0),
        ));
        assert_eq!(&points[..n], &[0]);
    }

    #[test]
    fn bm1397_steps_write_the_divider_twice_then_the_pll_twice() {
        let model = ChipModel::Bm1397;
        let mut ramp = FrequencyRamp::new(
            model,
            Frequency::from_khz(418_750),
            Frequency::from_khz(425_000),
            PllConstraints::esp_miner(model),
        );
        let frames: [Step; 4] =
            core::array::from_fn(|_| ramp.next().expect("step").expect("solvable"));
        assert!(ramp.next().is_none());
        let Step::Send { frame, .. } = frames[0] else {
            panic!("send")
        };
        assert_eq!(
            frame.as_bytes()[..10],
            [0x55, 0xAA, 0x51, 0x09, 0x00, 0x70, 0x0F, 0x0F, 0x0F, 0x00]
        );
        let Step::Send { frame, wait_ms } = frames[3] else {
            panic!("send")
        };
        assert_eq!(frame.as_bytes()[5..10], [0x08, 0x40, 0x44, 0x02, 0x21]);
        assert_eq!(wait_ms, STEP_SETTLE_MS);
    }

    #[test]
    fn bm1366_ramp_is_one_write_per_point() {
        let model = ChipModel::Bm1366;
        let ramp = FrequencyRamp::new(
            model,
            model.reset_frequency(),
            model.default_frequency(),
            PllConstraints::esp_miner(model),
        );
        let mut count = 0;
        let mut last = None;
        for step in ramp {
            let Ok(Step::Send { frame, .. }) = step else {
                panic!("send")
            };
            count += 1;
            last = Some(frame);
        }
        assert_eq!(count, (485_000 - 50_000) / 6_250 + 1);
        // 485 MHz = 0x50C20240 (§8.3).
        assert_eq!(
            last.expect("frames").as_bytes()[6..10],
            [0x50, 0xC2, 0x02, 0x40]
        );
    }
}
