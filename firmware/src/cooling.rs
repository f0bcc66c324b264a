//! The board's clock and fan governors, once a second of chip time: hashboard's PI fan
//! controller and thermal guard (pure decisions) applied to the board, and the power limiter
//! that holds a power target by the clock. The guard's clock changes are transient — the
//! operator's clock stays the intent, and the guard steps down from it and resumes below it
//! after an overheat; while the guard throttles, the power limiter waits.

use bm13xx::Frequency;
use hashboard::thermal::{FanController, ThermalAction, ThermalGuard};
use tracing::{error, info, warn};

use crate::board::{BoardError, Hardware};

#[derive(Debug)]
pub struct Cooling {
    fan: FanController,
    guard: ThermalGuard,
    /// Each chip's clock as the operator (or the tuner, or the power limiter) set it, kHz; the
    /// guard runs the chips at a fraction of it.
    pub base_clocks: Vec<u32>,
    /// When the last round ran, in the chips' seconds.
    last_s: Option<f64>,
    /// A duty the operator fixed (local API); the guard still throttles and stops.
    manual_fan: Option<f32>,
    /// Watts to hold by the clock, and when the limiter last acted (chip seconds).
    power_target: Option<f64>,
    last_power_step_s: f64,
    /// Each chip's highest clock the limiter may raise it to: its clean clock at the voltage a
    /// tuned curve's point set (`Unit::aim_power`). Above it the chips would err, not hash.
    pub clock_ceiling: Option<Vec<u32>>,
    /// The last limiter step wanted more power and every clock was at its ceiling: the chain's
    /// point is too low for the target (its owner moves it up the curve).
    pub capped_under: bool,
}

/// The limiter acts at most this often: a clock change must settle before power is read again.
const POWER_STEP_INTERVAL_S: f64 = 3.0;
/// Within this fraction of the target the clock is left alone.
const POWER_DEADBAND: f64 = 0.02;
/// One step changes the clock by at most these factors, so an error in a reading cannot swing it.
const POWER_STEP_DOWN: f64 = 0.8;
const POWER_STEP_UP: f64 = 1.15;

/// The clock that moves the board's power from `measured_w` towards `target_w`, or `None` when
/// it is close enough. Power is close to linear in the clock at a fixed voltage; the static part
/// makes one step fall short, and the next one closes the gap.
pub fn power_step(
    target_w: f64,
    measured_w: f64,
    current: Frequency,
    board: &hashboard::board::BoardDescription,
) -> Option<Frequency> {
    if !(measured_w.is_finite() && measured_w > 0.0) {
        return None;
    }
    let ratio = target_w / measured_w;
    if (ratio - 1.0).abs() <= POWER_DEADBAND {
        return None;
    }
    let factor = ratio.clamp(POWER_STEP_DOWN, POWER_STEP_UP);
    let khz = (f64::from(current.khz()) * factor).round() as u32;
    let next = board.clamp_frequency(Frequency::from_khz(khz));
    // At a limit (or a step under a kHz): nothing more the clock can do.
    (next.khz().abs_diff(current.khz()) >= 1_000).then_some(next)
}

/// Every clock times `factor`, within the board's limits.
pub fn scale_clocks(
    clocks: &[u32],
    factor: f64,
    board: &hashboard::board::BoardDescription,
) -> Vec<u32> {
    clocks
        .iter()
        .map(|&khz| {
            let scaled = (f64::from(khz) * factor).round() as u32;
            board.clamp_frequency(Frequency::from_khz(scaled)).khz()
        })
        .collect()
}

/// How often the fan and the guard decide, in the chips' seconds (simulated ones in `--sim`, so
/// the loop keeps pace with a faster-than-real-time simulator).
const INTERVAL_S: f64 = 1.0;

