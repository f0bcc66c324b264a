//! The initialisation sequencers reproduce the spec's §6 tables byte for byte.
//!
//! Expected frames are built here from the spec's header/register/value tables with the spec's
//! bit-serial CRC5 (`crc5_bit_serial`, pinned to §2.2's check values), not with the table-driven
//! encoder the sequencer uses, so the encoder is not checking itself.

use bm13xx::crc::crc5_bit_serial;
use bm13xx::{ChipModel, Frequency, InitConfig, InitSequence, ResponseFormat, Step};

fn spec_crc5(data: &[u8]) -> u8 {
    crc5_bit_serial(data, data.len() * 8)
}

fn frame(header: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x55, 0xAA, header, payload.len() as u8 + 3];
    f.extend_from_slice(payload);
    f.push(spec_crc5(&f[2..]));
    f
}

fn write_all(register: u8, value: u32) -> Vec<u8> {
    let v = value.to_be_bytes();
    frame(0x51, &[0x00, register, v[0], v[1], v[2], v[3]])
}

fn write_one(address: u8, register: u8, value: u32) -> Vec<u8> {
    let v = value.to_be_bytes();
    frame(0x41, &[address, register, v[0], v[1], v[2], v[3]])
}

fn read_all(register: u8) -> Vec<u8> {
    frame(0x52, &[0x00, register])
}

fn chain_inactive() -> Vec<u8> {
    frame(0x53, &[0x00, 0x00])
}

fn set_address(address: u8) -> Vec<u8> {
    frame(0x40, &[address, 0x00])
}

/// What the sequencer produced, flattened: frames in order, host baud switches as markers.
#[derive(Debug, PartialEq)]
enum Op {
    Frame(Vec<u8>),
    Enumerate(Vec<u8>, u32, ResponseFormat),
    HostBaud(u32),
}

fn run(config: InitConfig) -> Vec<Op> {
    InitSequence::new(config)
        .expect("valid config")
        .map(|step| match step.expect("solvable") {
            Step::Send { frame, .. } => Op::Frame(frame.as_bytes().to_vec()),
            Step::Enumerate {
                frame,
                expected,
                format,
                ..
            } => Op::Enumerate(frame.as_bytes().to_vec(), expected, format),
            Step::SetHostBaud { baud, .. } => Op::HostBaud(baud),
        })
        .collect()
}

/// The ramp's PLL writes (§8.4) from 50 MHz, taken out so the tables below stay readable; the ramp
/// itself is checked in `ramp_is_embedded_and_ends_at_the_target`.
fn split_ramp(ops: &mut Vec<Op>, model: ChipModel) -> Vec<Vec<u8>> {
    let is_ramp = |op: &Op| match op {
        Op::Frame(f) => {
            f[2] == 0x51 && (f[5] == 0x08 || (model == ChipModel::Bm1397 && f[5] == 0x70))
        }
        _ => false,
    };
    let start = ops.iter().position(is_ramp).expect("a ramp");
    let len = ops[start..].iter().take_while(|op| is_ramp(op)).count();
    // Leave a marker where the ramp was, so the tables can say where it belongs.
    ops.splice(start..start + len, [ramp_marker()])
        .map(|op| match op {
            Op::Frame(frame) => frame,
            other => panic!("not a ramp frame: {other:?}"),
        })
        .collect()
}

fn ramp_marker() -> Op {
    Op::Frame(b"RAMP".to_vec())
}

fn f(bytes: Vec<u8>) -> Op {
    Op::Frame(bytes)
}

#[test]
fn bm1397_section_6_2() {
    let model = ChipModel::Bm1397;
    let mut ops = run(InitConfig::esp_miner(model, 2));
    split_ramp(&mut ops, model);
    let expected = vec![
        Op::Enumerate(bytes_of("55AA520500000A"), 2, ResponseFormat::Short),
        f(chain_inactive()),
        f(set_address(0x00)),
        f(set_address(0x80)),
        f(write_all(0x80, 0x0000_0000)),
        f(write_all(0x84, 0x0000_0000)),
        f(write_all(0x20, 0x0000_0001)),
        f(write_all(0x3C, 0x8000_8074)),
        f(write_all(0x14, 0x0000_00FF)),
        f(write_all(0x68, 0xC070_0111)),
        f(write_all(0x28, 0x0600_000F)),
        f(write_all(0x18, 0x0000_7A31)),
        ramp_marker(),
        f(write_all(0x18, 0x0000_6031)),
        Op::HostBaud(3_125_000),
    ];
    assert_eq!(ops, expected);
    assert_eq!(read_all(0x00), bytes_of("55AA520500000A"));
}

