//! The streaming decoder against hand-built streams: every kind of damage, offsets, and chunking.

use bm13xx::hex::decode_into;
use bm13xx::{
    ChipModel, Command, DecodeError, Destination, ErrorKind, Event, HostDecoder, HostFrame,
    Response, ResponseDecoder, ResponseFormat, Side, StreamDecoder,
};

fn bytes(hex: &str) -> Vec<u8> {
    let mut out = vec![0u8; hex.len()];
    let n = decode_into(hex, &mut out).expect("hex");
    out.truncate(n);
    out
}

fn decode_all<S: Side>(
    mut decoder: StreamDecoder<S>,
    chunks: &[&[u8]],
) -> (Vec<Event<S::Frame>>, StreamDecoder<S>) {
    let mut events = Vec::new();
    for chunk in chunks {
        events.extend(decoder.feed(chunk));
    }
    events.extend(decoder.finish());
    (events, decoder)
}

fn rx() -> ResponseDecoder {
    ResponseDecoder::chip_to_host(ResponseFormat::Short)
}

fn error<F>(kind: ErrorKind, offset: u64, len: usize) -> Event<F> {
    Event::Error(DecodeError {
        kind,
        offset,
        len,
        suspect: None,
    })
}

const CHIP_ID: &str = "AA55 1397 1800 00 00 06";

#[test]
fn chip_id_responses_back_to_back() {
    let stream = bytes(&format!("{CHIP_ID} {CHIP_ID}"));
    let (events, decoder) = decode_all(rx(), &[&stream]);
    assert_eq!(events.len(), 2);
    assert!(
        matches!(events[1], Event::Frame { offset: 9, frame: Response::Register(r), .. } if r.value == 0x1397_1800)
    );
    assert_eq!(decoder.stats().frames, 2);
    assert_eq!(decoder.stats().errors(), 0);
}

#[test]
fn garbage_before_a_frame_is_one_preamble_error() {
    let stream = bytes(&format!("00 FF AA 13 55 {CHIP_ID} 01 02"));
    let (events, decoder) = decode_all(rx(), &[&stream]);
    assert_eq!(events[0], error(ErrorKind::Preamble, 0, 5));
    assert!(matches!(events[1], Event::Frame { offset: 5, .. }));
    assert_eq!(events[2], error(ErrorKind::Preamble, 14, 2));
    assert_eq!(events.len(), 3);
    assert_eq!(decoder.stats().garbage_bytes, 7);
    assert_eq!(decoder.stats().preamble_errors, 2);
}

#[test]
fn bad_crc_is_reported_and_the_next_frame_survives() {
    let stream = bytes(&format!("AA55 1397 1800 00 00 07 {CHIP_ID}"));
    let (events, decoder) = decode_all(rx(), &[&stream]);
    assert_eq!(events[0], error(ErrorKind::Crc, 0, 9));
    assert!(matches!(events[1], Event::Frame { offset: 9, .. }));
    assert_eq!(decoder.stats().crc_errors, 1);
}

#[test]
fn frame_cut_short_by_the_next_one_is_truncated() {
    // Five bytes of a response, then a whole one: the first candidate swallows the start of the
    // second, fails, and the decoder restarts at the inner preamble.
    let stream = bytes(&format!("AA55 1397 18 {CHIP_ID}"));
    let (events, decoder) = decode_all(rx(), &[&stream]);
    assert_eq!(events[0], error(ErrorKind::Truncated, 0, 5));
    assert!(matches!(events[1], Event::Frame { offset: 5, .. }));
    assert_eq!(events.len(), 2);
    assert_eq!(decoder.stats().truncated, 1);
}

#[test]
fn stream_ending_inside_a_frame_is_truncated() {
    let stream = bytes(&format!("{CHIP_ID} AA55 13"));
    let (events, _) = decode_all(rx(), &[&stream]);
    assert_eq!(events[1], error(ErrorKind::Truncated, 9, 3));
    // A lone first preamble byte at the end is only garbage.
    let (events, _) = decode_all(rx(), &[&bytes(&format!("{CHIP_ID} AA"))]);
    assert_eq!(events[1], error(ErrorKind::Preamble, 9, 1));
}

#[test]
fn byte_at_a_time_gives_the_same_events() {
    let stream = bytes(&format!(
        "13 AA AA55 1397 18 {CHIP_ID} AA55 1397 1800 00 00 07 55 AA {CHIP_ID} AA"
    ));
    let (whole, _) = decode_all(rx(), &[&stream]);
    let chunks: Vec<&[u8]> = stream.chunks(1).collect();
    let (split, _) = decode_all(rx(), &chunks);
    assert_eq!(whole, split);
    assert_eq!(
        whole
            .iter()
            .filter(|e| matches!(e, Event::Frame { .. }))
            .count(),
        2
    );
}

#[test]
fn eleven_byte_responses_carry_version_bits() {
    let nonce = Response::Nonce(bm13xx::NonceResponse {
        nonce_bytes: [1, 2, 3, 4],
        byte6: 0x02,
        byte7: 0x35,
        version_bits: Some(0x94FB),
    });
    let frame = nonce.encode();
    assert_eq!(frame.len(), 11);
    let (events, _) = decode_all(
        ResponseDecoder::chip_to_host(ResponseFormat::Long),
        &[frame.as_bytes()],
    );
    assert_eq!(
        events,
        vec![Event::Frame {
            frame: nonce,
            offset: 0,
            len: 11
        }]
    );
    // Read with the wrong size, the same bytes are not a frame.
    let (events, _) = decode_all(rx(), &[frame.as_bytes()]);
    assert!(events.iter().all(|e| matches!(e, Event::Error(_))));
}