impl Cooling {
    pub fn new(hw: &impl Hardware) -> Self {
        let board = hw.description();
        Self {
            fan: FanController::new(&board.thermal, board.min_fan_percent),
            guard: ThermalGuard::new(board.thermal),
            base_clocks: hw.clocks().to_vec(),
            last_s: None,
            manual_fan: None,
            power_target: None,
            last_power_step_s: f64::NEG_INFINITY,
            clock_ceiling: None,
            capped_under: false,
        }
    }

    /// One power-limiter step, if a target is set and the last step has settled.
    async fn limit_power(&mut self, hw: &mut impl Hardware, now_s: f64) {
        let Some(target) = self.power_target else {
            return;
        };
        if hw.asleep() || now_s - self.last_power_step_s < POWER_STEP_INTERVAL_S {
            return;
        }
        let Some(measured) = hw.power_w() else {
            return;
        };
        let current = hw.frequency();
        if let Some(next) = power_step(target, measured, current, hw.description()) {
            self.last_power_step_s = now_s;
            // Every chip moves by the same factor: a tuned chain keeps each chip's share.
            let factor = f64::from(next.khz()) / f64::from(current.khz().max(1));
            let mut clocks = scale_clocks(hw.clocks(), factor, hw.description());
            if let Some(ceiling) = &self.clock_ceiling {
                for (clock, &most) in clocks.iter_mut().zip(ceiling) {
                    *clock = (*clock).min(most);
                }
                if factor > 1.0 && clocks.as_slice() == hw.clocks() {
                    self.capped_under = true;
                    return;
                }
            }
            info!(
                target_w = target,
                measured_w = measured,
                mhz = next.mhz(),
                "power target: clock step"
            );
            match hw.set_clocks(&clocks).await {
                // The clocks the guard scales from are now the limiter's.
                Ok(()) => self.base_clocks = hw.clocks().to_vec(),
                Err(e) => warn!(error = %e, "power target: clock step failed"),
            }
        }
    }

    /// Whether the guard has stopped the chips until they cool.
    pub fn overheated(&self) -> bool {
        !self.guard.may_hash()
    }

    /// The clocks to run at now: the base ones, scaled down while the guard throttles.
    fn scaled(&self, hw: &impl Hardware, scale: f32) -> Vec<u32> {
        scale_clocks(&self.base_clocks, f64::from(scale), hw.description())
    }

    /// Whether the guard is leaving the clocks alone (not throttling, not stopped).
    pub fn guard_idle(&self) -> bool {
        self.guard.state() == hashboard::thermal::ThermalState::Normal
    }

    /// Fixes the fan at `percent` (at least the board's minimum), or back to automatic.
    pub fn set_manual_fan(
        &mut self,
        hw: &mut impl Hardware,
        percent: Option<f32>,
    ) -> Result<(), BoardError> {
        if !hw.has_thermal_sensor() {
            return Err(BoardError::NoFan);
        }
        if let Some(percent) = percent {
            if !(0.0..=100.0).contains(&percent) {
                return Err(BoardError::FanDuty(percent));
            }
            hw.set_fan_percent(percent)?;
        }
        self.manual_fan = percent;
        Ok(())
    }

    /// Holds `watts` by the clock from now on, or (`None`) returns to the operator's clock.
    pub fn set_power_target(&mut self, watts: Option<f64>) {
        self.power_target = watts;
        // Whoever sets the clocks next says how high they may go.
        self.clock_ceiling = None;
        self.last_power_step_s = f64::NEG_INFINITY;
    }

    pub fn power_target(&self) -> Option<f64> {
        self.power_target
    }

    /// Whether a round is due at `now_s` (the chips' seconds since start).
    pub fn due(&self, now_s: f64) -> bool {
        self.last_s.is_none_or(|last| now_s - last >= INTERVAL_S)
    }

