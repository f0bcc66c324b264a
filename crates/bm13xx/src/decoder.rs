//! A streaming frame decoder for either direction of the UART.
//!
//! Bytes arrive in chunks of any size; frames come out with their stream offsets. Whatever is not a
//! frame comes out as an error event and decoding carries on: garbage before a preamble, a frame
//! whose CRC fails, a frame cut short by the next one, a length byte no frame has. The decoder holds
//! at most one frame's worth of bytes, never allocates, never panics, and produces the same events
//! however the stream is chunked.
//!
//! Resynchronisation never skips a possible frame start: when a candidate fails, only the bytes
//! before the next preamble inside it are dropped, and the rest is decoded again. A frame hidden in
//! garbage is found unless the garbage happens to form a valid frame that overlaps it (with CRC5
//! that happens for about one random candidate in 128).

use crate::command::Command;
use crate::job::{Job, MAX_JOB_LEN};
use crate::model::{ChipModel, JobFormat};
use crate::response::{Response, ResponseFormat};
use crate::{PREAMBLE_RX, PREAMBLE_TX, ParseError};

/// A frame from the host: a command or a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostFrame {
    Command(Command),
    Job(Job),
}

impl HostFrame {
    /// How many bytes the frame occupies on the wire.
    pub fn wire_len(&self) -> usize {
        match self {
            Self::Command(command) => command.wire_len(),
            Self::Job(job) => job.wire_len(),
        }
    }
}

mod sealed {
    /// What the first bytes of a candidate say it is.
    #[derive(Debug)]
    pub enum Shape {
        /// Not enough bytes yet to tell.
        Undecided,
        /// A frame of this many bytes.
        Frame(usize),
        /// The first byte starts no frame.
        NotAFrame,
        /// A frame start with a length byte no frame has.
        BadLength,
    }

    pub trait Sealed {}
}

use sealed::Shape;

/// One side of the UART: what its frames look like. Implemented by [`ChipToHost`] and
/// [`HostToChip`]; sealed, because the decoder relies on their framing rules.
pub trait Side: sealed::Sealed + Copy + core::fmt::Debug {
    /// What a good frame decodes to.
    type Frame: Copy + core::fmt::Debug + PartialEq;
    fn preamble(self) -> [u8; 2];
    #[doc(hidden)]
    fn shape_of(self, candidate: &[u8]) -> Shape;
    /// Parses a whole candidate; `Ok((frame, false))` for a frame with a sound layout and a bad CRC.
    fn parse(self, frame: &[u8]) -> Result<(Self::Frame, bool), ParseError>;
}

/// Chip → host: responses of one size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChipToHost(pub ResponseFormat);

impl sealed::Sealed for ChipToHost {}

impl Side for ChipToHost {
    type Frame = Response;

    fn preamble(self) -> [u8; 2] {
        PREAMBLE_RX
    }

    #[inline]
    fn shape_of(self, candidate: &[u8]) -> Shape {
        match candidate {
            [_, second, ..] if *second != PREAMBLE_RX[1] => Shape::NotAFrame,
            [_, _, ..] => Shape::Frame(self.0.frame_len()),
            _ => Shape::Undecided,
        }
    }

    #[inline]
    fn parse(self, frame: &[u8]) -> Result<(Response, bool), ParseError> {
        Response::parse(self.0, frame).map(|response| (response, true))
    }
}

/// Host → chip: commands and jobs. The job format decides how a job's length byte reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostToChip(pub JobFormat);

impl sealed::Sealed for HostToChip {}

impl Side for HostToChip {
    type Frame = HostFrame;

    fn preamble(self) -> [u8; 2] {
        PREAMBLE_TX
    }

    fn shape_of(self, candidate: &[u8]) -> Shape {
        match *candidate {
            [_, second, ..] if second != PREAMBLE_TX[1] => Shape::NotAFrame,
            [_, _, 0x21] => Shape::Undecided,
            [_, _, 0x21, length_byte, ..] => match Job::frame_len(self.0, length_byte) {
                Some(len) => Shape::Frame(len),
                None => Shape::BadLength,
            },
            [_, _, header, ..] => match Command::frame_len_for_header(header) {
                Some(len) => Shape::Frame(len),
                None => Shape::NotAFrame,
            },
            _ => Shape::Undecided,
        }
    }

