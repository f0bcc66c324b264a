//! The in-process UART (embedded-io-async and tokio) and the I2C peripherals, which share the
//! chain's physics.

use bm13xx::{ChipModel, Command, Destination, Event, Response, ResponseDecoder, ResponseFormat};
use chipsim::devices::{EMC2101_ADDRESS, TPS546_ADDRESS, emc2101, pmbus};
use chipsim::{ChainConfig, ChainSim, Faults, SimControl, SimLink, SimUart};
use embedded_hal::i2c::{Error as _, ErrorKind, I2c, NoAcknowledgeSource};

fn link(chips: u32) -> (SimUart, SimControl) {
    SimLink::open(ChainSim::new(ChainConfig::new(ChipModel::Bm1397, chips, 1)).expect("valid"))
}

fn chip_ids(bytes: &[u8]) -> usize {
    let mut decoder = ResponseDecoder::chip_to_host(ResponseFormat::Short);
    decoder
        .feed(bytes)
        .filter(|e| matches!(e, Event::Frame { frame: Response::Register(r), .. } if r.value == 0x1397_1800))
        .count()
}

#[tokio::test]
async fn embedded_io_async_read_waits_for_the_chips() {
    use embedded_io_async::{Read, Write};
    let (mut uart, _control) = link(3);
    let mut reader = uart.clone();
    // The read starts before anything was sent and completes once the chips answer.
    let read = tokio::spawn(async move {
        let mut buf = [0u8; 27];
        let mut got = 0;
        while got < buf.len() {
            got += reader.read(&mut buf[got..]).await.expect("infallible");
        }
        buf
    });
    tokio::task::yield_now().await;
    uart.write_all(Command::read(Destination::All, 0x00).encode().as_bytes())
        .await
        .expect("infallible");
    let bytes = read.await.expect("joins");
    assert_eq!(chip_ids(&bytes), 3);
}

#[tokio::test]
async fn tokio_async_read_and_write() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut uart, _control) = link(2);
    uart.write_all(Command::read(Destination::All, 0x00).encode().as_bytes())
        .await
        .expect("writes");
    let mut buf = [0u8; 18];
    uart.read_exact(&mut buf).await.expect("reads");
    assert_eq!(chip_ids(&buf), 2);
}

#[tokio::test]
async fn wrong_host_rate_hears_nothing_useful() {
    let (uart, _control) = link(1);
    uart.set_baud(9_600);
    uart.send(Command::read(Destination::All, 0x00).encode().as_bytes());
    let mut buf = [0u8; 32];
    assert_eq!(uart.try_read(&mut buf), 0);
}

