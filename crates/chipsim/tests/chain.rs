//! The simulated chain on the wire: enumeration and init as the spec gives them, addressing,
//! register reads, baud switching, and jobs whose nonces are genuine.

mod common;

use bm13xx::{
    BlockHeader, ChipAddressing, ChipModel, Command, Destination, Event, HeaderJob, InitConfig,
    Job, JobId, MidstateJob, NonceLayout, Response, ResponseFormat, VersionMask, decode_nonce,
};
use common::Host;

fn frames(events: &[Event<Response>]) -> Vec<Response> {
    events
        .iter()
        .map(|e| match e {
            Event::Frame { frame, .. } => *frame,
            Event::Error(e) => panic!("unexpected {e:?}"),
        })
        .collect()
}

/// protocol.md §6.2 (ESP-Miner's BM1397 init) against 4 chips: exactly one chip-id frame per chip with
/// the right bytes, chips addressed at the 256/4 interval, 425 MHz, 3.125 Mbaud.
#[test]
fn bm1397_enumeration_and_init() {
    let mut host = Host::new(ChipModel::Bm1397, 4, 1);
    let enumeration = host.init(InitConfig::esp_miner(ChipModel::Bm1397, 4));
    let chip_id = [0xAA, 0x55, 0x13, 0x97, 0x18, 0x00, 0x00, 0x00, 0x06];
    assert_eq!(enumeration.len(), 4);
    for event in &enumeration {
        let Event::Frame { frame, .. } = event else {
            panic!("{event:?}")
        };
        assert_eq!(frame.encode().as_bytes(), chip_id);
    }
    let addresses: Vec<u8> = host.sim.chips().iter().map(|c| c.address).collect();
    assert_eq!(addresses, [0, 64, 128, 192]);
    for chip in host.sim.chips() {
        assert!(
            (chip.frequency_mhz() - 425.0).abs() < 1e-6,
            "{}",
            chip.frequency_mhz()
        );
        assert_eq!(chip.baud(), 3_125_000);
        assert_eq!(chip.register(0x14), 0x0000_00FF);
    }
    assert_eq!(host.baud, 3_125_000);
    assert_eq!(host.sim.stats().crc_dropped, 0);
    assert_eq!(host.sim.stats().wrong_baud_frames, 0);

    // Each chip answers a per-chip read with its own address in byte 6.
    for address in [0u8, 64, 128, 192] {
        host.send(
            Command::read(Destination::Chip(address), 0x14)
                .encode()
                .as_bytes(),
        );
        let responses = frames(&host.responses());
        assert!(
            matches!(responses[..], [Response::Register(r)] if r.chip_address == address && r.value == 0xFF)
        );
    }
    // A broadcast read is answered nearest chip first.
    host.send(Command::read(Destination::All, 0x00).encode().as_bytes());
    let order: Vec<u8> = frames(&host.responses())
        .iter()
        .map(|r| match r {
            Response::Register(r) => r.chip_address,
            Response::Nonce(_) => panic!("nonce"),
        })
        .collect();
    assert_eq!(order, [0, 64, 128, 192]);
}

#[test]
fn bm1366_answers_in_11_bytes_after_version_rolling() {
    let mut host = Host::new(ChipModel::Bm1366, 2, 1);
    let enumeration = host.init(InitConfig::esp_miner(ChipModel::Bm1366, 2));
    assert_eq!(enumeration.len(), 2);
    for response in frames(&enumeration) {
        assert_eq!(response.format(), ResponseFormat::Long);
        let Response::Register(r) = response else {
            panic!("register")
        };
        assert_eq!(r.value, 0x1366_0000);
    }
    assert_eq!(
        host.baud, 1_000_000,
        "host runs 4 % off the chip's 1 041 666 Bd and is heard"
    );
    host.send(
        Command::read(Destination::Chip(128), 0x08)
            .encode()
            .as_bytes(),
    );
    let responses = frames(&host.responses());
    assert!(matches!(responses[..], [Response::Register(r)] if r.value == 0x50C2_0240));
}

#[test]
fn frames_with_bad_crc_are_dropped_silently() {
    let mut host = Host::new(ChipModel::Bm1397, 2, 1);
    let mut read = Command::read(Destination::All, 0x00)
        .encode()
        .as_bytes()
        .to_vec();
    *read.last_mut().expect("crc") ^= 0x01;
    host.send(&read);
    assert!(host.responses().is_empty());
    assert_eq!(host.sim.stats().crc_dropped, 1);
    // Writes get no answer either.
    host.send(
        Command::write(Destination::All, bm13xx::TicketMask::from_register(0xFF))
            .encode()
            .as_bytes(),
    );
    assert!(host.responses().is_empty());
    assert_eq!(host.sim.chips()[1].register(0x14), 0xFF);
}