    fn parse(self, frame: &[u8]) -> Result<(HostFrame, bool), ParseError> {
        if frame.get(2) == Some(&0x21) {
            Job::parse(self.0, frame).map(|(job, ok)| (HostFrame::Job(job), ok))
        } else {
            Command::parse(frame).map(|(command, ok)| (HostFrame::Command(command), ok))
        }
    }
}

/// What went wrong at a place in the stream (the names are the capture tool's `reason`s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Bytes that do not start a frame.
    Preamble,
    /// A whole frame whose CRC does not check.
    Crc,
    /// A frame cut short: the next preamble starts inside it, or the stream ended.
    Truncated,
    /// A length byte that no frame of this kind has.
    Length,
}

impl ErrorKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Preamble => "preamble",
            Self::Crc => "crc",
            Self::Truncated => "truncated",
            Self::Length => "length",
        }
    }
}

/// A stretch of the stream that was not a good frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecodeError<F> {
    pub kind: ErrorKind,
    /// Stream offset of the first byte concerned.
    pub offset: u64,
    /// How many bytes were given up.
    pub len: usize,
    /// For a host → chip frame with a bad CRC but a sound layout: what it says. A capture tool shows
    /// it; a chip would drop it.
    pub suspect: Option<F>,
}

/// One result of decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event<F> {
    Frame { frame: F, offset: u64, len: usize },
    Error(DecodeError<F>),
}

impl<F> Event<F> {
    /// The stream bytes this event accounts for.
    pub fn span(&self) -> core::ops::Range<u64> {
        match self {
            Self::Frame { offset, len, .. } => *offset..offset + *len as u64,
            Self::Error(error) => error.offset..error.offset + error.len as u64,
        }
    }
}

/// Running totals, for health counters and the hardware-error picture of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecoderStats {
    pub frames: u64,
    pub bytes: u64,
    /// Runs of bytes that started no frame.
    pub preamble_errors: u64,
    pub garbage_bytes: u64,
    pub crc_errors: u64,
    pub truncated: u64,
    pub length_errors: u64,
}

impl DecoderStats {
    pub const fn errors(&self) -> u64 {
        self.preamble_errors + self.crc_errors + self.truncated + self.length_errors
    }
}

/// The streaming decoder for one side of the UART.
#[derive(Debug, Clone)]
pub struct StreamDecoder<S: Side> {
    side: S,
    buf: [u8; MAX_JOB_LEN],
    len: usize,
    /// Stream offset of `buf[0]`.
    buf_offset: u64,
    /// Stream offset of the next byte to arrive.
    next_offset: u64,
    /// An unreported run of garbage: start offset and length.
    garbage: Option<(u64, usize)>,
    /// The garbage run belongs to an error already reported (a bad length byte).
    garbage_reported: bool,
    stats: DecoderStats,
}

/// Decodes what chips send back.
pub type ResponseDecoder = StreamDecoder<ChipToHost>;
/// Decodes what a host sends to chips.
pub type HostDecoder = StreamDecoder<HostToChip>;

impl ResponseDecoder {
    pub fn chip_to_host(format: ResponseFormat) -> Self {
        Self::new(ChipToHost(format))
    }

    /// Switches the response size (BM1366+ once version rolling is on). Bytes already buffered are
    /// decoded with the new size.
    pub fn set_format(&mut self, format: ResponseFormat) {
        self.side = ChipToHost(format);
    }
}

impl HostDecoder {
    /// A decoder for what a host sends to chips of `model`.
    pub fn host_to_chip(model: ChipModel) -> Self {
        Self::new(HostToChip(model.job_format()))
    }
}

impl<S: Side> StreamDecoder<S> {
    pub fn new(side: S) -> Self {
        Self {
            side,
            buf: [0; MAX_JOB_LEN],
            len: 0,
            buf_offset: 0,
            next_offset: 0,
            garbage: None,
            garbage_reported: false,
            stats: DecoderStats::default(),
        }
    }

    pub const fn side(&self) -> S {
        self.side
    }

    pub const fn stats(&self) -> &DecoderStats {
        &self.stats
    }

    /// Decodes `input`, yielding events as the iterator is driven. Dropping the iterator early
    /// still consumes the rest of `input` (its events are discarded), so the stream position and
    /// the counters stay right.
    pub fn feed<'d, 'i>(&'d mut self, input: &'i [u8]) -> Events<'d, 'i, S> {
        self.stats.bytes += input.len() as u64;
        Events {
            decoder: self,
            input,
            finishing: false,
        }
    }