    /// One round: read the sensor, set the fan, and let the guard throttle, stop or resume.
    /// A board without a temperature sensor gets none of this (the daemon warned at start).
    pub async fn tick(&mut self, hw: &mut impl Hardware, now_s: f64, asleep_by_intent: bool) {
        let dt = self.last_s.map_or(INTERVAL_S, |last| now_s - last) as f32;
        self.last_s = Some(now_s);
        if !hw.has_thermal_sensor() {
            // No fan or guard to run, but a power target still needs holding.
            self.limit_power(hw, now_s).await;
            return;
        }
        // A wired sensor that does not answer reads as no reading: fan flat out, chains stopped.
        let temp = hw.board_temp_c().map(|t| t as f32);
        // An asleep board idles at the minimum fan its sleep set; the guard still watches a
        // thermal stop until it has cooled.
        if hw.asleep() && !self.overheated() {
            return;
        }
        let mut decision = self.fan.decide(temp, dt);
        // A fixed duty holds unless the controller wants flat out (too hot, or no reading).
        if let Some(manual) = self.manual_fan
            && decision.percent < 100.0
        {
            decision.percent = manual;
        }
        if let Err(e) = hw.set_fan_percent(decision.percent) {
            warn!(error = %e, "cannot set the fan");
        }
        let fan = hw.fan();
        let action = self
            .guard
            .decide(now_s, temp, fan.map(|(rpm, _)| rpm), decision.percent);
        match action {
            ThermalAction::Hold => {
                if self.guard_idle() {
                    self.limit_power(hw, now_s).await;
                }
            }
            ThermalAction::Throttle {
                clock_scale,
                reason,
            } => {
                let target = self.scaled(hw, clock_scale);
                warn!(?reason, clock_scale, "thermal: throttling");
                if let Err(e) = hw.set_clocks(&target).await {
                    error!(error = %e, "thermal: throttling failed");
                }
            }
            ThermalAction::Stop { reason } => {
                error!(?reason, "thermal: stopping the chains until they cool");
                if let Err(e) = hw.sleep().await {
                    error!(error = %e, "thermal: stop failed");
                }
            }
            ThermalAction::Resume {
                clock_scale,
                reason,
            } if !asleep_by_intent => {
                let target = self.scaled(hw, clock_scale);
                warn!(?reason, clock_scale, "thermal: resuming");
                let resumed = match hw.set_clocks(&target).await {
                    Ok(()) => hw.power_up().await,
                    Err(e) => Err(e),
                };
                if let Err(e) = resumed {
                    error!(error = %e, "thermal: resume failed");
                }
            }
            // Cooled, but the operator put the machine to sleep meanwhile: it stays asleep.
            ThermalAction::Resume { .. } => info!("thermal: cooled; staying asleep as asked"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hashboard::board::BM1397_HASHBOARD_12 as BOARD;

    #[test]
    fn the_power_limiter_converges_on_a_linear_board_with_static_power() {
        // 4 W static plus 0.06 W per MHz: a step by the ratio falls short, the next closes in.
        let power = |f: Frequency| 4.0 + 0.06 * f.mhz();
        let mut clock = BOARD.default_frequency;
        let target = 20.0;
        let mut steps = 0;
        while let Some(next) = power_step(target, power(clock), clock, &BOARD) {
            clock = next;
            steps += 1;
            assert!(steps < 10, "does not converge: {} MHz", clock.mhz());
        }
        assert!(
            (power(clock) / target - 1.0).abs() <= POWER_DEADBAND + 0.01,
            "{}",
            power(clock)
        );
        assert!(steps >= 2, "one step cannot absorb the static power");
        // Out of reach: the clock stops at the board's limit instead of hunting.
        let mut clock = BOARD.default_frequency;
        while let Some(next) = power_step(1.0, power(clock), clock, &BOARD) {
            clock = next;
        }
        assert_eq!(clock, BOARD.min_frequency);
        assert_eq!(power_step(20.0, f64::NAN, clock, &BOARD), None);
        assert_eq!(power_step(20.0, 0.0, clock, &BOARD), None);
    }
}
