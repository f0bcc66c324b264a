//! Property tests: round trips for every frame kind, the decoder on arbitrary bytes, and the
//! arithmetic (PLL, ticket mask, ramps) against brute-force oracles.

use bm13xx::header::difficulty_of_hash;
use bm13xx::pll::{PllConstraints, solve};
use bm13xx::ramp::RampPoints;
use bm13xx::{
    BlockHeader, ChipModel, ChipToHost, Command, Destination, Event, HeaderJob, HostDecoder,
    HostFrame, HostToChip, Job, JobFormat, Midstate, MidstateJob, NonceResponse, RegisterResponse,
    Response, ResponseDecoder, ResponseFormat, Side, StreamDecoder, TicketDifficulty,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

fn model() -> impl Strategy<Value = ChipModel> {
    prop::sample::select(ChipModel::ALL.to_vec())
}

fn destination() -> impl Strategy<Value = Destination> {
    prop_oneof![
        any::<u8>().prop_map(Destination::Chip),
        Just(Destination::All)
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        any::<u8>().prop_map(|address| Command::SetAddress { address }),
        (destination(), any::<u8>(), any::<u32>()).prop_map(|(destination, register, value)| {
            Command::WriteRegister {
                destination,
                register,
                value,
            }
        }),
        (destination(), any::<u8>()).prop_map(|(destination, register)| Command::ReadRegister {
            destination,
            register
        }),
        Just(Command::ChainInactive),
    ]
}

fn header() -> impl Strategy<Value = BlockHeader> {
    (
        any::<u32>(),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(version, prev_hash, merkle_root, ntime, nbits)| BlockHeader {
                version,
                prev_hash,
                merkle_root,
                ntime,
                nbits,
                nonce: 0,
            },
        )
}

fn midstate_job() -> impl Strategy<Value = MidstateJob> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<[u8; 4]>(),
        any::<[[u32; 8]; 4]>(),
        1u8..=4,
    )
        .prop_map(|(job_id, count, start, nbits, ntime, tail, words, slots)| {
            let mut midstates = words.map(Midstate);
            // Slots the frame does not carry read back as zero.
            for unused in &mut midstates[usize::from(slots)..] {
                *unused = Midstate::default();
            }
            MidstateJob {
                job_id,
                midstate_count: count,
                starting_nonce: start,
                nbits,
                ntime,
                merkle_tail: tail,
                midstates,
                slots,
            }
        })
}

fn header_job() -> impl Strategy<Value = HeaderJob> {
    (
        any::<u8>(),
        any::<u32>(),
        header(),
        prop::sample::select(vec![0x56u8, 0x36]),
    )
        .prop_map(|(job_id, starting_nonce, header, length_byte)| HeaderJob {
            job_id,
            starting_nonce,
            header,
            length_byte,
        })
}

fn response(format: ResponseFormat) -> impl Strategy<Value = Response> {
    let long = format == ResponseFormat::Long;
    prop_oneof![
        (any::<u32>(), any::<u8>(), any::<u8>(), any::<[u8; 2]>()).prop_map(
            move |(value, chip_address, register, extra)| Response::Register(RegisterResponse {
                value,
                chip_address,
                register,
                extra: long.then_some(extra),
            })
        ),
        (any::<[u8; 4]>(), any::<u8>(), any::<u8>(), any::<u16>()).prop_map(
            move |(nonce_bytes, byte6, byte7, version)| Response::Nonce(NonceResponse {
                nonce_bytes,
                byte6,
                byte7,
                version_bits: long.then_some(version),
            })
        ),
    ]
}

fn format() -> impl Strategy<Value = ResponseFormat> {
    prop_oneof![Just(ResponseFormat::Short), Just(ResponseFormat::Long)]
}

fn decode<S: Side>(decoder: &mut StreamDecoder<S>, chunks: &[&[u8]]) -> Vec<Event<S::Frame>> {
    let mut events = Vec::new();
    for chunk in chunks {
        events.extend(decoder.feed(chunk));
    }
    events.extend(decoder.finish());
    events
}

fn split_points(len: usize, cuts: &[usize]) -> Vec<usize> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
    points.push(0);
    points.push(len);
    points.sort_unstable();
    points.dedup();
    points
}

fn any_chunking<S: Side>(side: S, stream: &[u8], cuts: &[usize]) -> Result<(), TestCaseError> {
    let whole = decode(&mut StreamDecoder::new(side), &[stream]);
    let points = split_points(stream.len(), cuts);
    let chunks: Vec<&[u8]> = points.windows(2).map(|w| &stream[w[0]..w[1]]).collect();
    let mut decoder = StreamDecoder::new(side);
    let split = decode(&mut decoder, &chunks);
    prop_assert_eq!(&whole, &split);
    prop_assert_eq!(decoder.stats().bytes, stream.len() as u64);
    let mut end = 0;
    for event in &whole {
        let core::ops::Range { start, end: stop } = event.span();
        prop_assert!(start >= end, "events overlap or go backwards: {:?}", whole);
        prop_assert!(stop <= stream.len() as u64);
        end = stop;
    }
    Ok(())
}