    /// Ends the stream: reports a trailing partial frame and trailing garbage.
    pub fn finish(&mut self) -> Events<'_, 'static, S> {
        Events {
            decoder: self,
            input: &[],
            finishing: true,
        }
    }

    fn shape(&self) -> Shape {
        self.side.shape_of(&self.buf[..self.len])
    }

    /// Whether the candidate is far enough along to be sure it is a frame start, which ends any
    /// garbage run before it.
    fn confirmed(&self) -> bool {
        matches!(self.shape(), Shape::Frame(_) | Shape::BadLength)
    }

    /// Where the next possible frame start inside the buffer is, after position 0: (index, whether
    /// the whole preamble is there or only its first byte at the very end).
    fn next_start_in_buffer(&self) -> Option<(usize, bool)> {
        let buf = &self.buf[..self.len];
        let [p0, p1] = self.side.preamble();
        (1..buf.len()).find_map(|i| match buf.get(i + 1) {
            _ if buf[i] != p0 => None,
            Some(&next) if next == p1 => Some((i, true)),
            Some(_) => None,
            None => Some((i, false)),
        })
    }

    fn drop_front(&mut self, n: usize) {
        let n = n.min(self.len);
        self.buf.copy_within(n..self.len, 0);
        self.len -= n;
        self.buf_offset += n as u64;
    }

    fn add_garbage(&mut self, offset: u64, n: usize) {
        if n == 0 {
            return;
        }
        self.stats.garbage_bytes += n as u64;
        match &mut self.garbage {
            Some((_, len)) => *len += n,
            None => self.garbage = Some((offset, n)),
        }
    }

    /// Drops the candidate's first byte as garbage and lines the buffer up on the next possible start.
    fn reject_start(&mut self) {
        let skip = self.next_start_in_buffer().map_or(self.len, |(i, _)| i);
        self.add_garbage(self.buf_offset, skip);
        self.drop_front(skip);
    }

    /// Gives up the candidate as `kind`, keeping everything from the next possible start in it.
    fn fail(&mut self, kind: ErrorKind, suspect: Option<S::Frame>) -> DecodeError<S::Frame> {
        let next = self.next_start_in_buffer();
        let kind = match next {
            Some((_, true)) => ErrorKind::Truncated,
            _ => kind,
        };
        let skip = next.map_or(self.len, |(i, _)| i);
        let error = DecodeError {
            kind,
            offset: self.buf_offset,
            len: skip,
            suspect,
        };
        match kind {
            ErrorKind::Preamble => self.stats.preamble_errors += 1,
            ErrorKind::Crc => self.stats.crc_errors += 1,
            ErrorKind::Truncated => self.stats.truncated += 1,
            ErrorKind::Length => self.stats.length_errors += 1,
        }
        self.drop_front(skip);
        error
    }

    fn take_garbage_error(&mut self) -> Option<DecodeError<S::Frame>> {
        // Whatever happens, a run that follows a length error ends here.
        let already_reported = core::mem::take(&mut self.garbage_reported);
        let (offset, len) = self.garbage.take()?;
        if already_reported {
            return None;
        }
        self.stats.preamble_errors += 1;
        Some(DecodeError {
            kind: ErrorKind::Preamble,
            offset,
            len,
            suspect: None,
        })
    }

    /// Checks a complete candidate of `len` bytes.
    fn complete(&mut self, len: usize) -> Event<S::Frame> {
        match self.side.parse(&self.buf[..len]) {
            Ok((frame, true)) => {
                let offset = self.buf_offset;
                self.drop_front(len);
                self.stats.frames += 1;
                Event::Frame { frame, offset, len }
            }
            Ok((frame, false)) => Event::Error(self.fail(ErrorKind::Crc, Some(frame))),
            Err(ParseError::Crc) => Event::Error(self.fail(ErrorKind::Crc, None)),
            // The shape check already vetted preamble, header and length.
            Err(_) => Event::Error(self.fail(ErrorKind::Length, None)),
        }
    }
}

/// The events of one [`StreamDecoder::feed`] or [`StreamDecoder::finish`].
#[derive(Debug)]
pub struct Events<'d, 'i, S: Side> {
    decoder: &'d mut StreamDecoder<S>,
    input: &'i [u8],
    finishing: bool,
}