#[tokio::test]
async fn realtime_driver_moves_simulated_time() {
    let (_uart, control) = link(1);
    let driver = tokio::spawn(
        control
            .clone()
            .run_realtime(100.0, std::time::Duration::from_millis(1)),
    );
    while control.with_sim(|sim| sim.now_s()) == 0.0 {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    driver.abort();
    assert!(control.with_sim(|sim| sim.now_s()) > 0.0);
}

fn read_word(bus: &mut impl I2c, address: u8, command: u8) -> u16 {
    let mut buf = [0u8; 2];
    bus.write_read(address, &[command], &mut buf)
        .expect("reads");
    u16::from_le_bytes(buf)
}

/// PMBus LINEAR11, decoded independently of the encoder: 5-bit and 11-bit two's complement.
fn from_linear11(word: u16) -> f64 {
    let exponent = ((word >> 11) as i16) << 11 >> 11;
    let mantissa = ((word & 0x7FF) as i16) << 5 >> 5;
    f64::from(mantissa) * 2f64.powi(i32::from(exponent))
}

#[test]
fn tps546_sets_the_core_voltage_and_reports_what_the_chips_draw() {
    let (_uart, control) = link(4);
    let mut bus = control.i2c_bus();
    let mut id = [0u8; 7];
    bus.write_read(TPS546_ADDRESS, &[pmbus::IC_DEVICE_ID], &mut id)
        .expect("reads");
    assert_eq!(id, [6, 0x54, 0x49, 0x54, 0x6B, 0x24, 0x41]);
    let mut mode = [0u8; 1];
    bus.write_read(TPS546_ADDRESS, &[pmbus::VOUT_MODE], &mut mode)
        .expect("reads");
    assert_eq!(mode[0] & 0x1F, 0x17, "ULINEAR16, exponent −9");

    // 1.3 V in ULINEAR16 at 2^-9: 665.6 → 666.
    bus.write(TPS546_ADDRESS, &[pmbus::VOUT_COMMAND, 0x9A, 0x02])
        .expect("writes");
    assert!((control.with_sim(|s| s.core_volts()) - 666.0 / 512.0).abs() < 1e-9);
    assert_eq!(read_word(&mut bus, TPS546_ADDRESS, pmbus::READ_VOUT), 666);
    assert!(
        (from_linear11(read_word(&mut bus, TPS546_ADDRESS, pmbus::READ_VIN)) - 12.0).abs() < 0.01
    );
    let pout = from_linear11(read_word(&mut bus, TPS546_ADDRESS, pmbus::READ_POUT));
    let truth = control.with_sim(|s| s.power_w());
    assert!(
        (pout - truth).abs() < 0.05 * truth + 0.1,
        "{pout} W vs {truth} W"
    );
    let iout = from_linear11(read_word(&mut bus, TPS546_ADDRESS, pmbus::READ_IOUT));
    assert!((iout * 666.0 / 512.0 - truth).abs() < 0.05 * truth + 0.1);

    // Above VOUT_MAX (2 V): clamped, and STATUS_WORD says so until CLEAR_FAULTS.
    bus.write(TPS546_ADDRESS, &[pmbus::VOUT_COMMAND, 0x00, 0x05])
        .expect("writes");
    assert!(control.with_sim(|s| s.core_volts()) <= 2.0);
    assert_ne!(
        read_word(&mut bus, TPS546_ADDRESS, pmbus::STATUS_WORD) & (1 << 15),
        0
    );
    bus.write(TPS546_ADDRESS, &[pmbus::CLEAR_FAULTS])
        .expect("writes");
    assert_eq!(read_word(&mut bus, TPS546_ADDRESS, pmbus::STATUS_WORD), 0);

    // OPERATION off: no voltage, and STATUS_WORD shows OFF.
    bus.write(TPS546_ADDRESS, &[pmbus::OPERATION, 0x00])
        .expect("writes");
    assert_eq!(control.with_sim(|s| s.core_volts()), 0.0);
    assert_ne!(
        read_word(&mut bus, TPS546_ADDRESS, pmbus::STATUS_WORD) & (1 << 6),
        0
    );

    // An injected regulator fault shows in STATUS_WORD even with the output commanded on.
    bus.write(TPS546_ADDRESS, &[pmbus::OPERATION, pmbus::ON])
        .expect("writes");
    control.set_faults(Faults {
        regulator_fault: true,
        ..Faults::default()
    });
    assert_eq!(read_word(&mut bus, TPS546_ADDRESS, pmbus::READ_VOUT), 0);
    assert_ne!(
        read_word(&mut bus, TPS546_ADDRESS, pmbus::STATUS_WORD) & (1 << 15),
        0
    );
}

#[test]
fn bus_errors_are_i2c_errors() {
    let (_uart, control) = link(1);
    let mut bus = control.i2c_bus();
    let err = bus.write(0x33, &[0]).expect_err("nobody at 0x33");
    assert_eq!(
        err.kind(),
        ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)
    );
    let err = bus
        .write(TPS546_ADDRESS, &[0xEE, 0x00])
        .expect_err("unsupported command");
    assert_eq!(
        err.kind(),
        ErrorKind::NoAcknowledge(NoAcknowledgeSource::Data)
    );
    let mut buf = [0u8; 1];
    let err = bus
        .read(EMC2101_ADDRESS, &mut buf)
        .expect_err("no command byte");
    assert_eq!(err.kind(), ErrorKind::Other);
}

#[test]
fn emc2101_reads_the_hottest_chip_and_drives_the_fan() {
    let (uart, control) = link(2);
    uart.send(Command::read(Destination::All, 0x00).encode().as_bytes());
    let mut bus = control.i2c_bus();
    let mut id = [0u8; 1];
    bus.write_read(EMC2101_ADDRESS, &[emc2101::PRODUCT_ID], &mut id)
        .expect("reads");
    assert_eq!(id[0], 0x16);

    // Heat the chips, then read the external diode: it follows the hottest chip.
    control.with_sim(|sim| sim.set_ambient_c(40.0));
    control.advance(300.0);
    let mut msb = [0u8; 1];
    let mut lsb = [0u8; 1];
    bus.write_read(EMC2101_ADDRESS, &[emc2101::EXTERNAL_TEMP_MSB], &mut msb)
        .expect("reads");
    bus.write_read(EMC2101_ADDRESS, &[emc2101::EXTERNAL_TEMP_LSB], &mut lsb)
        .expect("reads");
    let reading = f64::from(msb[0] as i8) + f64::from(lsb[0] >> 5) * 0.125;
    let hottest = control.with_sim(|s| {
        s.chips()
            .iter()
            .map(|c| c.thermal.temp_c)
            .fold(f64::MIN, f64::max)
    });
    assert!((reading - hottest).abs() <= 0.125, "{reading} vs {hottest}");

    // Full fan: duty 1, tach count 5 400 000 / RPM.
    bus.write(
        EMC2101_ADDRESS,
        &[emc2101::FAN_SETTING, emc2101::FAN_SETTING_MAX],
    )
    .expect("writes");
    assert_eq!(control.with_sim(|s| s.fan_duty()), 1.0);
    let mut tach = [0u8; 2];
    bus.write_read(EMC2101_ADDRESS, &[emc2101::TACH_LSB], &mut tach[..1])
        .expect("reads");
    bus.write_read(EMC2101_ADDRESS, &[emc2101::TACH_MSB], &mut tach[1..])
        .expect("reads");
    let rpm = 5_400_000.0 / f64::from(u16::from_le_bytes(tach));
    assert!((rpm - 6000.0).abs() < 10.0, "{rpm}");
    // A failed fan reads stalled even at full duty.
    control.set_faults(Faults {
        fan_failure: true,
        ..Faults::default()
    });
    bus.write_read(EMC2101_ADDRESS, &[emc2101::TACH_LSB], &mut tach[..1])
        .expect("reads");
    assert_eq!(tach[0], 0xFF);
    control.set_faults(Faults::default());
    // Fan off: the tach reads stalled.
    bus.write(EMC2101_ADDRESS, &[emc2101::FAN_SETTING, 0])
        .expect("writes");
    bus.write_read(EMC2101_ADDRESS, &[emc2101::TACH_LSB], &mut tach[..1])
        .expect("reads");
    assert_eq!(tach[0], 0xFF);
}