#[test]
fn bm1366_section_6_3() {
    let model = ChipModel::Bm1366;
    let mut ops = run(InitConfig::esp_miner(model, 1));
    split_ramp(&mut ops, model);
    let vr = || f(bytes_of("55AA510900A49000FFFF1C"));
    let mut expected = vec![vr(), vr(), vr()];
    expected.push(Op::Enumerate(read_all(0x00), 1, ResponseFormat::Long));
    expected.extend([
        f(bytes_of("55AA510900A80007000003")),
        f(bytes_of("55AA51090018FF0FC10000")),
        f(chain_inactive()),
        f(set_address(0)),
        f(write_all(0x3C, 0x8000_8540)),
        f(write_all(0x3C, 0x8000_8020)),
        f(write_all(0x14, 0x0000_00FF)),
        f(write_all(0x54, 0x0000_0003)),
        f(write_all(0x58, 0x0211_1111)),
        f(write_one(0, 0x2C, 0x007C_0003)),
        f(write_one(0, 0xA8, 0x0007_01F0)),
        f(write_one(0, 0x18, 0xF000_C100)),
        f(write_one(0, 0x3C, 0x8000_8540)),
        f(write_one(0, 0x3C, 0x8000_8020)),
        f(write_one(0, 0x3C, 0x8000_82AA)),
        ramp_marker(),
        f(write_all(0x10, 0x000D_3224)),
        vr(),
        f(write_all(0x28, 0x1130_0200)),
        Op::HostBaud(1_000_000),
    ]);
    assert_eq!(ops, expected);
}

#[test]
fn bm1368_section_6_4_per_chip_writes_for_every_chip() {
    let model = ChipModel::Bm1368;
    let mut ops = run(InitConfig::esp_miner(model, 2));
    split_ramp(&mut ops, model);
    let vr = || f(write_all(0xA4, 0x9000_FFFF));
    let mut expected = vec![vr(), vr(), vr(), vr()];
    expected.push(Op::Enumerate(read_all(0x00), 2, ResponseFormat::Long));
    expected.extend([
        f(chain_inactive()),
        f(write_all(0xA8, 0x0007_0000)),
        f(write_all(0x18, 0xFF0F_C100)),
        f(write_all(0x3C, 0x8000_8B00)),
        f(write_all(0x3C, 0x8000_8018)),
        f(write_all(0x14, 0x0000_00FF)),
        f(write_all(0x54, 0x0000_0003)),
        f(write_all(0x58, 0x0211_1111)),
        f(set_address(0x00)),
        f(set_address(0x80)),
    ]);
    for address in [0x00, 0x80] {
        expected.extend([
            f(write_one(address, 0xA8, 0x0007_01F0)),
            f(write_one(address, 0x18, 0xF000_C100)),
            f(write_one(address, 0x3C, 0x8000_8B00)),
            f(write_one(address, 0x3C, 0x8000_8018)),
            f(write_one(address, 0x3C, 0x8000_82AA)),
        ]);
    }
    // HCN for 2 chips at 490 MHz: 2^32 × 25 / 128 / 2 / 490 × 0.5, floored.
    let hcn = ((1u64 << 32) * 25_000 / (128 * 2 * 490_000 * 2)) as u32;
    expected.extend([
        f(write_all(0x14, 0x0000_00FF)),
        ramp_marker(),
        f(write_all(0x10, hcn)),
        vr(),
        f(write_all(0x28, 0x1130_0200)),
        Op::HostBaud(1_000_000),
    ]);
    assert_eq!(ops, expected);
}