proptest! {
    #[test]
    fn commands_round_trip(command in command()) {
        let frame = command.encode();
        prop_assert_eq!(command.wire_len(), frame.len());
        prop_assert_eq!(Command::parse(frame.as_bytes()), Ok((command, true)));
    }

    #[test]
    fn midstate_jobs_round_trip(job in midstate_job()) {
        let frame = Job::Midstate(job).encode();
        prop_assert_eq!(frame.len(), 2 + 22 + 32 * usize::from(job.slots));
        prop_assert_eq!(Job::Midstate(job).wire_len(), frame.len());
        prop_assert_eq!(Job::parse(JobFormat::Midstate, frame.as_bytes()), Ok((Job::Midstate(job), true)));
    }

    #[test]
    fn header_jobs_round_trip(job in header_job()) {
        let frame = Job::Header(job).encode();
        prop_assert_eq!(frame.len(), 88);
        prop_assert_eq!(Job::parse(JobFormat::FullHeader, frame.as_bytes()), Ok((Job::Header(job), true)));
    }

    #[test]
    fn responses_round_trip((format, response) in format().prop_flat_map(|f| (Just(f), response(f)))) {
        let frame = response.encode();
        prop_assert_eq!(frame.len(), format.frame_len());
        prop_assert_eq!(Response::parse(format, frame.as_bytes()), Ok(response));
    }

    /// Any sequence of good frames, cut anywhere, decodes to exactly those frames.
    #[test]
    fn host_streams_decode_exactly(
        model in model(),
        frames in prop::collection::vec(prop_oneof![
            command().prop_map(HostFrame::Command),
            midstate_job().prop_map(|j| HostFrame::Job(Job::Midstate(j))),
            header_job().prop_map(|j| HostFrame::Job(Job::Header(j))),
        ], 0..12),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let frames: Vec<HostFrame> = frames.into_iter().filter(|f| match f {
            HostFrame::Job(Job::Midstate(_)) => model.job_format() == JobFormat::Midstate,
            HostFrame::Job(Job::Header(_)) => model.job_format() == JobFormat::FullHeader,
            HostFrame::Command(_) => true,
        }).collect();
        let mut stream = Vec::new();
        let mut offsets = Vec::new();
        for frame in &frames {
            offsets.push(stream.len() as u64);
            match frame {
                HostFrame::Command(c) => stream.extend_from_slice(c.encode().as_bytes()),
                HostFrame::Job(j) => stream.extend_from_slice(j.encode().as_bytes()),
            }
        }
        let points = split_points(stream.len(), &cuts);
        let chunks: Vec<&[u8]> = points.windows(2).map(|w| &stream[w[0]..w[1]]).collect();
        let events = decode(&mut HostDecoder::host_to_chip(model), &chunks);
        let expected: Vec<Event<HostFrame>> = frames
            .iter()
            .zip(offsets)
            .map(|(frame, offset)| Event::Frame { frame: *frame, offset, len: frame.wire_len() })
            .collect();
        prop_assert_eq!(events, expected);
    }

    /// The decoder on anything: no panic, the same events however the bytes are chunked, and events
    /// in stream order without overlaps.
    #[test]
    fn arbitrary_bytes_any_chunking(
        side in 0u8..4,
        // Bias towards preamble bytes so that near-frames are common.
        stream in prop::collection::vec(prop_oneof![any::<u8>(), Just(0x55u8), Just(0xAAu8)], 0..600),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        match side {
            0 => any_chunking(ChipToHost(ResponseFormat::Short), &stream, &cuts)?,
            1 => any_chunking(ChipToHost(ResponseFormat::Long), &stream, &cuts)?,
            2 => any_chunking(HostToChip(JobFormat::Midstate), &stream, &cuts)?,
            _ => any_chunking(HostToChip(JobFormat::FullHeader), &stream, &cuts)?,
        }
    }

    /// A valid frame inside garbage is found, unless the garbage itself formed a valid frame that
    /// overlaps it (CRC5 lets about one random candidate in 128 through).
    #[test]
    fn frames_in_garbage_are_not_lost(
        (format, response) in format().prop_flat_map(|f| (Just(f), response(f))),
        before in prop::collection::vec(prop_oneof![any::<u8>(), Just(0xAAu8), Just(0x55u8)], 0..64),
        after in prop::collection::vec(any::<u8>(), 0..64),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let frame = response.encode();
        let mut stream = before.clone();
        stream.extend_from_slice(frame.as_bytes());
        stream.extend_from_slice(&after);
        let points = split_points(stream.len(), &cuts);
        let chunks: Vec<&[u8]> = points.windows(2).map(|w| &stream[w[0]..w[1]]).collect();
        let events = decode(&mut ResponseDecoder::chip_to_host(format), &chunks);
        let at = before.len() as u64;
        let end = at + frame.len() as u64;
        let found = events.iter().any(|e| matches!(e, Event::Frame { frame, offset, .. } if *offset == at && *frame == response));
        let shadowed = events.iter().any(|e| {
            let core::ops::Range { start, end: stop } = e.span();
            matches!(e, Event::Frame { .. }) && start < end && stop > at && start != at
        });
        prop_assert!(found || shadowed, "lost frame at {}: {:?}", at, events);
    }

    /// The solver finds the closest frequency the divider space allows (brute-force oracle), and the
    /// word it produces reads back to the same dividers.
    #[test]
    fn pll_solver_is_optimal(model in model(), target_khz in 50_000u32..=800_000) {
        let target = bm13xx::Frequency::from_khz(target_khz);
        let constraints = PllConstraints::esp_miner(model);
        let setting = solve(model, target, constraints).expect("solvable in this range");
        let mut best_error = f64::MAX;
        for refdiv in 1..=2u32 {
            for p1 in 1..=7u32 {
                for p2 in 1..p1 {
                    for fb in u32::from(constraints.fbdiv_min)..=u32::from(constraints.fbdiv_max) {
                        let f = 25_000.0 * f64::from(fb) / f64::from(refdiv * p1 * p2);
                        best_error = best_error.min((f - f64::from(target_khz)).abs());
                    }
                }
            }
        }
        let d = setting.parameter.dividers();
        let exact = 25_000.0 * f64::from(d.fbdiv()) / f64::from(u32::from(d.refdiv()) * u32::from(d.postdiv1()) * u32::from(d.postdiv2()));
        prop_assert!((exact - f64::from(target_khz)).abs() <= best_error + 0.1);
        prop_assert!(d.fbdiv() >= constraints.fbdiv_min && d.fbdiv() <= constraints.fbdiv_max);
        prop_assert_eq!(bm13xx::PllParameter::from_register(model, setting.parameter.value()), Some(setting.parameter));
    }

    /// The chip's byte rule equals "at least 32 + k leading zero bits", counted independently.
    #[test]
    fn ticket_mask_filters_at_its_difficulty(log2 in 0u8..=32, hash in any::<[u8; 32]>(), zeros in 0usize..12) {
        let mut hash = hash;
        // Make passing hashes common: clear the top `zeros` bytes (hash[31] is most significant).
        for byte in hash.iter_mut().rev().take(zeros) {
            *byte = 0;
        }
        let ticket = TicketDifficulty::from_log2(log2).expect("in range");
        let mut leading = 0u32;
        for &byte in hash.iter().rev() {
            leading += byte.leading_zeros();
            if byte != 0 { break; }
        }
        prop_assert_eq!(ticket.mask().accepts(&hash), leading >= 32 + u32::from(log2));
        if ticket.mask().accepts(&hash) {
            prop_assert!(difficulty_of_hash(&hash) >= ticket.value() * 0.99998);
        }
    }

    #[test]
    fn ticket_difficulty_is_the_largest_power_of_two_not_above(d in 1.0f64..4_294_967_295.0) {
        let ticket = TicketDifficulty::at_most(d).expect("valid");
        let ceiled = d.ceil();
        prop_assert!(ticket.value() <= ceiled);
        prop_assert!(ticket.value() * 2.0 > ceiled);
    }

    #[test]
    fn ramps_step_at_most_one_grid_point(from in 0u32..1_000_000, to in 0u32..1_000_000) {
        let points: Vec<u32> = RampPoints::new(bm13xx::Frequency::from_khz(from), bm13xx::Frequency::from_khz(to)).map(|f| f.khz()).collect();
        if from == to {
            prop_assert!(points.is_empty());
        } else {
            prop_assert_eq!(points.last().copied(), Some(to));
            let mut previous = from;
            for &p in &points {
                prop_assert!(previous.abs_diff(p) <= 6_250, "{} -> {}", previous, p);
                let towards_target = if to > from { p > previous } else { p < previous };
                prop_assert!(towards_target);
                previous = p;
            }
        }
    }

    #[test]
    fn hex_round_trips(data in prop::collection::vec(any::<u8>(), 0..64)) {
        let text: String = data.iter().map(|b| format!("{b:02x} ")).collect();
        let mut out = vec![0u8; 64];
        let n = bm13xx::hex::decode_into(&text, &mut out).expect("valid hex");
        prop_assert_eq!(&out[..n], &data[..]);
    }
}
