//! The peripheral drivers byte for byte against their datasheets' register maps (embedded-hal-mock),
//! and against the simulator's devices, which share the chain's physics.

use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
use hashboard::drivers::DriverError;
use hashboard::drivers::ds4432u::{self, Ds4432u, code_for_mv};
use hashboard::drivers::emc2101::{self, Emc2101};
use hashboard::drivers::ina260::{self, Ina260, Reading};
use hashboard::drivers::tps546::{self, Tps546, VoutLimits};

const TPS: u8 = tps546::DEFAULT_ADDRESS;

fn tps546_init_transactions() -> Vec<Transaction> {
    vec![
        // IC_DEVICE_ID: a block read, count first.
        Transaction::write_read(TPS, vec![0xAD], vec![6, 0x54, 0x49, 0x54, 0x6B, 0x24, 0x41]),
        // VOUT_MODE: ULINEAR16, exponent −9.
        Transaction::write_read(TPS, vec![0x20], vec![0x17]),
        // VOUT_MAX = 2.0 V = 1024 × 2^-9, VOUT_MIN = 1.0 V = 512 × 2^-9, little-endian words.
        Transaction::write(TPS, vec![0x24, 0x00, 0x04]),
        Transaction::write(TPS, vec![0x2B, 0x00, 0x02]),
    ]
}

const LIMITS: VoutLimits = VoutLimits {
    min_mv: 1000,
    max_mv: 2000,
};

#[test]
fn tps546_init_and_vout_bytes() {
    let mut expected = tps546_init_transactions();
    expected.extend([
        // 1.2 V → 614.4 counts → 614 = 0x0266.
        Transaction::write(TPS, vec![0x21, 0x66, 0x02]),
        Transaction::write(TPS, vec![0x01, 0x80]),
        Transaction::write(TPS, vec![0x03]),
        Transaction::write_read(TPS, vec![0x8B], vec![0x66, 0x02]),
    ]);
    let mock = Mock::new(&expected);
    let mut tps = Tps546::init(mock, TPS, LIMITS).expect("inits");
    tps.set_vout_mv(1200).expect("in range");
    tps.set_output(true).expect("writes");
    tps.clear_faults().expect("writes");
    assert!((tps.read_vout_v().expect("reads") - 614.0 / 512.0).abs() < 1e-6);
    // Outside the board's window: refused, nothing sent.
    assert_eq!(
        tps.set_vout_mv(2500),
        Err(DriverError::OutOfRange {
            requested_mv: 2500,
            min_mv: 1000,
            max_mv: 2000
        })
    );
    tps.release().done();
}

#[test]
fn tps546_refuses_another_part() {
    let mut mock = Mock::new(&[Transaction::write_read(
        TPS,
        vec![0xAD],
        vec![6, 1, 2, 3, 4, 5, 6],
    )]);
    assert!(matches!(
        Tps546::init(mock.clone(), TPS, LIMITS),
        Err(DriverError::WrongDevice { found: 0x0304_0506 })
    ));
    mock.done();
}

#[test]
fn tps546_telemetry_decodes_linear11() {
    let mut expected = tps546_init_transactions();
    expected.extend([
        // 12.0 V: exponent −2, mantissa 48.
        Transaction::write_read(TPS, vec![0x88], vec![48, 0b11110 << 3]),
        Transaction::write_read(TPS, vec![0x8B], vec![0x00, 0x02]),
        // 10.5 A: exponent −1, mantissa 21.
        Transaction::write_read(TPS, vec![0x8C], vec![21, 0b11111 << 3]),
        // 12.5 W: exponent −1, mantissa 25.
        Transaction::write_read(TPS, vec![0x96], vec![25, 0b11111 << 3]),
        // 45 °C: exponent 0.
        Transaction::write_read(TPS, vec![0x8D], vec![45, 0]),
    ]);
    let mock = Mock::new(&expected);
    let mut tps = Tps546::init(mock, TPS, LIMITS).expect("inits");
    let t = tps.telemetry().expect("reads");
    assert_eq!(
        (t.vin_v, t.vout_v, t.iout_a, t.pout_w, t.temperature_c),
        (12.0, 1.0, 10.5, 12.5, 45.0)
    );
    tps.release().done();
}

/// protocol.md §13's derived DS4432U codes.
#[test]
fn ds4432u_codes_from_the_spec() {
    assert_eq!(code_for_mv(1200), 0xC6);
    assert_eq!(code_for_mv(1400), 0x90);
    assert_eq!(code_for_mv(1500), 0x0C);
    let mut mock = Mock::new(&[Transaction::write(
        ds4432u::DEFAULT_ADDRESS,
        vec![0xF8, 0x90],
    )]);
    let mut dac = Ds4432u::new(mock.clone(), ds4432u::DEFAULT_ADDRESS, 1100, 1500);
    dac.set_vout_mv(1400).expect("in range");
    assert!(matches!(
        dac.set_vout_mv(1600),
        Err(DriverError::OutOfRange { .. })
    ));
    mock.done();
}

