//! The decoder's invariants on one input, shared by the fuzz target and the corpus replay test
//! (`tests/fuzz_corpus.rs`), so the corpus keeps being checked on stable Rust in CI.
//!
//! Byte 0 chooses the direction, byte 1 seeds how the rest is chunked.

use bm13xx::{Direction, Event, JobFormat, ResponseFormat, StreamDecoder};

fn direction(selector: u8) -> Direction {
    match selector % 4 {
        0 => Direction::ChipToHost(ResponseFormat::Short),
        1 => Direction::ChipToHost(ResponseFormat::Long),
        2 => Direction::HostToChip(JobFormat::Midstate),
        _ => Direction::HostToChip(JobFormat::FullHeader),
    }
}

fn decode_chunked(direction: Direction, stream: &[u8], chunk_seed: u8) -> (Vec<Event>, StreamDecoder) {
    let mut decoder = StreamDecoder::new(direction);
    let mut events = Vec::new();
    let mut rest = stream;
    let mut seed = u32::from(chunk_seed) | 1;
    while !rest.is_empty() {
        // A small xorshift picks chunk sizes from 1 to 32 bytes.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let take = (seed as usize % 32 + 1).min(rest.len());
        events.extend(decoder.feed(&rest[..take]));
        rest = &rest[take..];
    }
    events.extend(decoder.finish());
    (events, decoder)
}

pub fn check(data: &[u8]) {
    let [selector, chunk_seed, stream @ ..] = data else {
        return;
    };
    let direction = direction(*selector);
    let mut whole = StreamDecoder::new(direction);
    let mut expected: Vec<Event> = whole.feed(stream).collect();
    expected.extend(whole.finish());
    let (events, decoder) = decode_chunked(direction, stream, *chunk_seed);
    assert_eq!(events, expected, "chunking changed the events");
    assert_eq!(decoder.stats(), whole.stats());
    assert_eq!(decoder.stats().bytes, stream.len() as u64);
    let mut end = 0;
    for event in &events {
        let span = event.span();
        assert!(span.start >= end, "events overlap: {events:?}");
        assert!(span.end <= stream.len() as u64);
        end = span.end;
        if let Event::Frame { frame, .. } = event {
            // Bytes the protocol leaves as don't-care (byte 0 of a broadcast, the second byte of a
            // set-address) are not kept, so compare what the frame means, not its bytes.
            let mut again = StreamDecoder::new(direction);
            let encoded = match frame {
                bm13xx::Frame::Command(c) => c.encode().as_bytes().to_vec(),
                bm13xx::Frame::Job(j) => j.encode().as_bytes().to_vec(),
                bm13xx::Frame::Response(r) => r.encode().as_bytes().to_vec(),
            };
            assert_eq!(encoded.len() as u64, span.end - span.start);
            let reparsed: Vec<Event> = again.feed(&encoded).collect();
            assert_eq!(reparsed, [Event::Frame { frame: *frame, offset: 0 }]);
        }
    }
    let frames = events.iter().filter(|e| matches!(e, Event::Frame { .. })).count() as u64;
    assert_eq!(decoder.stats().frames, frames);
}
