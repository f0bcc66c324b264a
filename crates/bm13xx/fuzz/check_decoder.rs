//! The decoder's invariants on one input, shared by the fuzz target and the corpus replay test
//! (`tests/fuzz_corpus.rs`), so the corpus keeps being checked on stable Rust in CI.
//!
//! Byte 0 chooses the side and format, byte 1 seeds how the rest is chunked.

use bm13xx::{ChipToHost, Event, HostToChip, JobFormat, ResponseFormat, Side, StreamDecoder};

pub fn check(data: &[u8]) {
    let [selector, chunk_seed, stream @ ..] = data else {
        return;
    };
    match selector % 4 {
        0 => check_side(ChipToHost(ResponseFormat::Short), stream, *chunk_seed),
        1 => check_side(ChipToHost(ResponseFormat::Long), stream, *chunk_seed),
        2 => check_side(HostToChip(JobFormat::Midstate), stream, *chunk_seed),
        _ => check_side(HostToChip(JobFormat::FullHeader), stream, *chunk_seed),
    }
}

fn decode_chunked<S: Side>(
    side: S,
    stream: &[u8],
    chunk_seed: u8,
) -> (Vec<Event<S::Frame>>, StreamDecoder<S>) {
    let mut decoder = StreamDecoder::new(side);
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

fn check_side<S: Side>(side: S, stream: &[u8], chunk_seed: u8) {
    let mut whole = StreamDecoder::new(side);
    let mut expected: Vec<Event<S::Frame>> = whole.feed(stream).collect();
    expected.extend(whole.finish());
    let (events, decoder) = decode_chunked(side, stream, chunk_seed);
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
            // Decoding the frame's own bytes again gives the same frame: nothing in a good frame
            // depends on what came before it.
            let bytes = &stream[span.start as usize..span.end as usize];
            let again: Vec<Event<S::Frame>> = StreamDecoder::new(side).feed(bytes).collect();
            assert!(
                matches!(again.as_slice(), [Event::Frame { frame: f, offset: 0, .. }] if f == frame),
                "{again:?}"
            );
        }
    }
    let frames = events
        .iter()
        .filter(|e| matches!(e, Event::Frame { .. }))
        .count() as u64;
    assert_eq!(decoder.stats().frames, frames);
}