#[test]
fn emc2101_bytes() {
    let a = emc2101::DEFAULT_ADDRESS;
    let mut mock = Mock::new(&[
        Transaction::write_read(a, vec![0xFD], vec![0x16]),
        Transaction::write(a, vec![0x03, 0x04]),
        // 50 % of the 6-bit scale: 31.5 → 32.
        Transaction::write(a, vec![0x4C, 0x20]),
        // 60 °C + 5/8.
        Transaction::write_read(a, vec![0x01], vec![0x3C]),
        Transaction::write_read(a, vec![0x10], vec![0xA0]),
        // Open diode: 0x3F8.
        Transaction::write_read(a, vec![0x01], vec![0x7F]),
        Transaction::write_read(a, vec![0x10], vec![0x00]),
        // Tach count 900 → 6000 RPM; low byte first.
        Transaction::write_read(a, vec![0x46], vec![0x84]),
        Transaction::write_read(a, vec![0x47], vec![0x03]),
        Transaction::write_read(a, vec![0x46], vec![0xFF]),
        Transaction::write_read(a, vec![0x47], vec![0xFF]),
    ]);
    let mut emc = Emc2101::init(mock.clone(), a).expect("inits");
    emc.set_fan_percent(50.0).expect("writes");
    assert_eq!(emc.external_temp_c(), Ok(60.625));
    assert_eq!(emc.external_temp_c(), Err(DriverError::SensorFault));
    assert_eq!(emc.fan_rpm(), Ok(6000));
    assert_eq!(emc.fan_rpm(), Ok(0), "stalled");
    mock.done();
}

#[test]
fn ina260_bytes() {
    let a = ina260::DEFAULT_ADDRESS;
    let mut mock = Mock::new(&[
        Transaction::write_read(a, vec![0xFE], vec![0x54, 0x49]),
        Transaction::write_read(a, vec![0xFF], vec![0x22, 0x70]),
        Transaction::write_read(a, vec![0x01], vec![0x03, 0xE8]),
        Transaction::write_read(a, vec![0x02], vec![0x0F, 0xA0]),
        Transaction::write_read(a, vec![0x03], vec![0x02, 0x71]),
    ]);
    let mut ina = Ina260::init(mock.clone(), a).expect("inits");
    assert_eq!(
        ina.read_all(),
        Ok(Reading {
            current_ma: 1250.0,
            bus_mv: 5000.0,
            power_mw: 6250.0
        })
    );
    mock.done();
}

/// Against the simulator: the TPS546 driver's voltage reaches the chips, and its telemetry is
/// what they draw; the EMC2101 driver's fan setting cools them and its reading follows them.
#[test]
fn drivers_against_the_simulated_board() {
    use bm13xx::ChipModel;
    use chipsim::{ChainConfig, ChainSim, SimLink};
    let (_uart, control) =
        SimLink::open(ChainSim::new(ChainConfig::new(ChipModel::Bm1397, 2, 3)).expect("valid"));
    let mut tps =
        Tps546::init(control.regulator(), TPS, LIMITS).expect("the simulated part identifies");
    tps.set_vout_mv(1350).expect("in range");
    assert!((control.with_sim(|s| s.core_volts()) - 691.0 / 512.0).abs() < 1e-9);
    let t = tps.telemetry().expect("reads");
    assert!((f64::from(t.vout_v) - 691.0 / 512.0).abs() < 1e-6);
    let truth = control.with_sim(|s| s.power_w());
    assert!(
        (f64::from(t.pout_w) - truth).abs() < 0.05 * truth + 0.1,
        "{} vs {truth}",
        t.pout_w
    );

    let mut emc =
        Emc2101::init(control.fan_controller(), emc2101::DEFAULT_ADDRESS).expect("identifies");
    emc.set_fan_percent(100.0).expect("writes");
    assert_eq!(control.with_sim(|s| s.fan_duty()), 1.0);
    assert_eq!(emc.fan_rpm(), Ok(6000));
    control.advance(120.0);
    let hottest = control.with_sim(|s| {
        s.chips()
            .iter()
            .map(|c| c.thermal.temp_c)
            .fold(f64::MIN, f64::max)
    });
    let reading = f64::from(emc.external_temp_c().expect("reads"));
    assert!((reading - hottest).abs() <= 0.125);
}
