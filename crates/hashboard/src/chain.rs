//! One chain behind one UART: bring-up with the spec's init sequence, and the frame I/O that mining
//! builds on. The async code here only moves bytes; what to send comes from `bm13xx`'s sequencers.

use bm13xx::{
    ChipAddressing, ChipModel, Command, Destination, Event, InitConfig, InitError, InitSequence,
    Response, ResponseDecoder, ResponseFormat, Step,
};
use embassy_futures::select::{Either, select};
use embedded_hal::digital::OutputPin;
use embedded_hal_async::delay::DelayNs;
use embedded_io_async::{Read, Write};

use crate::uart::SetBaud;

/// ESP-Miner holds reset low this long, then waits as long again before the first frame.
const RESET_MS: u32 = 100;
/// The rate every chip listens at after reset; hosts open the port at 115 200 (protocol.md §1).
const RESET_BAUD: u32 = 115_200;
/// How long to wait for each register answer once the chain is up.
const READ_TIMEOUT_MS: u32 = 100;

/// Tries at bringing a chain up before its failure stands: an answer lost or corrupted on a
/// noisy UART (or a marginal connector) makes a chip look missing once, not five times running,
/// while a chain that is really broken costs only a few seconds more to report.
pub const BRING_UP_ATTEMPTS: u32 = 5;

/// Why a chain did not come up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BringUpError<E: core::fmt::Debug> {
    #[error("UART error: {0:?}")]
    Uart(E),
    #[error("reset line error")]
    ResetPin,
    #[error("no chip answered: the chain is dead or broken before the first chip")]
    NoChips,
    #[error("expected {expected} chips, {found} answered: the chain breaks after chip {}", found - 1)]
    ChainBreak { expected: u32, found: u32 },
    #[error("expected {expected} chips, {found} answered: more chips than the board description")]
    ExtraChips { expected: u32, found: u32 },
    #[error("chip {index} answered chip id {chip_id:#06x}, not a {expected}")]
    WrongChip {
        index: u32,
        chip_id: u16,
        expected: ChipModel,
    },
    #[error("chip {index} (address {address:#04x}) did not answer at {baud} Bd after the switch")]
    BaudVerify { index: u32, address: u8, baud: u32 },
    #[error(transparent)]
    Sequence(#[from] InitError),
}

impl<E: core::fmt::Debug> BringUpError<E> {
    /// What the chips answered (or failed to): a lost or corrupted frame can cause it, so another
    /// try may pass. UART, reset-line and configuration errors will not change by trying again.
    pub fn may_pass_on_retry(&self) -> bool {
        matches!(
            self,
            Self::NoChips
                | Self::ChainBreak { .. }
                | Self::ExtraChips { .. }
                | Self::WrongChip { .. }
                | Self::BaudVerify { .. }
        )
    }
}

/// Decoded events waiting to be taken, so a read that returns several frames loses none.
struct EventQueue {
    events: [Option<Event<Response>>; 64],
    head: usize,
    len: usize,
}

impl EventQueue {
    const fn new() -> Self {
        Self {
            events: [None; 64],
            head: 0,
            len: 0,
        }
    }

    fn push(&mut self, event: Event<Response>) {
        if self.len == self.events.len() {
            // Full: the oldest event goes. Reads are sized so this cannot happen in practice.
            self.head = (self.head + 1) % self.events.len();
            self.len -= 1;
        }
        let slot = (self.head + self.len) % self.events.len();
        self.events[slot] = Some(event);
        self.len += 1;
    }

    fn pop(&mut self) -> Option<Event<Response>> {
        if self.len == 0 {
            return None;
        }
        let event = self.events[self.head].take();
        self.head = (self.head + 1) % self.events.len();
        self.len -= 1;
        event
    }
}

/// A chain that is up: addressed, configured, clocked and at its fast baud.
pub struct Chain<U> {
    uart: U,
    model: ChipModel,
    chips: u32,
    addressing: ChipAddressing,
    decoder: ResponseDecoder,
    queue: EventQueue,
    baud: u32,
    /// Decoder errors counted before the last re-initialisation replaced the decoder.
    errors_before: u64,
}

