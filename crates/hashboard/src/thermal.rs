//! Fan control and the thermal guard: pure decisions with reasons, no I/O.
//!
//! The caller reads the chip temperature and the fan's speed, asks for decisions, and applies
//! them (fan duty, clock, regulator). Every decision says why, so logs and acks can too.

use crate::board::ThermalLimits;

/// Why the fan runs at the duty it was given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FanReason {
    /// Holding the chips at the target temperature.
    Regulating { temp_c: f32, target_c: f32 },
    /// Cool enough that the minimum safe duty will do.
    Minimum,
    /// At or past the throttle temperature: flat out.
    TooHot { temp_c: f32 },
    /// No temperature reading: flat out is the only safe choice.
    NoReading,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FanDecision {
    pub percent: f32,
    pub reason: FanReason,
}

/// A PI fan controller on chip temperature (derivative adds nothing but noise at the rates
/// temperatures move). Anti-windup: the integral only grows while the output is not saturated.
#[derive(Debug, Clone, PartialEq)]
pub struct FanController {
    target_c: f32,
    throttle_c: f32,
    min_percent: f32,
    kp: f32,
    ki: f32,
    integral: f32,
}

impl FanController {
    /// Gains per °C of error: 8 %/°C proportional, 0.5 %/(°C·s) integral.
    pub fn new(limits: &ThermalLimits, min_percent: f32) -> Self {
        Self {
            target_c: limits.target_c,
            throttle_c: limits.throttle_c,
            min_percent,
            kp: 8.0,
            ki: 0.5,
            integral: 0.0,
        }
    }

    pub fn decide(&mut self, temp_c: Option<f32>, dt_s: f32) -> FanDecision {
        let Some(temp_c) = temp_c.filter(|t| t.is_finite()) else {
            return FanDecision {
                percent: 100.0,
                reason: FanReason::NoReading,
            };
        };
        if temp_c >= self.throttle_c {
            return FanDecision {
                percent: 100.0,
                reason: FanReason::TooHot { temp_c },
            };
        }
        let error = temp_c - self.target_c;
        let unclamped = self.min_percent + self.kp * error + self.ki * self.integral;
        let saturated_high = unclamped >= 100.0 && error > 0.0;
        let saturated_low = unclamped <= self.min_percent && error < 0.0;
        if !saturated_high && !saturated_low {
            self.integral += error * dt_s.max(0.0);
        }
        let percent = (self.min_percent + self.kp * error + self.ki * self.integral)
            .clamp(self.min_percent, 100.0);
        let reason = if percent <= self.min_percent {
            FanReason::Minimum
        } else {
            FanReason::Regulating {
                temp_c,
                target_c: self.target_c,
            }
        };
        FanDecision { percent, reason }
    }
}

/// Where the guard is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThermalState {
    Normal,
    /// Slowed down because of heat or a dead fan.
    Throttled,
    /// Hashing stopped; may resume once cooled for the minimum time.
    Cooling {
        since_s: f64,
    },
}