#[test]
fn host_stream_with_commands_and_jobs() {
    let job = "55 AA 21 56 08 01 00000000".to_string() + &"00".repeat(76);
    let mut job_bytes = bytes(&job);
    let crc = bm13xx::crc::crc16(&job_bytes[2..]);
    job_bytes.extend_from_slice(&crc.to_be_bytes());
    let mut stream = bytes("55AA5305000003 55AA400500001C");
    stream.extend_from_slice(&job_bytes);
    stream.extend_from_slice(&bytes("55AA4109401800007A3111"));
    let (events, decoder) = decode_all(HostDecoder::host_to_chip(ChipModel::Bm1366), &[&stream]);
    let frames: Vec<HostFrame> = events
        .iter()
        .map(|e| match e {
            Event::Frame { frame, .. } => *frame,
            Event::Error(e) => panic!("unexpected {e:?}"),
        })
        .collect();
    assert_eq!(frames[0], HostFrame::Command(Command::ChainInactive));
    assert_eq!(
        frames[1],
        HostFrame::Command(Command::SetAddress { address: 0 })
    );
    assert!(matches!(frames[2], HostFrame::Job(job) if job.job_id() == 8));
    assert_eq!(
        frames[3],
        HostFrame::Command(Command::WriteRegister {
            destination: Destination::Chip(0x40),
            register: 0x18,
            value: 0x7A31
        })
    );
    assert_eq!(decoder.stats().frames, 4);
}

#[test]
fn host_frame_with_bad_crc_is_shown_as_a_suspect() {
    let stream = bytes("55AA5305000004 55AA520500000A");
    let (events, _) = decode_all(HostDecoder::host_to_chip(ChipModel::Bm1397), &[&stream]);
    assert_eq!(
        events[0],
        Event::Error(DecodeError {
            kind: ErrorKind::Crc,
            offset: 0,
            len: 7,
            suspect: Some(HostFrame::Command(Command::ChainInactive)),
        })
    );
    assert!(matches!(events[1], Event::Frame { offset: 7, .. }));
}

#[test]
fn unknown_length_byte_is_a_length_error() {
    // A job header with a length no BM1397 job has, then a good command.
    let stream = bytes("55 AA 21 40 01 02 03 55AA5305000003");
    let (events, decoder) = decode_all(HostDecoder::host_to_chip(ChipModel::Bm1397), &[&stream]);
    assert_eq!(events[0], error(ErrorKind::Length, 0, 4));
    assert!(matches!(
        events[1],
        Event::Frame {
            offset: 7,
            frame: HostFrame::Command(Command::ChainInactive),
            len: 7
        }
    ));
    assert_eq!(
        events.len(),
        2,
        "the bytes after a bad length belong to that error"
    );
    assert_eq!(decoder.stats().length_errors, 1);
    assert_eq!(decoder.stats().preamble_errors, 0);
}

#[test]
fn unknown_header_byte_is_garbage() {
    let stream = bytes("55 AA 99 05 00 00 00 55AA5305000003");
    let (events, _) = decode_all(HostDecoder::host_to_chip(ChipModel::Bm1397), &[&stream]);
    assert_eq!(events[0], error(ErrorKind::Preamble, 0, 7));
    assert!(matches!(events[1], Event::Frame { offset: 7, .. }));
}

/// §4.2: BM1366+ accept both length bytes for full-header jobs; for BM1397 0x36 means one slot.
#[test]
fn legacy_length_byte_depends_on_the_model() {
    let mut frame = bytes("55 AA 21 36 04 01 00000000");
    frame.extend(std::iter::repeat_n(0u8, 76));
    let crc = bm13xx::crc::crc16(&frame[2..]);
    frame.extend_from_slice(&crc.to_be_bytes());
    let (events, _) = decode_all(HostDecoder::host_to_chip(ChipModel::Bm1370), &[&frame]);
    assert!(matches!(
        events[..],
        [Event::Frame {
            frame: HostFrame::Job(bm13xx::Job::Header(_)),
            ..
        }]
    ));
    let (events, _) = decode_all(HostDecoder::host_to_chip(ChipModel::Bm1397), &[&frame]);
    assert!(
        !events.iter().any(|e| matches!(e, Event::Frame { .. })),
        "an 88-byte frame is no 54-byte BM1397 job: {events:?}"
    );
}

#[test]
fn dropping_the_events_early_still_consumes_the_input() {
    let stream = bytes(&format!("{CHIP_ID} {CHIP_ID} {CHIP_ID}"));
    let mut decoder = rx();
    let first = decoder.feed(&stream).next();
    assert!(matches!(first, Some(Event::Frame { offset: 0, .. })));
    assert_eq!(
        decoder.stats().frames,
        3,
        "the other two frames were decoded on drop"
    );
    let next: Vec<_> = decoder.feed(&bytes(CHIP_ID)).collect();
    assert!(
        matches!(next[..], [Event::Frame { offset: 27, .. }]),
        "{next:?}"
    );
}
