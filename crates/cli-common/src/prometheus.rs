//! Prometheus text exposition, as both binaries serve it on `/metrics`: `# HELP`/`# TYPE` per
//! family, samples with their labels, and nothing for a value that is not a number (a gauge
//! that cannot be measured is absent rather than `NaN`).

use std::fmt::Write;

#[derive(Debug, Default)]
pub struct Exposition(String);

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample; `labels` is `{a="x",b="y"}` or empty.
    pub fn sample(&mut self, name: &str, labels: &str, value: f64) {
        if value.is_finite() {
            let _ = writeln!(self.0, "{name}{labels} {value}");
        }
    }

    /// A family with one unlabelled sample.
    pub fn one(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, "", value);
    }

    /// A histogram of `values` over the upper bounds `buckets` (cumulative, plus `+Inf`, sum
    /// and count).
    pub fn histogram(&mut self, name: &str, help: &str, buckets: &[f64], values: &[f64]) {
        self.family(name, "histogram", help);
        for bound in buckets {
            let count = values.iter().filter(|v| **v <= *bound).count();
            self.sample(
                &format!("{name}_bucket"),
                &format!("{{le=\"{bound}\"}}"),
                count as f64,
            );
        }
        self.sample(
            &format!("{name}_bucket"),
            "{le=\"+Inf\"}",
            values.len() as f64,
        );
        self.sample(&format!("{name}_sum"), "", values.iter().sum());
        self.sample(&format!("{name}_count"), "", values.len() as f64);
    }

    pub fn finish(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_histograms_in_the_text_format() {
        let mut out = Exposition::new();
        out.one("x_total", "counter", "Things.", 3.0);
        out.sample("x_total", "{a=\"b\"}", f64::NAN);
        out.histogram("lat_seconds", "Latency.", &[0.5, 1.0], &[0.2, 0.7, 3.0]);
        let text = out.finish();
        assert!(text.starts_with("# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n"));
        assert!(!text.contains("NaN"));
        for line in [
            "lat_seconds_bucket{le=\"0.5\"} 1",
            "lat_seconds_bucket{le=\"1\"} 2",
            "lat_seconds_bucket{le=\"+Inf\"} 3",
            "lat_seconds_count 3",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