#[test]
fn traffic_at_the_wrong_rate_is_garbage_both_ways() {
    let mut host = Host::new(ChipModel::Bm1397, 1, 1);
    host.init(InitConfig::esp_miner(ChipModel::Bm1397, 1));
    assert_eq!(host.sim.baud(), 3_125_000);
    // The host forgets to switch: the chip hears noise and does nothing.
    host.baud = 115_200;
    host.send(Command::read(Destination::All, 0x00).encode().as_bytes());
    assert!(host.sim.take_output(115_200).is_empty());
    // At the right rate it answers; read at the wrong rate, the answer is noise.
    host.sim.receive(
        Command::read(Destination::All, 0x00).encode().as_bytes(),
        3_125_000,
    );
    let heard_wrong = host.sim.take_output(115_200);
    assert_eq!(heard_wrong.len(), 9);
    assert_ne!(
        heard_wrong,
        [0xAA, 0x55, 0x13, 0x97, 0x18, 0x00, 0x00, 0x00, 0x06]
    );
}

#[test]
fn baud_change_takes_effect_after_the_frame() {
    let mut host = Host::new(ChipModel::Bm1397, 1, 1);
    // One buffer: the baud write, then a read still at the old rate. The chip switched after the
    // write, so the read that followed at 115 200 is noise to it.
    let mut bytes = Command::write(
        Destination::All,
        bm13xx::registers::MiscControl::esp_miner(bm13xx::registers::BaudDivisor::MAX_FROM_CLKI),
    )
    .encode()
    .as_bytes()
    .to_vec();
    host.send(&bytes);
    assert_eq!(host.sim.baud(), 3_125_000);
    bytes = Command::read(Destination::All, 0x00)
        .encode()
        .as_bytes()
        .to_vec();
    host.send(&bytes);
    assert!(host.sim.take_output(115_200).is_empty());
}

fn pinned_header() -> BlockHeader {
    BlockHeader {
        version: 0x2000_0004,
        prev_hash: bm13xx::header::prev_hash_from_stratum(
            &bm13xx::hex::decode_array(
                "bf44fd3513dc7b837d60e5c628b572b448d204a8000007490000000000000000",
            )
            .expect("hex"),
        ),
        merkle_root: bm13xx::hex::decode_array(
            "cd1be82132ef0d12053dcece1fa0247fcfdb61d4dbd3eb32ea9ef9b4c604a846",
        )
        .expect("hex"),
        ntime: 0x6465_8bd8,
        nbits: 0x1705_dd01,
        nonce: 0,
    }
}

/// Nonces from an AsicBoost BM1397 job: each is a real solution at the floor for the midstate it
/// names, decodes to the right job and chip, and they arrive at the rate the clock gives.
#[test]
fn bm1397_nonces_are_genuine_and_arrive_at_the_clock_rate() {
    let chips = 4;
    let mut host = Host::new(ChipModel::Bm1397, chips, 7);
    host.init(InitConfig::esp_miner(ChipModel::Bm1397, chips));
    let header = pinned_header();
    let job_id = JobId::new(ChipModel::Bm1397, 40).expect("valid");
    let job = MidstateJob::from_header(job_id, &header, Some(VersionMask::BIP320));
    host.send(Job::Midstate(job).encode().as_bytes());

    let seconds = 400.0;
    for _ in 0..400 {
        host.sim.advance(seconds / 400.0);
    }
    let nonces: Vec<_> = frames(&host.responses())
        .into_iter()
        .map(|r| match r {
            Response::Nonce(n) => n,
            Response::Register(_) => panic!("register"),
        })
        .collect();
    let addressing = ChipAddressing::for_chain(chips).expect("valid");
    let mut per_chip = [0u32; 4];
    let mut midstates_seen = [false; 4];
    let mut bad = 0;
    for nonce in &nonces {
        let fields = decode_nonce(ChipModel::Bm1397, nonce, NonceLayout::ESP_MINER, addressing);
        assert_eq!(fields.job_id, 40);
        let k = fields.midstate.expect("BM1397 names the midstate");
        midstates_seen[usize::from(k)] = true;
        per_chip[fields.chip_index as usize] += 1;
        let solved = BlockHeader {
            version: VersionMask::BIP320.roll(header.version, u32::from(k)),
            nonce: fields.nonce,
            ..header
        };
        // Ticket 256 × floor 2^-32 = difficulty 2^-24.
        if solved.share_difficulty() < 2f64.powi(-24) {
            bad += 1;
        }
    }
    // Hardware errors are rare at the default clock; every chip and every midstate shows up.
    assert!(bad <= 1, "{bad} invalid of {}", nonces.len());
    assert!(per_chip.iter().all(|&n| n > 0), "{per_chip:?}");
    assert!(midstates_seen.iter().all(|&s| s));
    // 4 × 285.6 GH/s at ticket 256: 1.039 nonces/s. Poisson: within 5 standard deviations.
    let expected = 4.0 * 285.6e9 / (4_294_967_296.0 * 256.0) * seconds;
    let n = nonces.len() as f64;
    assert!(
        (n - expected).abs() < 5.0 * expected.sqrt(),
        "{n} nonces, expected {expected:.0}"
    );
}

