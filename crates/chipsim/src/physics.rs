//! The physics of one chip: how fast its silicon can run at a voltage, how often it errs above
//! that, how much power it draws, and how hot it gets.
//!
//! The shapes are the ones that matter to a tuner and a thermal guard, not a device model:
//! - stable frequency grows linearly with core voltage above a threshold, with spread between
//!   chips (`f_max(V) = slope · (V − V_th)`, derated when hot);
//! - hardware errors are rare below `f_max` and rise steeply above it;
//! - power is dynamic (∝ V²·f) plus leakage that grows exponentially with temperature;
//! - temperature approaches `ambient + P·R_th(fan)` with a first-order time constant;
//! - above the critical temperature the chip stops hashing until it cools down.

use bm13xx::ChipModel;
use serde::Serialize;

use crate::rng::Rng;

/// Nominal figures per model at ESP-Miner's default clock and voltage (protocol.md §11.1, §13).
#[derive(Debug, Clone, Copy)]
pub struct Nominal {
    pub volts: f64,
    pub mhz: f64,
    /// Efficiency at the nominal point, J/TH (typical of boards built on the chip).
    pub joules_per_th: f64,
}

impl Nominal {
    pub fn of(model: ChipModel) -> Self {
        let (volts, joules_per_th) = match model {
            ChipModel::Bm1397 => (1.40, 45.0),
            ChipModel::Bm1366 => (1.20, 28.0),
            ChipModel::Bm1368 => (1.166, 23.0),
            ChipModel::Bm1370 => (1.15, 17.0),
        };
        Self {
            volts,
            mhz: model.default_frequency().mhz(),
            joules_per_th,
        }
    }

    pub fn terahashes(&self, model: ChipModel) -> f64 {
        self.mhz * 1e6 * f64::from(model.hashing_small_cores()) / 1e12
    }

    pub fn watts(&self, model: ChipModel) -> f64 {
        self.joules_per_th * self.terahashes(model)
    }
}

/// How far above the default clock a typical chip is still stable at the nominal voltage.
const TYPICAL_HEADROOM: f64 = 1.15;
/// Chip-to-chip spread of stable frequency (one standard deviation).
const SPREAD: f64 = 0.06;
/// Stable frequency is zero this far below the nominal voltage.
const THRESHOLD_BELOW_NOMINAL_V: f64 = 0.45;
/// Share of nominal power that is leakage at 60 °C.
const LEAKAGE_SHARE: f64 = 0.10;
/// Leakage doubles every this many degrees.
const LEAKAGE_DOUBLING_C: f64 = 25.0;
/// Errors a healthy chip makes anyway, per nonce.
const BASE_ERROR_RATE: f64 = 1e-5;
/// How many percent above `f_max` the error rate takes to approach its ceiling.
const ERROR_RISE: f64 = 0.02;
/// Stable frequency lost per degree above 60 °C.
const HOT_DERATING_PER_C: f64 = 0.001;
/// The thermal guard built into the silicon, and where it lets go again.
pub const CRITICAL_C: f64 = 110.0;
pub const RECOVER_C: f64 = 95.0;
/// First-order thermal time constant of chip plus heat sink.
pub const THERMAL_TAU_S: f64 = 20.0;

/// One chip's silicon, drawn from the model's distribution.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Silicon {
    /// MHz of stable frequency per volt above the threshold.
    pub slope_mhz_per_v: f64,
    pub threshold_v: f64,
    /// Dynamic power coefficient: W per (V² · MHz).
    pub dynamic_w_per_v2_mhz: f64,
    /// Leakage at 60 °C and nominal voltage, W.
    pub leakage_w_at_60c: f64,
    /// Thermal resistance to ambient with the fan at 100 %, °C/W.
    pub r_th_full_fan: f64,
}

impl Silicon {
    pub fn sample(model: ChipModel, rng: &mut Rng) -> Self {
        let nominal = Nominal::of(model);
        let quality = (1.0 + SPREAD * rng.normal()).clamp(0.75, 1.25);
        let threshold_v = nominal.volts - THRESHOLD_BELOW_NOMINAL_V;
        let f_max_nominal = nominal.mhz * TYPICAL_HEADROOM * quality;
        let watts = nominal.watts(model);
        let leakage_w_at_60c = watts * LEAKAGE_SHARE * (1.0 + 0.1 * rng.normal()).clamp(0.7, 1.3);
        let dynamic = watts * (1.0 - LEAKAGE_SHARE) / (nominal.volts * nominal.volts * nominal.mhz);
        Self {
            slope_mhz_per_v: f_max_nominal / THRESHOLD_BELOW_NOMINAL_V,
            threshold_v,
            dynamic_w_per_v2_mhz: dynamic * (1.0 + 0.03 * rng.normal()).clamp(0.9, 1.1),
            leakage_w_at_60c,
            // Nominal power at 50 % fan settles about 40 °C over ambient.
            r_th_full_fan: 40.0 / watts * 0.6,
        }
    }

    /// The same silicon drawing `factor` times the power for the same work: a better or worse
    /// bin of the part. Speed and the heat sink are the part's and the board's, unchanged.
    pub fn regrade(&mut self, factor: f64) {
        self.dynamic_w_per_v2_mhz *= factor;
        self.leakage_w_at_60c *= factor;
    }