impl<S: Side> Events<'_, '_, S> {
    /// Takes bytes from the input up to the next possible frame start into the garbage run, and the
    /// start itself into the buffer.
    fn scan(&mut self) {
        let d = &mut *self.decoder;
        let [p0, p1] = d.side.preamble();
        let mut from = 0;
        let start = loop {
            match self.input[from..].iter().position(|&b| b == p0) {
                None => break self.input.len(),
                Some(i) => {
                    let at = from + i;
                    match self.input.get(at + 1) {
                        Some(&next) if next != p1 => from = at + 1,
                        _ => break at,
                    }
                }
            }
        };
        d.add_garbage(d.next_offset, start);
        d.next_offset += start as u64;
        self.input = &self.input[start..];
        d.buf_offset = d.next_offset;
    }

    fn fill(&mut self, want: usize) {
        let d = &mut *self.decoder;
        let n = want.saturating_sub(d.len).min(self.input.len());
        d.buf[d.len..d.len + n].copy_from_slice(&self.input[..n]);
        d.len += n;
        d.next_offset += n as u64;
        self.input = &self.input[n..];
    }

    /// The fast path for a clean stream: a whole good frame at the front of the input is parsed in
    /// place, without going through the buffer. Anything else takes the general path.
    fn direct_frame(&mut self) -> Option<Event<S::Frame>> {
        let d = &mut *self.decoder;
        if d.garbage.is_some() {
            return None;
        }
        let Shape::Frame(len) = d.side.shape_of(self.input.get(..4).unwrap_or(self.input)) else {
            return None;
        };
        let Ok((frame, true)) = d.side.parse(self.input.get(..len)?) else {
            return None;
        };
        let offset = d.next_offset;
        d.next_offset += len as u64;
        d.buf_offset = d.next_offset;
        d.stats.frames += 1;
        self.input = &self.input[len..];
        Some(Event::Frame { frame, offset, len })
    }

    fn finish_step(&mut self) -> Option<Event<S::Frame>> {
        let d = &mut *self.decoder;
        if d.len > 0 {
            if d.confirmed() {
                if let Some(error) = d.take_garbage_error() {
                    return Some(Event::Error(error));
                }
                let error = d.fail(ErrorKind::Truncated, None);
                return Some(Event::Error(error));
            }
            // An unconfirmed start at the very end is just more garbage.
            let (offset, len) = (d.buf_offset, d.len);
            d.add_garbage(offset, len);
            d.drop_front(len);
        }
        d.take_garbage_error().map(Event::Error)
    }
}

impl<S: Side> Drop for Events<'_, '_, S> {
    fn drop(&mut self) {
        for _ in self.by_ref() {}
    }
}

impl<S: Side> Iterator for Events<'_, '_, S> {
    type Item = Event<S::Frame>;

    fn next(&mut self) -> Option<Event<S::Frame>> {
        loop {
            if self.decoder.len == 0 {
                if self.input.is_empty() {
                    return if self.finishing {
                        self.finish_step()
                    } else {
                        None
                    };
                }
                self.scan();
                if self.input.is_empty() {
                    continue;
                }
                if let Some(event) = self.direct_frame() {
                    return Some(event);
                }
            }
            // A candidate has started; read enough of it to know its shape.
            let shape = match self.decoder.shape() {
                Shape::Undecided => {
                    // Four bytes always decide the shape, and no frame is shorter than seven.
                    let want = self.decoder.len.max(3) + 1;
                    if self.input.is_empty() {
                        if self.finishing {
                            return self.finish_step();
                        }
                        return None;
                    }
                    self.fill(want);
                    continue;
                }
                shape => shape,
            };
            if !matches!(shape, Shape::NotAFrame)
                && let Some(error) = self.decoder.take_garbage_error()
            {
                return Some(Event::Error(error));
            }
            match shape {
                Shape::NotAFrame => self.decoder.reject_start(),
                Shape::BadLength => {
                    let error = self.decoder.fail(ErrorKind::Length, None);
                    // The bytes up to the next start belong to this error, not to a new garbage run.
                    if error.kind == ErrorKind::Length {
                        self.decoder.garbage_reported = true;
                    }
                    return Some(Event::Error(error));
                }
                Shape::Frame(len) => {
                    self.fill(len);
                    if self.decoder.len < len {
                        if self.finishing {
                            return self.finish_step();
                        }
                        return None;
                    }
                    return Some(self.decoder.complete(len));
                }
                Shape::Undecided => {}
            }
        }
    }
}
