//! The physics responds the right way, deterministically; faults show up on the wire as configured.

mod common;

use bm13xx::{
    ChipModel, Command, Destination, ErrorKind, Event, InitConfig, Job, JobId, MidstateJob,
    Response,
};
use chipsim::{FaultScript, Faults, Oracle};
use common::Host;

fn mining_host(chips: u32, seed: u64) -> Host {
    mining(Host::new(ChipModel::Bm1397, chips, seed))
}

/// Brings the host's BM1397 chain up and gives it work.
fn mining(mut host: Host) -> Host {
    let chips = host.sim.config().chips;
    host.init(InitConfig::esp_miner(ChipModel::Bm1397, chips));
    let header = bm13xx::BlockHeader {
        version: 0x2000_0000,
        prev_hash: [3; 32],
        merkle_root: [4; 32],
        ntime: 1,
        nbits: 0x1705_dd01,
        nonce: 0,
    };
    let job = MidstateJob::from_header(
        JobId::new(ChipModel::Bm1397, 8).expect("valid"),
        &header,
        None,
    );
    host.send(Job::Midstate(job).encode().as_bytes());
    host
}

fn set_clock(host: &mut Host, mhz: u32) {
    let model = ChipModel::Bm1397;
    let setting = bm13xx::pll::solve(
        model,
        bm13xx::Frequency::from_khz(mhz * 1000),
        bm13xx::PllConstraints::esp_miner(model),
    )
    .expect("solvable");
    host.send(
        Command::write(Destination::All, setting.parameter)
            .encode()
            .as_bytes(),
    );
}

#[test]
fn more_clock_means_more_power_and_above_the_limit_more_errors() {
    let mut host = mining_host(1, 11);
    let f_max = Oracle::of(&host.sim).chips[0].points[4].max_stable_mhz;
    host.sim.advance(1.0);
    let power_at_425 = host.sim.power_w();
    set_clock(&mut host, 450);
    host.sim.advance(1.0);
    assert!(host.sim.power_w() > power_at_425);

    // Well below the limit: (almost) no hardware errors. Well above it: mostly errors.
    let below = (f_max * 0.85) as u32;
    let above = (f_max * 1.08) as u32;
    let error_share = |host: &mut Host, mhz| {
        set_clock(host, mhz);
        let before = host.sim.chips()[0].stats;
        for _ in 0..300 {
            host.sim.advance(1.0);
        }
        let after = host.sim.chips()[0].stats;
        host.sim.take_output(host.baud);
        (after.bad_nonces - before.bad_nonces) as f64 / (after.nonces - before.nonces).max(1) as f64
    };
    let low = error_share(&mut host, below);
    let high = error_share(&mut host, above);
    assert!(low < 0.02, "{low} at {below} MHz (f_max {f_max:.0})");
    assert!(high > 0.5, "{high} at {above} MHz (f_max {f_max:.0})");
}

#[test]
fn more_fan_means_cooler_chips() {
    let settle = |duty: f64| {
        let mut host = mining_host(2, 5);
        host.sim.set_fan_duty(duty);
        for _ in 0..300 {
            host.sim.advance(1.0);
        }
        host.sim
            .chips()
            .iter()
            .map(|c| c.thermal.temp_c)
            .sum::<f64>()
            / 2.0
    };
    let (slow, fast) = (settle(0.3), settle(1.0));
    assert!(
        fast + 5.0 < slow,
        "fan 100 %: {fast:.1} °C, fan 30 %: {slow:.1} °C"
    );
    // And the same seed settles to the same temperature.
    assert_eq!(settle(0.3), slow);
}

#[test]
fn an_overheated_chip_stops_hashing() {
    let mut host = mining_host(2, 3);
    host.sim.set_faults(Faults {
        thermal_runaway: vec![1],
        ..Faults::default()
    });
    for _ in 0..600 {
        host.sim.advance(1.0);
    }
    let hot = &host.sim.chips()[1];
    assert!(hot.thermal.overheated, "{} °C", hot.thermal.temp_c);
    assert_eq!(hot.hashrate(), 0.0);
    assert!(!host.sim.chips()[0].thermal.overheated);
    let nonces_before = host.sim.chips()[1].stats.nonces;
    host.sim.advance(60.0);
    assert_eq!(host.sim.chips()[1].stats.nonces, nonces_before);
}

#[test]
fn chain_break_and_reset_hide_the_chips_beyond() {
    let mut host = Host::new(ChipModel::Bm1397, 6, 1);
    host.sim.set_faults(Faults {
        break_after: Some(2),
        ..Faults::default()
    });
    assert_eq!(
        host.init(InitConfig::esp_miner(ChipModel::Bm1397, 6)).len(),
        3
    );

    let mut host = Host::new(ChipModel::Bm1397, 6, 1);
    host.sim.set_faults(Faults {
        stuck_in_reset: vec![4],
        ..Faults::default()
    });
    assert_eq!(
        host.init(InitConfig::esp_miner(ChipModel::Bm1397, 6)).len(),
        4
    );
}

#[test]
fn an_unresponsive_chip_relays_but_says_nothing() {
    let mut host = mining_host(4, 2);
    host.sim.set_faults(Faults {
        unresponsive: vec![1],
        ..Faults::default()
    });
    host.send(Command::read(Destination::All, 0x00).encode().as_bytes());
    let answering: Vec<u8> = host
        .responses()
        .iter()
        .filter_map(|e| match e {
            Event::Frame {
                frame: Response::Register(r),
                ..
            } => Some(r.chip_address),
            _ => None,
        })
        .collect();
    assert_eq!(answering, [0, 128, 192]);
}

