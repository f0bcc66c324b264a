//! Where a tuned chain runs for a power target. Slowing the clocks alone at the tuned voltage
//! wastes what the chips could give at that power: dynamic power goes with V², so below the
//! tuned point a lower voltage at each chip's clean clock hashes more per watt, and above it
//! the clocks cannot rise without a higher voltage (they would only err). The tuner's curve
//! says what each voltage gives with every chip at its clean clock; the agent plans with that
//! curve, and this picks the point of it that delivers the most hash rate within the target.

use fleet_proto::messages::CurvePoint;

/// Clocks a little under the curve's at a voltage the chips were not tuned at: the per-chip
/// clocks are the tuned ones scaled by the chain's ratio, and one chip's silicon may scale
/// less well than the chain's mean.
pub const OTHER_VOLTAGE_MARGIN: f64 = 0.97;

/// A chain's operating point for a power target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Operating {
    pub core_mv: u32,
    /// The tuned clocks times this: the chosen point's hash rate over the tuned one's, slowed in
    /// proportion when the point draws more than the target.
    pub clock_factor: f64,
    /// The tuned clocks times this are the point's own (unslowed): the most the power limiter
    /// may raise them to at this voltage.
    pub ceiling_factor: f64,
}

fn usable(p: &&CurvePoint) -> bool {
    p.power_w.is_finite() && p.power_w > 0.0 && p.hashrate_ths.is_finite() && p.hashrate_ths > 0.0
}

/// The curve's point that gives the most hash rate within `target_w` — as it is when it draws
/// no more, slowed in proportion when it draws more — for a chain whose clocks were tuned at
/// `tuned_mv`. `None` when the curve has no point at the tuned voltage or the target is not a
/// power: the power limiter alone then holds the target.
pub fn for_target(curve: &[CurvePoint], tuned_mv: u32, target_w: f64) -> Option<Operating> {
    if !(target_w.is_finite() && target_w > 0.0) {
        return None;
    }
    let within = |p: &CurvePoint| p.hashrate_ths * (target_w / p.power_w).min(1.0);
    let best = curve.iter().filter(usable).max_by(|a, b| {
        within(a)
            .total_cmp(&within(b))
            // Equal hash rate: the lower voltage, which draws less for it.
            .then(b.core_mv.cmp(&a.core_mv))
    })?;
    at_point(curve, tuned_mv, best.core_mv, target_w)
}

/// The next point up the curve from `core_mv`, for `target_w`: where a chain goes when its
/// point turns out to draw less than the curve said (cooler chips leak less) and its clocks are
/// at their ceiling under the target. `None` at the top.
pub fn above(
    curve: &[CurvePoint],
    tuned_mv: u32,
    core_mv: u32,
    target_w: f64,
) -> Option<Operating> {
    let next = curve
        .iter()
        .filter(usable)
        .filter(|p| p.core_mv > core_mv)
        .min_by_key(|p| p.core_mv)?;
    at_point(curve, tuned_mv, next.core_mv, target_w)
}

/// The operating point at the curve's `core_mv` for `target_w`.
fn at_point(curve: &[CurvePoint], tuned_mv: u32, core_mv: u32, target_w: f64) -> Option<Operating> {
    if !(target_w.is_finite() && target_w > 0.0) {
        return None;
    }
    let tuned = curve
        .iter()
        .filter(usable)
        .find(|p| p.core_mv == tuned_mv)?;
    let point = curve.iter().filter(usable).find(|p| p.core_mv == core_mv)?;
    let margin = if core_mv == tuned_mv {
        1.0
    } else {
        OTHER_VOLTAGE_MARGIN
    };
    let ceiling_factor = point.hashrate_ths / tuned.hashrate_ths * margin;
    Some(Operating {
        core_mv,
        clock_factor: ceiling_factor * (target_w / point.power_w).min(1.0),
        ceiling_factor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 12-chip BM1397 chain's curve as chipsim's silicon gives it (seed 7, 60 °C): J/TH falls
    /// with the voltage, from 51.4 at 1.500 V to 41.6 at 1.300 V.
    fn curve() -> Vec<CurvePoint> {
        [
            (1500, 4.771, 245.3),
            (1475, 4.554, 227.8),
            (1450, 4.337, 211.1),
            (1425, 4.120, 195.1),
            (1400, 3.904, 179.9),
            (1375, 3.687, 165.5),
            (1350, 3.470, 151.7),
            (1325, 3.253, 138.7),
            (1300, 3.036, 126.3),
        ]
        .iter()
        .map(|&(core_mv, hashrate_ths, power_w)| CurvePoint {
            core_mv,
            hashrate_ths,
            power_w,
        })
        .collect()
    }

    #[test]
    fn a_chain_tuned_high_undervolts_for_a_lower_target() {
        // Three quarters of the top point's power: 1.400 V fits (179.9 W) and gives 3.904 TH,
        // where slowing the clocks at 1.500 V would give ~3.45 (chipsim's physics).
        let op = for_target(&curve(), 1500, 183.9).expect("a point");
        assert_eq!(op.core_mv, 1400);
        assert!((op.clock_factor - 3.904 / 4.771 * OTHER_VOLTAGE_MARGIN).abs() < 1e-9);
        // Under the lowest point's power: the lowest voltage, slowed to the target.
        let op = for_target(&curve(), 1500, 100.0).expect("a point");
        assert_eq!(op.core_mv, 1300);
        let expected = 3.036 / 4.771 * (100.0 / 126.3) * OTHER_VOLTAGE_MARGIN;
        assert!((op.clock_factor - expected).abs() < 1e-9);
    }

    #[test]
    fn a_chain_tuned_low_raises_its_voltage_for_a_higher_target_instead_of_overclocking() {
        let op = for_target(&curve(), 1300, 220.0).expect("a point");
        // 1.450 V (211.1 W, 4.337 TH) against 1.475 V slowed to 220 W (4.398 TH): the latter.
        assert_eq!(op.core_mv, 1475);
        assert!(op.clock_factor > 1.0, "{op:?}");
        // At or above the top: the top point as it is.
        let op = for_target(&curve(), 1300, 400.0).expect("a point");
        assert_eq!(op.core_mv, 1500);
    }

    #[test]
    fn the_tuned_point_itself_keeps_the_tuned_clocks() {
        let op = for_target(&curve(), 1400, 179.9).expect("a point");
        assert_eq!(
            op,
            Operating {
                core_mv: 1400,
                clock_factor: 1.0,
                ceiling_factor: 1.0
            }
        );
    }

    #[test]
    fn a_point_that_draws_less_than_its_curve_gives_way_to_the_next_up() {
        let op = above(&curve(), 1500, 1300, 140.0).expect("a point up");
        assert_eq!(op.core_mv, 1325);
        // 1.325 V draws 138.7 W by the curve: under 140 W, at its clean clocks.
        assert!((op.clock_factor - op.ceiling_factor).abs() < 1e-12);
        assert_eq!(above(&curve(), 1500, 1500, 140.0), None, "the top");
    }

    #[test]
    fn without_the_tuned_voltage_or_a_real_target_the_limiter_alone_holds_it() {
        assert_eq!(for_target(&curve(), 1412, 150.0), None);
        assert_eq!(for_target(&[], 1400, 150.0), None);
        for bad in [0.0, -5.0, f64::NAN, f64::INFINITY] {
            assert_eq!(for_target(&curve(), 1400, bad), None, "{bad}");
        }
    }
}