/// BM1366+ with version rolling: 11-byte nonces whose version bits, ORed into the job's version,
/// give the header that was hashed; job id and small core where §3.3 puts them.
#[test]
fn bm1370_nonces_carry_their_version_bits() {
    let mut host = Host::new(ChipModel::Bm1370, 2, 9);
    host.init(InitConfig::esp_miner(ChipModel::Bm1370, 2));
    let header = BlockHeader {
        version: 0x2000_0000,
        ..pinned_header()
    };
    let job = HeaderJob::new(JobId::new(ChipModel::Bm1370, 120).expect("valid"), &header);
    host.send(Job::Header(job).encode().as_bytes());
    for _ in 0..100 {
        host.sim.advance(1.0);
    }
    let addressing = ChipAddressing::for_chain(2).expect("valid");
    let nonces: Vec<_> = frames(&host.responses())
        .into_iter()
        .filter_map(|r| match r {
            Response::Nonce(n) => Some(n),
            Response::Register(_) => None,
        })
        .collect();
    assert!(nonces.len() > 20, "{}", nonces.len());
    let mut valid = 0;
    for nonce in &nonces {
        assert_eq!(
            nonce.byte6, 0x02,
            "BM1366+ byte 6 carries data drivers must ignore"
        );
        let fields = decode_nonce(ChipModel::Bm1370, nonce, NonceLayout::ESP_MINER, addressing);
        assert_eq!(fields.job_id, 120);
        assert!(fields.small_core.expect("small core") < 16);
        let version = header.version | fields.version_bits.expect("long response");
        let solved = BlockHeader {
            version,
            nonce: fields.nonce,
            ..header
        };
        valid += u32::from(solved.share_difficulty() >= 2f64.powi(-24));
    }
    assert!(valid as usize >= nonces.len() - 1);
}

#[test]
fn same_seed_same_wire() {
    let run = |seed| {
        let mut host = Host::new(ChipModel::Bm1397, 3, seed);
        host.init(InitConfig::esp_miner(ChipModel::Bm1397, 3));
        let job = MidstateJob::from_header(
            JobId::new(ChipModel::Bm1397, 4).expect("valid"),
            &pinned_header(),
            None,
        );
        host.send(Job::Midstate(job).encode().as_bytes());
        host.sim.advance(30.0);
        host.sim.take_output(host.baud)
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

/// A core-register read through 0x3C is answered by the chip on its own, as a 0x40 response
/// (protocol.md §5.3); a core-register write is not answered.
#[test]
fn core_register_reads_answer_as_register_0x40() {
    use bm13xx::registers::CoreRegisterControl;
    let mut host = Host::new(ChipModel::Bm1397, 2, 1);
    host.init(InitConfig::esp_miner(ChipModel::Bm1397, 2));
    let write = CoreRegisterControl::write(0, 0x05, 0x40).expect("valid");
    host.send(Command::write(Destination::All, write).encode().as_bytes());
    assert!(host.responses().is_empty());
    let read = CoreRegisterControl::read(3, 0x05).expect("valid");
    host.send(
        Command::write(Destination::Chip(128), read)
            .encode()
            .as_bytes(),
    );
    let responses = frames(&host.responses());
    assert!(
        matches!(responses[..], [Response::Register(r)] if r.register == 0x40 && r.chip_address == 128 && r.value == (3 << 16) | 0x40),
        "{responses:?}"
    );
}
