//! Prometheus text exposition of the snapshot: conventional names, base units (hashes per second,
//! watts, celsius, hertz, volts), counters ending in `_total`.

use cli_common::prometheus::Exposition;
use fleet_proto::Mode;

use crate::snapshot::Snapshot;

const MODES: [(Mode, &str); 5] = [
    (Mode::Mining, "mining"),
    (Mode::Sleeping, "sleeping"),
    (Mode::PowerTarget, "power_target"),
    (Mode::Tuning, "tuning"),
    (Mode::Overheated, "overheated"),
];

pub fn render(s: &Snapshot) -> String {
    let mut out = Exposition::new();
    let board = s.board;
    out.family(
        "hashwarden_info",
        "gauge",
        "Firmware and hardware; the value is always 1.",
    );
    out.sample(
        "hashwarden_info",
        &format!(
            "{{version=\"{}\",board=\"{board}\",asic=\"{}\"}}",
            crate::telemetry::firmware_version(),
            s.asic_model
        ),
        1.0,
    );
    out.family(
        "hashwarden_hashrate_hashes_per_second",
        "gauge",
        "Hash rate measured from validated nonces, over a window.",
    );
    for (window, ths) in [
        ("5s", s.hashrate.s5),
        ("1m", s.hashrate.m1),
        ("15m", s.hashrate.m15),
    ] {
        out.sample(
            "hashwarden_hashrate_hashes_per_second",
            &format!("{{window=\"{window}\"}}"),
            ths * 1e12,
        );
    }
    if let Some(power) = s.power_w {
        out.one(
            "hashwarden_power_watts",
            "gauge",
            "Hashboard supply output power.",
            power,
        );
        if s.hashrate.s5 > 1e-6 {
            out.one(
                "hashwarden_efficiency_joules_per_terahash",
                "gauge",
                "Power over the 5 s hash rate.",
                power / s.hashrate.s5,
            );
        }
    }
    out.family(
        "hashwarden_temperature_celsius",
        "gauge",
        "Temperatures: the board sensor, the hottest chip and the hottest voltage regulator.",
    );
    for (sensor, value) in [
        ("board", s.board_temp_c),
        ("hottest_chip", s.hottest_chip_c),
        ("regulator", s.regulator_temp_c),
    ] {
        if let Some(value) = value {
            out.sample(
                "hashwarden_temperature_celsius",
                &format!("{{sensor=\"{sensor}\"}}"),
                value,
            );
        }
    }
    if let Some((rpm, percent)) = s.fan {
        out.one(
            "hashwarden_fan_rpm",
            "gauge",
            "Fan tachometer.",
            f64::from(rpm),
        );
        out.one(
            "hashwarden_fan_duty_ratio",
            "gauge",
            "Commanded fan duty, 0 to 1.",
            f64::from(percent) / 100.0,
        );
    }
    out.one(
        "hashwarden_frequency_hertz",
        "gauge",
        "Chip clock.",
        s.frequency_mhz * 1e6,
    );
    out.one(
        "hashwarden_core_voltage_volts",
        "gauge",
        "Per-chip core voltage set.",
        f64::from(s.core_mv) / 1000.0,
    );
    out.one(
        "hashwarden_chips_up",
        "gauge",
        "Chips answering on the chain.",
        f64::from(s.chips_up),
    );
    out.one(
        "hashwarden_chips_expected",
        "gauge",
        "Chips the board has.",
        f64::from(s.chips_expected),
    );
    out.family(
        "hashwarden_shares_total",
        "counter",
        "Shares by the pool's verdict.",
    );
    for (result, count) in [
        ("accepted", s.accepted),
        ("rejected", s.rejected),
        ("stale", s.stale),
    ] {
        out.sample(
            "hashwarden_shares_total",
            &format!("{{result=\"{result}\"}}"),
            count as f64,
        );
    }
    out.one(
        "hashwarden_nonces_total",
        "counter",
        "Nonces that met the chips' ticket difficulty.",
        s.nonces as f64,
    );
    out.one(
        "hashwarden_hardware_errors_total",
        "counter",
        "Nonces that did not hash to what the chip claimed.",
        s.hardware_errors as f64,
    );
    out.family("hashwarden_mode", "gauge", "1 for the current mode.");
    for (mode, name) in MODES {
        out.sample(
            "hashwarden_mode",
            &format!("{{mode=\"{name}\"}}"),
            if s.mode == mode { 1.0 } else { 0.0 },
        );
    }
    out.one(
        "hashwarden_uptime_seconds",
        "counter",
        "Seconds since the daemon started.",
        s.elapsed_s as f64,
    );
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_line_parses_and_families_are_declared() {
        let snapshot = Snapshot {
            board: "bm1397-hashboard-12",
            asic_model: "BM1397",
            power_w: Some(40.0),
            fan: Some((4200, 55.0)),
            board_temp_c: Some(58.0),
            hottest_chip_c: Some(61.0),
            frequency_mhz: 425.0,
            core_mv: 1400,
            accepted: 12,
            hashrate: fleet_proto::messages::Hashrate {
                s5: 3.4,
                m1: 3.3,
                m15: 3.2,
            },
            mode: Mode::Sleeping,
            ..Snapshot::default()
        };
        let text = render(&snapshot);
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().expect("name").to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("name value");
            value.parse::<f64>().expect("a number");
            let name = series.split('{').next().expect("name");
            assert!(declared.iter().any(|d| d == name), "{name} undeclared");
        }
        assert!(
            text.contains("hashwarden_hashrate_hashes_per_second{window=\"5s\"} 3400000000000")
        );
        assert!(text.contains("hashwarden_power_watts 40"));
        assert!(text.contains("hashwarden_mode{mode=\"sleeping\"} 1"));
        assert!(text.contains("hashwarden_mode{mode=\"mining\"} 0"));
        assert!(text.contains("hashwarden_shares_total{result=\"accepted\"} 12"));
        assert!(text.contains("hashwarden_efficiency_joules_per_terahash"));
    }
}
