//! Fan control and thermal protection for the running board, once a second: hashboard's PI fan
//! controller and thermal guard (pure decisions) applied to the board. The guard's clock changes
//! are transient — the operator's tuned clock stays the intent, and the guard steps down from it
//! and resumes below it after an overheat.

use bm13xx::Frequency;
use hashboard::thermal::{FanController, ThermalAction, ThermalGuard};
use tracing::{error, info, warn};

use crate::board::Hardware;

#[derive(Debug)]
pub struct Cooling {
    fan: FanController,
    guard: ThermalGuard,
    /// The clock the operator wants; the guard runs the chips at a fraction of it.
    pub tuned: Frequency,
    /// When the last round ran, in the chips' seconds.
    last_s: Option<f64>,
    /// A duty the operator fixed (local API); the guard still throttles and stops.
    manual_fan: Option<f32>,
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
            tuned: hw.frequency(),
            last_s: None,
            manual_fan: None,
        }
    }

    /// Whether the guard has stopped the chips until they cool.
    pub fn overheated(&self) -> bool {
        !self.guard.may_hash()
    }

    /// The clock to run at now: the tuned one, scaled down while the guard throttles.
    fn scaled(&self, hw: &impl Hardware, scale: f32) -> Frequency {
        let khz = (f64::from(self.tuned.khz()) * f64::from(scale)) as u32;
        hw.description().clamp_frequency(Frequency::from_khz(khz))
    }

    /// Fixes the fan at `percent` (at least the board's minimum), or back to automatic.
    pub fn set_manual_fan(
        &mut self,
        hw: &mut impl Hardware,
        percent: Option<f32>,
    ) -> Result<(), String> {
        if !hw.has_thermal_sensor() {
            return Err("this board has no fan controller".into());
        }
        if let Some(percent) = percent {
            if !(0.0..=100.0).contains(&percent) {
                return Err(format!("fan duty {percent} is not 0..=100 %"));
            }
            hw.set_fan_percent(percent)?;
        }
        self.manual_fan = percent;
        Ok(())
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
            ThermalAction::Hold => {}
            ThermalAction::Throttle {
                clock_scale,
                reason,
            } => {
                let target = self.scaled(hw, clock_scale);
                warn!(?reason, mhz = target.mhz(), "thermal: throttling");
                if let Err(e) = hw.set_frequency(target).await {
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
                warn!(?reason, mhz = target.mhz(), "thermal: resuming");
                let resumed = match hw.set_frequency(target).await {
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