/// What the guard wants done, and why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThermalAction {
    /// Nothing to change.
    Hold,
    /// Run the chips at this fraction of their tuned clock.
    Throttle {
        clock_scale: f32,
        reason: ThermalReason,
    },
    /// Stop hashing now: regulator to standby. No command may resume it before the guard does.
    Stop { reason: ThermalReason },
    /// Cooled down: resume at this fraction of the tuned clock (lower after each overheat).
    Resume {
        clock_scale: f32,
        reason: ThermalReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThermalReason {
    Hot { temp_c: f32, limit_c: f32 },
    FanStalled { commanded_percent: f32 },
    NoReading,
    Cooled { temp_c: f32, after_s: f64 },
}

/// The over-temperature state machine, as ESP-Miner runs it: above the shutdown limit stop at
/// once, cool for at least the minimum time and below the target, then resume lower. Above the
/// throttle limit, or with the fan stalled, slow down in steps.
#[derive(Debug, Clone, PartialEq)]
pub struct ThermalGuard {
    limits: ThermalLimits,
    state: ThermalState,
    /// The clock fraction to run at (throttling) or resume at (after an overheat).
    clock_scale: f32,
    /// When the clock was last stepped down, so one hot spell does not floor it in seconds.
    last_step_s: f64,
}

/// Each throttle step and each overheat take this much off the clock.
const STEP: f32 = 0.9;
/// Never throttle below this fraction: below it stopping is the safer answer.
const MIN_SCALE: f32 = 0.3;
/// Throttle steps at most this often: the chips need time to cool before the next step helps.
const STEP_INTERVAL_S: f64 = 10.0;

impl ThermalGuard {
    pub fn new(limits: ThermalLimits) -> Self {
        Self {
            limits,
            state: ThermalState::Normal,
            clock_scale: 1.0,
            last_step_s: f64::NEG_INFINITY,
        }
    }

    pub fn state(&self) -> ThermalState {
        self.state
    }

    pub fn clock_scale(&self) -> f32 {
        self.clock_scale
    }

    /// Whether hashing is allowed at all right now.
    pub fn may_hash(&self) -> bool {
        !matches!(self.state, ThermalState::Cooling { .. })
    }

    /// One decision from the latest readings. `fan_rpm` is `None` where the board has no
    /// tachometer; a stall is a fan commanded above zero that reports zero.
    pub fn decide(
        &mut self,
        now_s: f64,
        temp_c: Option<f32>,
        fan_rpm: Option<u32>,
        fan_percent: f32,
    ) -> ThermalAction {
        let limits = self.limits;
        if let ThermalState::Cooling { since_s } = self.state {
            return match temp_c {
                Some(t)
                    if t < limits.target_c
                        && now_s - since_s >= f64::from(limits.min_cooldown_s) =>
                {
                    self.state = ThermalState::Normal;
                    ThermalAction::Resume {
                        clock_scale: self.clock_scale,
                        reason: ThermalReason::Cooled {
                            temp_c: t,
                            after_s: now_s - since_s,
                        },
                    }
                }
                _ => ThermalAction::Hold,
            };
        }
        let Some(temp_c) = temp_c.filter(|t| t.is_finite()) else {
            return self.stop(now_s, ThermalReason::NoReading);
        };
        if temp_c >= limits.shutdown_c {
            return self.stop(
                now_s,
                ThermalReason::Hot {
                    temp_c,
                    limit_c: limits.shutdown_c,
                },
            );
        }
        let stalled = fan_rpm == Some(0) && fan_percent > 0.0;
        let hot = temp_c >= limits.throttle_c;
        if stalled || hot {
            let reason = if stalled {
                ThermalReason::FanStalled {
                    commanded_percent: fan_percent,
                }
            } else {
                ThermalReason::Hot {
                    temp_c,
                    limit_c: limits.throttle_c,
                }
            };
            let next = (self.clock_scale * STEP).max(MIN_SCALE);
            let due = now_s - self.last_step_s >= STEP_INTERVAL_S;
            if (due && next < self.clock_scale) || self.state != ThermalState::Throttled {
                self.clock_scale = next;
                self.last_step_s = now_s;
                self.state = ThermalState::Throttled;
                return ThermalAction::Throttle {
                    clock_scale: self.clock_scale,
                    reason,
                };
            }
            return ThermalAction::Hold;
        }
        if self.state == ThermalState::Throttled && temp_c < limits.target_c {
            self.state = ThermalState::Normal;
        }
        ThermalAction::Hold
    }

    fn stop(&mut self, now_s: f64, reason: ThermalReason) -> ThermalAction {
        self.state = ThermalState::Cooling { since_s: now_s };
        self.clock_scale = (self.clock_scale * STEP).max(MIN_SCALE);
        ThermalAction::Stop { reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ThermalLimits = ThermalLimits {
        target_c: 60.0,
        throttle_c: 75.0,
        shutdown_c: 90.0,
        min_cooldown_s: 60,
    };

    #[test]
    fn fan_follows_temperature_and_fails_safe() {
        let mut fan = FanController::new(&LIMITS, 20.0);
        assert_eq!(fan.decide(Some(40.0), 1.0).reason, FanReason::Minimum);
        let warm = fan.decide(Some(65.0), 1.0).percent;
        let warmer = fan.decide(Some(70.0), 1.0).percent;
        assert!(warmer > warm && warm > 20.0);
        assert_eq!(
            fan.decide(Some(80.0), 1.0),
            FanDecision {
                percent: 100.0,
                reason: FanReason::TooHot { temp_c: 80.0 }
            }
        );
        assert_eq!(fan.decide(None, 1.0).percent, 100.0);
        assert_eq!(fan.decide(Some(f32::NAN), 1.0).reason, FanReason::NoReading);
    }

    #[test]
    fn fan_integral_removes_steady_error_without_winding_up() {
        let mut fan = FanController::new(&LIMITS, 20.0);
        let first = fan.decide(Some(62.0), 1.0).percent;
        for _ in 0..100 {
            fan.decide(Some(62.0), 1.0);
        }
        assert!(
            fan.decide(Some(62.0), 1.0).percent > first,
            "integral action raises the duty"
        );
        // Long saturation does not leave a huge integral behind.
        let mut saturated = FanController::new(&LIMITS, 20.0);
        for _ in 0..10_000 {
            saturated.decide(Some(74.0), 1.0);
        }
        assert!(saturated.decide(Some(55.0), 1.0).percent < 100.0);
    }

    #[test]
    fn overheat_stops_cools_and_resumes_lower() {
        let mut guard = ThermalGuard::new(LIMITS);
        assert_eq!(
            guard.decide(0.0, Some(70.0), Some(3000), 50.0),
            ThermalAction::Hold
        );
        assert!(matches!(
            guard.decide(1.0, Some(91.0), Some(3000), 100.0),
            ThermalAction::Stop {
                reason: ThermalReason::Hot { .. }
            }
        ));
        assert!(!guard.may_hash());
        // Cool but not for long enough: still stopped.
        assert_eq!(
            guard.decide(30.0, Some(50.0), Some(3000), 100.0),
            ThermalAction::Hold
        );
        let ThermalAction::Resume { clock_scale, .. } =
            guard.decide(62.0, Some(50.0), Some(3000), 100.0)
        else {
            panic!("should resume");
        };
        assert!(clock_scale < 1.0);
        assert!(guard.may_hash());
    }

    #[test]
    fn stalled_fan_and_heat_throttle_in_steps() {
        let mut guard = ThermalGuard::new(LIMITS);
        let ThermalAction::Throttle {
            clock_scale: first,
            reason,
        } = guard.decide(0.0, Some(65.0), Some(0), 40.0)
        else {
            panic!("a stalled fan throttles");
        };
        assert_eq!(
            reason,
            ThermalReason::FanStalled {
                commanded_percent: 40.0
            }
        );
        // Within the step interval: hold, whatever the heat.
        assert_eq!(
            guard.decide(5.0, Some(80.0), Some(0), 100.0),
            ThermalAction::Hold
        );
        let ThermalAction::Throttle {
            clock_scale: second,
            ..
        } = guard.decide(11.0, Some(80.0), Some(0), 100.0)
        else {
            panic!("still hot after the interval: another step");
        };
        assert!(second < first);
        for i in 0..100 {
            guard.decide(20.0 + 10.0 * f64::from(i), Some(80.0), Some(0), 100.0);
        }
        assert!(guard.clock_scale() >= MIN_SCALE);
        assert!(matches!(
            guard.decide(2000.0, None, Some(0), 100.0),
            ThermalAction::Stop {
                reason: ThermalReason::NoReading
            }
        ));
    }
}