    /// The highest frequency at which this chip hashes cleanly at `volts` and `temp_c`.
    pub fn max_stable_mhz(&self, volts: f64, temp_c: f64) -> f64 {
        let cold = self.slope_mhz_per_v * (volts - self.threshold_v).max(0.0);
        let derating = 1.0 - HOT_DERATING_PER_C * (temp_c - 60.0).max(0.0);
        cold * derating.max(0.0)
    }

    /// The share of nonces that are wrong: tiny below `f_max`, rising steeply above it.
    pub fn error_rate(&self, mhz: f64, volts: f64, temp_c: f64) -> f64 {
        let f_max = self.max_stable_mhz(volts, temp_c);
        if f_max <= 0.0 {
            return if mhz > 0.0 { 1.0 } else { 0.0 };
        }
        let over = mhz / f_max - 1.0;
        if over <= 0.0 {
            BASE_ERROR_RATE
        } else {
            (BASE_ERROR_RATE + (1.0 - (-over / ERROR_RISE).exp())).min(1.0)
        }
    }

    pub fn power_w(&self, mhz: f64, volts: f64, temp_c: f64, hashing: bool) -> f64 {
        let dynamic = if hashing {
            self.dynamic_w_per_v2_mhz * volts * volts * mhz
        } else {
            0.0
        };
        let leakage = self.leakage_w_at_60c
            * (volts / 1.0).max(0.0)
            * 2f64.powf((temp_c - 60.0) / LEAKAGE_DOUBLING_C);
        dynamic + leakage
    }

    /// Thermal resistance to ambient at a fan duty in [0, 1]: the heat sink alone conducts a fifth
    /// of what full airflow does.
    pub fn r_th(&self, fan_duty: f64) -> f64 {
        self.r_th_full_fan / (0.2 + 0.8 * fan_duty.clamp(0.0, 1.0))
    }
}

/// A chip's temperature, integrated exactly for a constant power over each step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thermal {
    pub temp_c: f64,
    /// Latched by the critical temperature; cleared below the recovery temperature.
    pub overheated: bool,
}

impl Thermal {
    pub fn at(temp_c: f64) -> Self {
        Self {
            temp_c,
            overheated: false,
        }
    }

    pub fn step(&mut self, dt_s: f64, power_w: f64, r_th: f64, ambient_c: f64) {
        let steady = ambient_c + power_w * r_th;
        let decay = (-dt_s / THERMAL_TAU_S).exp();
        self.temp_c = steady + (self.temp_c - steady) * decay;
        if self.temp_c >= CRITICAL_C {
            self.overheated = true;
        } else if self.temp_c < RECOVER_C {
            self.overheated = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chip() -> Silicon {
        Silicon::sample(ChipModel::Bm1397, &mut Rng::new(3))
    }

    #[test]
    fn stable_frequency_rises_with_voltage_and_falls_when_hot() {
        let s = chip();
        assert!(s.max_stable_mhz(1.45, 60.0) > s.max_stable_mhz(1.35, 60.0));
        assert!(s.max_stable_mhz(1.40, 90.0) < s.max_stable_mhz(1.40, 60.0));
        assert_eq!(s.max_stable_mhz(0.5, 60.0), 0.0);
    }

    #[test]
    fn errors_rise_steeply_above_the_limit() {
        let s = chip();
        let f_max = s.max_stable_mhz(1.4, 60.0);
        assert_eq!(s.error_rate(f_max * 0.9, 1.4, 60.0), BASE_ERROR_RATE);
        let just_over = s.error_rate(f_max * 1.01, 1.4, 60.0);
        let far_over = s.error_rate(f_max * 1.10, 1.4, 60.0);
        assert!(just_over > 100.0 * BASE_ERROR_RATE);
        assert!(far_over > 0.9 && far_over <= 1.0);
    }

    #[test]
    fn power_follows_voltage_squared_frequency_and_heat() {
        let s = chip();
        let base = s.power_w(425.0, 1.4, 60.0, true);
        let nominal = Nominal::of(ChipModel::Bm1397).watts(ChipModel::Bm1397);
        assert!(
            (base / nominal - 1.0).abs() < 0.2,
            "{base} W vs nominal {nominal} W"
        );
        assert!(s.power_w(500.0, 1.4, 60.0, true) > base);
        assert!(s.power_w(425.0, 1.5, 60.0, true) > base);
        assert!(s.power_w(425.0, 1.4, 90.0, true) > base);
        assert!(s.power_w(425.0, 1.4, 60.0, false) < 0.2 * base);
    }

    #[test]
    fn temperature_settles_and_fans_cool() {
        let s = chip();
        let watts = 12.0;
        let mut slow_fan = Thermal::at(25.0);
        let mut fast_fan = Thermal::at(25.0);
        for _ in 0..600 {
            slow_fan.step(1.0, watts, s.r_th(0.3), 25.0);
            fast_fan.step(1.0, watts, s.r_th(1.0), 25.0);
        }
        assert!((slow_fan.temp_c - (25.0 + watts * s.r_th(0.3))).abs() < 0.01);
        assert!(fast_fan.temp_c < slow_fan.temp_c);
        let mut hot = Thermal::at(109.0);
        hot.step(1.0, 1000.0, 1.0, 25.0);
        assert!(hot.overheated);
        hot.step(600.0, 0.0, 1.0, 25.0);
        assert!(!hot.overheated);
    }
}