#[test]
fn bad_crcs_dropped_bytes_and_flipped_bits_reach_the_host() {
    let mut host = mining_host(2, 4);
    host.sim.set_faults(Faults {
        bad_crc_rate: 1.0,
        ..Faults::default()
    });
    host.send(Command::read(Destination::All, 0x00).encode().as_bytes());
    let events = host.responses();
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|e| matches!(e, Event::Error(err) if err.kind == ErrorKind::Crc))
    );

    host.sim.set_faults(Faults {
        drop_rate: 0.02,
        bit_flip_rate: 0.02,
        ..Faults::default()
    });
    for _ in 0..200 {
        host.send(Command::read(Destination::All, 0x00).encode().as_bytes());
    }
    let events = host.responses();
    let good = events
        .iter()
        .filter(|e| matches!(e, Event::Frame { .. }))
        .count();
    let errors = events.len() - good;
    // 400 responses of 9 bytes at 4 % damage per byte: about 70 % arrive intact.
    assert!((200..360).contains(&good), "{good} intact");
    assert!(errors > 10, "{errors} errors");
}

#[test]
fn duplicated_nonces_come_twice() {
    let mut host = mining_host(1, 6);
    host.sim.set_faults(Faults {
        duplicate_nonce_rate: 1.0,
        ..Faults::default()
    });
    for _ in 0..60 {
        host.sim.advance(1.0);
    }
    let nonces: Vec<u32> = host
        .responses()
        .iter()
        .filter_map(|e| match e {
            Event::Frame {
                frame: Response::Nonce(n),
                ..
            } => Some(n.nonce()),
            _ => None,
        })
        .collect();
    assert!(
        nonces.len() >= 4 && nonces.len().is_multiple_of(2),
        "{}",
        nonces.len()
    );
    assert!(nonces.chunks(2).all(|pair| pair[0] == pair[1]));
}

#[test]
fn a_regulator_fault_stops_everything_and_a_script_heals_it() {
    let mut host = mining_host(2, 8);
    host.sim.set_fault_script(
        FaultScript::from_json(
            r#"[{"at_s": 10, "faults": {"regulator_fault": true}}, {"at_s": 100, "faults": {}}]"#,
        )
        .expect("valid"),
    );
    for _ in 0..30 {
        host.sim.advance(1.0);
    }
    host.nonce_count();
    for _ in 0..60 {
        host.sim.advance(1.0);
    }
    assert_eq!(host.nonce_count(), 0, "no voltage, no nonces");
    assert!(host.sim.power_w() < 0.5);
    for _ in 0..200 {
        host.sim.advance(1.0);
    }
    // Power came back at 100 s, but the chips lost their addresses, clocks and work with it.
    assert_eq!(host.nonce_count(), 0, "unconfigured chips do not hash");
    assert!(host.sim.chips().iter().all(|c| !c.addressed));
    let mut host = mining(host_after_power_loss(host));
    for _ in 0..100 {
        host.sim.advance(1.0);
    }
    assert!(host.nonce_count() > 10, "brought up again, they mine");
}

/// With no floor (real difficulty) a CPU cannot find nonces; the simulator must give up on them
/// rather than hang.
#[test]
fn a_floor_at_real_difficulty_abandons_nonces_instead_of_hanging() {
    let mut config = chipsim::ChainConfig::new(ChipModel::Bm1397, 1, 1);
    config.share_floor_log2 = 0;
    let mut host = mining(Host::with_config(config));
    // Ten seconds at 0.26 nonces/s: a few searches, each given up after 2^24 hashes.
    host.sim.advance(10.0);
    let stats = host.sim.chips()[0].stats;
    assert!(stats.abandoned > 0, "{stats:?}");
    assert_eq!(
        stats.nonces, stats.bad_nonces,
        "only hardware errors are cheap at real difficulty"
    );
}

/// The host side goes back to the power-on rate; the chain keeps its (reset) state.
fn host_after_power_loss(mut host: Host) -> Host {
    host.baud = 115_200;
    host
}

#[test]
fn a_graded_chain_draws_its_grade_for_the_same_work() {
    let typical =
        chipsim::ChainSim::new(chipsim::ChainConfig::new(ChipModel::Bm1397, 3, 5)).expect("valid");
    let mut config = chipsim::ChainConfig::new(ChipModel::Bm1397, 3, 5);
    config.joules_per_th = Some(17.0);
    let graded = chipsim::ChainSim::new(config).expect("valid");
    let (typical, graded) = (Oracle::of(&typical), Oracle::of(&graded));
    for (t, g) in typical.chips.iter().zip(&graded.chips) {
        for (tp, gp) in t.points.iter().zip(&g.points) {
            // Same silicon speed, power scaled from the model's 45 J/TH to the grade's 17.
            assert_eq!(tp.max_stable_mhz, gp.max_stable_mhz);
            assert!((gp.watts / tp.watts - 17.0 / 45.0).abs() < 1e-9);
        }
    }
    let nominal = &graded.chips[0].points[4];
    assert!((12.0..19.0).contains(&nominal.joules_per_th), "{nominal:?}");
}

#[test]
fn a_grade_outside_any_silicon_is_refused() {
    for bad in [0.0, -3.0, 500.0, f64::NAN, f64::INFINITY] {
        let mut config = chipsim::ChainConfig::new(ChipModel::Bm1397, 1, 1);
        config.joules_per_th = Some(bad);
        assert!(
            matches!(
                chipsim::ChainSim::new(config),
                Err(chipsim::ConfigError::Grade(_))
            ),
            "{bad}"
        );
    }
}
