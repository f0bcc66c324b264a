//! A small seeded generator: every chip draws from its own stream, so a chain's behaviour depends
//! only on the seed and the traffic, never on the order chips happen to be stepped in.

/// SplitMix64 (Steele, Lea & Flood): tiny, fast, and good enough for simulation noise.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// An independent stream for a sub-component, e.g. one chip of a chain.
    pub fn fork(seed: u64, stream: u64) -> Self {
        let mut base = Self(seed ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        base.next_u64();
        base
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n); 0 when n is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// A standard normal deviate (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// A Poisson deviate with mean `lambda`: Knuth's product method for small means, a rounded
    /// normal approximation above 30 where the product would underflow.
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        if !lambda.is_finite() || lambda <= 0.0 {
            return 0;
        }
        if lambda > 30.0 {
            return (lambda + lambda.sqrt() * self.normal()).round().max(0.0) as u64;
        }
        let limit = (-lambda).exp();
        let mut product = self.next_f64();
        let mut count = 0;
        while product > limit {
            count += 1;
            product *= self.next_f64();
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_deterministic_and_independent() {
        let a: Vec<u64> = (0..4).map(|_| Rng::fork(7, 1).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::fork(7, 1).next_u64(), Rng::fork(7, 2).next_u64());
        assert_ne!(Rng::fork(7, 1).next_u64(), Rng::fork(8, 1).next_u64());
    }

    #[test]
    fn poisson_mean_and_variance() {
        for lambda in [0.3, 4.0, 80.0] {
            let mut rng = Rng::new(42);
            let n = 20_000;
            let samples: Vec<f64> = (0..n).map(|_| rng.poisson(lambda) as f64).collect();
            let mean = samples.iter().sum::<f64>() / n as f64;
            let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n as f64;
            // Five standard errors of the mean; variance within 10 %.
            assert!(
                (mean - lambda).abs() < 5.0 * (lambda / n as f64).sqrt(),
                "{lambda}: {mean}"
            );
            assert!((var / lambda - 1.0).abs() < 0.1, "{lambda}: var {var}");
        }
        assert_eq!(Rng::new(1).poisson(0.0), 0);
        assert_eq!(Rng::new(1).poisson(f64::NAN), 0);
    }
}
