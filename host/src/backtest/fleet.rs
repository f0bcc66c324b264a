//! A seeded S19-class fleet: machines from about 17 J/TH (S21-class) to 38 J/TH (an aged S19),
//! each with its own silicon, so every site the demo or a backtest makes up is varied but the
//! same for the same seed.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::planner::{Machine, Point};
use crate::units::{TerahashPerSecond, Watts};

/// The models a site is made of: name, J/TH new, TH/s at stock, share of the fleet.
const MODELS: [(&str, f64, f64, f64); 5] = [
    ("s21", 17.5, 200.0, 0.15),
    ("s19xp", 21.5, 140.0, 0.25),
    ("s19jpro", 30.0, 104.0, 0.25),
    ("s19", 34.5, 95.0, 0.2),
    ("s19-aged", 38.0, 86.0, 0.15),
];

/// Fractions of full power a tuner measures points at (what `hashwarden-fw set_mode` leaves in
/// the retained state's curve).
const CURVE_SHARES: [f64; 4] = [0.45, 0.6, 0.75, 0.9];

/// How hash rate follows power when a machine is underclocked (voltage and clock lowered
/// together): TH/s ∝ W^0.7, so J/TH falls to 79 % at 45 % power — the shape of the tuner's
/// measured curves and of the example fleet.
const HASHRATE_EXPONENT: f64 = 0.7;

/// `count` machines, all online and running at full, models in their shares, each with its own
/// efficiency (±6 % around its model's) and hash rate (±5 %).
pub fn generate(count: usize, seed: u64) -> Vec<Machine> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let total: f64 = MODELS.iter().map(|m| m.3).sum();
    (0..count)
        .map(|i| {
            // Models by share, in stable order: the i-th machine's place in the fleet.
            let mut place = (i as f64 + 0.5) / count as f64 * total;
            let (name, j_per_th, hashrate, _) = MODELS
                .iter()
                .copied()
                .find(|m| {
                    place -= m.3;
                    place < 0.0
                })
                .unwrap_or(MODELS[MODELS.len() - 1]);
            let j_per_th = j_per_th * rng.gen_range(0.94..1.06);
            let hashrate = hashrate * rng.gen_range(0.95..1.05);
            machine(&format!("{name}-{i:04}"), hashrate, j_per_th)
        })
        .collect()
}

/// One machine at `hashrate` TH/s and `j_per_th` at full power, with its tuned curve.
pub fn machine(id: &str, hashrate: f64, j_per_th: f64) -> Machine {
    let full_watts = hashrate * j_per_th;
    let curve = CURVE_SHARES
        .iter()
        .map(|share| Point {
            watts: Watts(round2(full_watts * share)),
            hashrate: TerahashPerSecond(round2(hashrate * share.powf(HASHRATE_EXPONENT))),
        })
        .collect();
    let full = Point {
        watts: Watts(round2(full_watts)),
        hashrate: TerahashPerSecond(round2(hashrate)),
    };
    Machine::new(id, full, curve)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_spans_s21_to_aged_s19_and_is_the_same_for_the_same_seed() {
        let fleet = generate(200, 7);
        assert_eq!(fleet, generate(200, 7));
        assert_ne!(fleet, generate(200, 8));
        let efficiency = |m: &Machine| m.full.watts.0 / m.full.hashrate.0;
        let (low, high) = fleet
            .iter()
            .map(efficiency)
            .fold((f64::MAX, f64::MIN), |(l, h), e| (l.min(e), h.max(e)));
        assert!((16.0..18.0).contains(&low), "{low}");
        assert!((37.0..41.0).contains(&high), "{high}");
        for m in &fleet {
            // Underclocked is more efficient: each curve point beats full power's J/TH.
            for p in &m.curve {
                assert!(p.watts.0 / p.hashrate.0 < efficiency(m));
            }
        }
        let s21 = fleet.iter().filter(|m| m.id.starts_with("s21-")).count();
        assert_eq!(s21, 30, "15 % of 200");
    }
}