impl<U> core::fmt::Debug for Chain<U> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Chain")
            .field("model", &self.model)
            .field("chips", &self.chips)
            .field("baud", &self.baud)
            .field("decoder", self.decoder.stats())
            .finish_non_exhaustive()
    }
}

impl<U, E> Chain<U>
where
    U: Read<Error = E> + Write<Error = E> + SetBaud<Error = E>,
    E: core::fmt::Debug + embedded_io::Error,
{
    /// Resets the chain and brings it up with the model's init sequence, checking the chip count
    /// against `config.chips` and reading back from every chip at the fast baud.
    pub async fn bring_up<R: OutputPin, D: DelayNs>(
        uart: U,
        reset: &mut R,
        delay: &mut D,
        config: InitConfig,
    ) -> Result<Self, BringUpError<E>> {
        let sequence = InitSequence::new(config)?;
        let mut chain = Self {
            uart,
            model: config.model,
            chips: config.chips,
            addressing: sequence.addressing(),
            decoder: ResponseDecoder::chip_to_host(sequence.response_format()),
            queue: EventQueue::new(),
            baud: RESET_BAUD,
            errors_before: 0,
        };
        chain.reinit(reset, delay, config).await?;
        Ok(chain)
    }

    /// Brings the chain up again from reset on the same port: after its supply was off (sleep,
    /// an overheat stop) the chips have lost their addresses, clocks and work. Tries up to
    /// [`BRING_UP_ATTEMPTS`] times while what fails is the chips' answers.
    pub async fn reinit<R: OutputPin, D: DelayNs>(
        &mut self,
        reset: &mut R,
        delay: &mut D,
        config: InitConfig,
    ) -> Result<(), BringUpError<E>> {
        let mut attempt = 1;
        loop {
            match self.reinit_once(reset, delay, config).await {
                Err(e) if e.may_pass_on_retry() && attempt < BRING_UP_ATTEMPTS => attempt += 1,
                done => return done,
            }
        }
    }

    async fn reinit_once<R: OutputPin, D: DelayNs>(
        &mut self,
        reset: &mut R,
        delay: &mut D,
        config: InitConfig,
    ) -> Result<(), BringUpError<E>> {
        reset.set_low().map_err(|_| BringUpError::ResetPin)?;
        delay.delay_ms(RESET_MS).await;
        reset.set_high().map_err(|_| BringUpError::ResetPin)?;
        delay.delay_ms(RESET_MS).await;
        self.uart
            .set_baud(RESET_BAUD)
            .await
            .map_err(BringUpError::Uart)?;
        self.baud = RESET_BAUD;

        let sequence = InitSequence::new(config)?;
        self.model = config.model;
        self.chips = config.chips;
        self.addressing = sequence.addressing();
        self.errors_before += self.decoder.stats().errors();
        self.decoder = ResponseDecoder::chip_to_host(sequence.response_format());
        self.queue = EventQueue::new();
        for step in sequence {
            match step? {
                Step::Send { frame, wait_ms } => {
                    self.send(frame.as_bytes()).await?;
                    delay.delay_ms(wait_ms).await;
                }
                Step::Enumerate {
                    frame,
                    expected,
                    timeout_ms,
                    wait_ms,
                    ..
                } => {
                    self.send(frame.as_bytes()).await?;
                    self.count_chips(delay, expected, timeout_ms).await?;
                    delay.delay_ms(wait_ms).await;
                }
                Step::SetHostBaud { baud, wait_ms } => {
                    self.uart.flush().await.map_err(BringUpError::Uart)?;
                    self.uart.set_baud(baud).await.map_err(BringUpError::Uart)?;
                    self.baud = baud;
                    delay.delay_ms(wait_ms).await;
                }
            }
        }
        self.verify_baud(delay, config).await
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), BringUpError<E>> {
        self.uart.write_all(bytes).await.map_err(BringUpError::Uart)
    }

    /// Reads the chip-id answers until one takes longer than `timeout_ms` (ESP-Miner's rule).
    async fn count_chips<D: DelayNs>(
        &mut self,
        delay: &mut D,
        expected: u32,
        timeout_ms: u32,
    ) -> Result<(), BringUpError<E>> {
        let mut found = 0;
        while let Some(response) = self
            .next_response(delay, timeout_ms)
            .await
            .map_err(BringUpError::Uart)?
        {
            if let Response::Register(r) = response
                && r.register == 0x00
            {
                let chip_id = (r.value >> 16) as u16;
                if chip_id != self.model.chip_id() {
                    return Err(BringUpError::WrongChip {
                        index: found,
                        chip_id,
                        expected: self.model,
                    });
                }
                found += 1;
            }
        }
        match found {
            0 => Err(BringUpError::NoChips),
            n if n < expected => Err(BringUpError::ChainBreak { expected, found: n }),
            n if n > expected => Err(BringUpError::ExtraChips { expected, found: n }),
            _ => Ok(()),
        }
    }

    /// At the fast baud, every chip must answer a read of its ticket mask with the value just set.
    async fn verify_baud<D: DelayNs>(
        &mut self,
        delay: &mut D,
        config: InitConfig,
    ) -> Result<(), BringUpError<E>> {
        for index in 0..self.chips {
            let Some(address) = self.addressing.address_of(index) else {
                continue;
            };
            self.send(
                Command::read(
                    Destination::Chip(address),
                    bm13xx::registers::address::TICKET_MASK,
                )
                .encode()
                .as_bytes(),
            )
            .await?;
            let answer = self
                .next_response(delay, READ_TIMEOUT_MS)
                .await
                .map_err(BringUpError::Uart)?;
            // Every model's sequence ends with the configured mask in 0x14 (BM1368 writes a fixed
            // 0xFF first; the later write wins).
            let expected_mask = config.ticket.mask().value();
            let ok = matches!(answer, Some(Response::Register(r)) if r.chip_address == address && r.value == expected_mask);
            if !ok {
                return Err(BringUpError::BaudVerify {
                    index,
                    address,
                    baud: self.baud,
                });
            }
        }
        Ok(())
    }

    /// The next good response, or `None` when none arrives within `timeout_ms`. Damaged frames
    /// are skipped (and counted by the decoder).
    pub async fn next_response<D: DelayNs>(
        &mut self,
        delay: &mut D,
        timeout_ms: u32,
    ) -> Result<Option<Response>, E> {
        loop {
            while let Some(event) = self.queue.pop() {
                if let Event::Frame { frame, .. } = event {
                    return Ok(Some(frame));
                }
            }
            let mut buf = [0u8; 64];
            let n = match select(self.uart.read(&mut buf), delay.delay_ms(timeout_ms)).await {
                Either::First(read) => read?,
                Either::Second(()) => return Ok(None),
            };
            if n == 0 {
                // End of stream: nothing more will come. Wait the timeout out rather than spin.
                delay.delay_ms(timeout_ms).await;
                return Ok(None);
            }
            for event in self.decoder.feed(&buf[..n]) {
                self.queue.push(event);
            }
        }
    }

    /// Sends any frame (jobs, register writes) to the chain.
    pub async fn write_frame(&mut self, bytes: &[u8]) -> Result<(), E> {
        self.uart.write_all(bytes).await
    }

    pub fn model(&self) -> ChipModel {
        self.model
    }

    pub fn chips(&self) -> u32 {
        self.chips
    }

    pub fn addressing(&self) -> ChipAddressing {
        self.addressing
    }

    pub fn baud(&self) -> u32 {
        self.baud
    }

    pub fn response_format(&self) -> ResponseFormat {
        self.decoder.side().0
    }

    /// The current decoder's counts: since the last bring-up or re-initialisation.
    pub fn decoder_stats(&self) -> &bm13xx::DecoderStats {
        self.decoder.stats()
    }

    /// Bytes and frames the decoders could not use since the chain was first brought up, across
    /// re-initialisations (every wake and thermal resume starts a new decoder).
    pub fn uart_errors_since_bring_up(&self) -> u64 {
        self.errors_before + self.decoder.stats().errors()
    }
}