#[test]
fn bm1370_section_6_5() {
    let model = ChipModel::Bm1370;
    let mut ops = run(InitConfig::esp_miner(model, 1));
    split_ramp(&mut ops, model);
    let vr = || f(write_all(0xA4, 0x9000_FFFF));
    let mut expected = vec![vr(), vr(), vr()];
    expected.push(Op::Enumerate(read_all(0x00), 1, ResponseFormat::Long));
    expected.extend([
        vr(),
        f(write_all(0xA8, 0x0007_0000)),
        f(bytes_of("55AA51090018F000C10004")),
        f(chain_inactive()),
        f(set_address(0)),
        f(write_all(0x3C, 0x8000_8B00)),
        f(write_all(0x3C, 0x8000_800C)),
        f(write_all(0x14, 0x0000_00FF)),
        f(write_all(0x58, 0x0001_1111)),
        f(write_one(0, 0xA8, 0x0007_01F0)),
        f(write_one(0, 0x18, 0xF000_C100)),
        f(write_one(0, 0x3C, 0x8000_8B00)),
        f(write_one(0, 0x3C, 0x8000_800C)),
        f(write_one(0, 0x3C, 0x8000_82AA)),
        f(write_all(0xB9, 0x0000_4480)),
        f(write_all(0x54, 0x0000_0002)),
        f(write_all(0xB9, 0x0000_4480)),
        f(write_all(0x3C, 0x8000_8DEE)),
        ramp_marker(),
        f(write_all(0x10, 0x000C_2FB7)),
        f(write_all(0x28, 0x1130_0200)),
        Op::HostBaud(1_000_000),
    ]);
    assert_eq!(ops, expected);
}

#[test]
fn ramp_is_embedded_and_ends_at_the_target() {
    // BM1397 at 425 MHz: 60 points from 50 MHz, four frames each, the last PLL word 0x40440221.
    let mut ops = run(InitConfig::esp_miner(ChipModel::Bm1397, 1));
    let ramp = split_ramp(&mut ops, ChipModel::Bm1397);
    assert_eq!(ramp.len(), 60 * 4);
    assert_eq!(ramp[0], write_all(0x70, 0x0F0F_0F00));
    assert_eq!(ramp[1], write_all(0x70, 0x0F0F_0F00));
    assert_eq!(ramp[239], write_all(0x08, 0x4044_0221));

    // BM1370 at 525 MHz: the spec's example, 76 single writes ending at 0x40A80230.
    let mut ops = run(InitConfig::esp_miner(ChipModel::Bm1370, 1));
    let ramp = split_ramp(&mut ops, ChipModel::Bm1370);
    assert_eq!(ramp.len(), 76);
    assert_eq!(ramp[75], write_all(0x08, 0x40A8_0230));
}

#[test]
fn a_custom_frequency_changes_the_ramp_and_hcn() {
    let config = InitConfig {
        frequency: Frequency::from_khz(600_000),
        ..InitConfig::esp_miner(ChipModel::Bm1370, 1)
    };
    let mut ops = run(config);
    let ramp = split_ramp(&mut ops, ChipModel::Bm1370);
    assert_eq!(ramp.last(), Some(&write_all(0x08, 0x50C0_0230)));
    let hcn = ((1u64 << 32) * 25_000 / (128 * 600_000 * 2)) as u32 - 268;
    assert!(ops.contains(&f(write_all(0x10, hcn))));
}

#[test]
fn bad_configs_are_refused() {
    assert!(InitSequence::new(InitConfig::esp_miner(ChipModel::Bm1397, 0)).is_err());
    assert!(InitSequence::new(InitConfig::esp_miner(ChipModel::Bm1397, 300)).is_err());
    let bad_mask = InitConfig {
        version_mask: bm13xx::VersionMask::new(0xFFFF_FFFF),
        ..InitConfig::esp_miner(ChipModel::Bm1366, 1)
    };
    assert!(InitSequence::new(bad_mask).is_err());
    let unreachable = InitConfig {
        frequency: Frequency::from_khz(5_000_000),
        ..InitConfig::esp_miner(ChipModel::Bm1366, 1)
    };
    let steps: Vec<_> = InitSequence::new(unreachable).expect("valid").collect();
    assert!(
        matches!(steps.last(), Some(Err(bm13xx::InitError::Pll(_)))),
        "an unreachable clock must end the sequence with an error"
    );
    assert_eq!(steps.iter().filter(|s| s.is_err()).count(), 1);
}

fn bytes_of(hex: &str) -> Vec<u8> {
    let mut out = [0u8; 32];
    let n = bm13xx::hex::decode_into(hex, &mut out).expect("hex");
    out[..n].to_vec()
}