#[test]
fn the_reset_pin_silences_the_chain_and_brings_it_back_fresh() {
    use embedded_hal::digital::OutputPin;
    let (uart, control) = link(2);
    let mut reset = control.reset_pin();
    // Address the chain so there is state to lose.
    uart.send(Command::ChainInactive.encode().as_bytes());
    uart.send(Command::SetAddress { address: 0x80 }.encode().as_bytes());
    assert!(control.with_sim(|s| s.chips()[0].addressed));

    reset.set_low().expect("infallible");
    uart.send(Command::read(Destination::All, 0x00).encode().as_bytes());
    let mut buf = [0u8; 64];
    assert_eq!(uart.try_read(&mut buf), 0, "chips in reset say nothing");

    reset.set_high().expect("infallible");
    assert!(control.with_sim(|s| s.chips().iter().all(|c| !c.addressed && c.address == 0)));
    uart.send(Command::read(Destination::All, 0x00).encode().as_bytes());
    let n = uart.try_read(&mut buf);
    assert_eq!(chip_ids(&buf[..n]), 2);
}

/// Stacked domains: a 12-chip board in 4 domains of 3 commands its TPS546 at 4 × the per-chip
/// voltage; each chip gets a quarter, and READ_VOUT reports the stack.
#[test]
fn tps546_feeds_stacked_voltage_domains() {
    let mut config = ChainConfig::new(ChipModel::Bm1397, 12, 1);
    config.voltage_domains = 4;
    let (_uart, control) = SimLink::open(ChainSim::new(config).expect("valid"));
    let mut bus = control.i2c_bus();
    // VOUT_MAX up to 6.5 V first (3328 at 2^-9), then 5.6 V (2867.2 → 2867).
    bus.write(TPS546_ADDRESS, &[pmbus::VOUT_MAX, 0x00, 0x0D])
        .expect("writes");
    bus.write(TPS546_ADDRESS, &[pmbus::VOUT_COMMAND, 0x33, 0x0B])
        .expect("writes");
    let per_chip = control.with_sim(|s| s.core_volts());
    assert!(
        (per_chip - 2867.0 / 512.0 / 4.0).abs() < 1e-9,
        "{per_chip} V"
    );
    assert_eq!(read_word(&mut bus, TPS546_ADDRESS, pmbus::READ_VOUT), 2867);
}

/// A host that stalls (here: a second of wall time between two ticks) gets at most
/// `MAX_TICKS_PER_STEP` ticks of simulated time for it, not the whole gap: simulated time slows
/// down instead of the next step growing without bound.
#[tokio::test(start_paused = true)]
async fn an_overloaded_realtime_clock_slows_down_instead_of_spiralling() {
    let (_uart, control) = link(2);
    let tick = std::time::Duration::from_millis(10);
    let speed = 50.0;
    let clock = tokio::spawn(control.clone().run_realtime(speed, tick));
    // Let it start, then stall the host for a second of wall time in one go.
    tokio::time::sleep(tick * 3).await;
    let before = control.with_sim(|s| s.now_s());
    tokio::time::advance(std::time::Duration::from_secs(1)).await;
    tokio::task::yield_now().await;
    tokio::time::sleep(tick / 2).await;
    let gained = control.with_sim(|s| s.now_s()) - before;
    clock.abort();
    let cap = f64::from(chipsim::link::MAX_TICKS_PER_STEP) * tick.as_secs_f64() * speed;
    assert!(gained > 0.0, "time moved on");
    assert!(
        gained <= cap + tick.as_secs_f64() * speed + 1e-9,
        "{gained} simulated s for one stalled step (cap {cap})"
    );
}
