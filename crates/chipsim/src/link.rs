//! An in-process serial link to a simulated chain, for driver tests without a PTY.
//!
//! [`SimLink::open`] hands out a [`SimUart`] (the host's end of the UART: embedded-io-async and tokio
//! `AsyncRead`/`AsyncWrite`, plus the baud setting a real port has) and a [`SimControl`] (time,
//! faults, and the board peripherals that share the chain's physics). Time only moves when the
//! control says so — stepped by a test, or by [`SimControl::run_realtime`].

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::chain::ChainSim;
use crate::devices::{Emc2101, SimI2cBus, Tps546};
use crate::faults::Faults;

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) sim: ChainSim,
    host_baud: u32,
    to_host: VecDeque<u8>,
    reader: Option<Waker>,
}

impl Shared {
    /// Moves what the chain sent into the host's receive buffer and wakes a waiting reader.
    fn deliver(&mut self) {
        if self.sim.has_output() {
            let bytes = self.sim.take_output(self.host_baud);
            self.to_host.extend(bytes);
            if let Some(waker) = self.reader.take() {
                waker.wake();
            }
        }
    }
}

pub(crate) type SharedSim = Arc<Mutex<Shared>>;

/// Locks the shared state; a panic elsewhere while holding the lock does not make the simulated
/// hardware unusable.
pub(crate) fn lock(shared: &SharedSim) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Builds the two ends of a link.
#[derive(Debug)]
pub struct SimLink;

impl SimLink {
    /// Opens the link at 115 200 Bd, where hosts start (protocol.md §1).
    pub fn open(sim: ChainSim) -> (SimUart, SimControl) {
        let shared = Arc::new(Mutex::new(Shared {
            sim,
            host_baud: 115_200,
            to_host: VecDeque::new(),
            reader: None,
        }));
        (
            SimUart {
                shared: Arc::clone(&shared),
            },
            SimControl { shared },
        )
    }
}

/// The host's end of the UART.
#[derive(Debug, Clone)]
pub struct SimUart {
    shared: SharedSim,
}

impl SimUart {
    /// Changes the host's rate, as a real port's termios would. Bytes already in flight keep the
    /// rate they were sent at.
    pub fn set_baud(&self, baud: u32) {
        lock(&self.shared).host_baud = baud;
    }

    pub fn baud(&self) -> u32 {
        lock(&self.shared).host_baud
    }

    /// Bytes to the chain: they arrive at once (the simulator does not model line time).
    pub fn send(&self, bytes: &[u8]) {
        let mut shared = lock(&self.shared);
        let baud = shared.host_baud;
        shared.sim.receive(bytes, baud);
        shared.deliver();
    }

    /// Whatever the host has received so far, without waiting.
    pub fn try_read(&self, buf: &mut [u8]) -> usize {
        let mut shared = lock(&self.shared);
        let n = buf.len().min(shared.to_host.len());
        for (slot, byte) in buf.iter_mut().zip(shared.to_host.drain(..n)) {
            *slot = byte;
        }
        n
    }

    fn poll_read_into(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<usize> {
        if buf.is_empty() {
            return Poll::Ready(0);
        }
        let mut shared = lock(&self.shared);
        if shared.to_host.is_empty() {
            shared.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(shared.to_host.len());
        for (slot, byte) in buf.iter_mut().zip(shared.to_host.drain(..n)) {
            *slot = byte;
        }
        Poll::Ready(n)
    }
}

impl embedded_io::ErrorType for SimUart {
    type Error = core::convert::Infallible;
}

impl embedded_io_async::Read for SimUart {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        Ok(core::future::poll_fn(|cx| self.poll_read_into(cx, buf)).await)
    }
}

impl embedded_io_async::Write for SimUart {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.send(buf);
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl tokio::io::AsyncRead for SimUart {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let unfilled = buf.initialize_unfilled();
        match self.poll_read_into(cx, unfilled) {
            Poll::Ready(n) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl tokio::io::AsyncWrite for SimUart {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.send(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The test's (or the serving loop's) hold on the simulated board.
#[derive(Debug, Clone)]
pub struct SimControl {
    shared: SharedSim,
}

impl SimControl {
    /// Advances simulated time and delivers what the chips sent meanwhile.
    pub fn advance(&self, dt_s: f64) {
        let mut shared = lock(&self.shared);
        shared.sim.advance(dt_s);
        shared.deliver();
    }

    /// Runs `f` with the chain, for inspection or to change its conditions.
    pub fn with_sim<T>(&self, f: impl FnOnce(&mut ChainSim) -> T) -> T {
        let mut shared = lock(&self.shared);
        let result = f(&mut shared.sim);
        shared.deliver();
        result
    }

    pub fn set_faults(&self, faults: Faults) {
        self.with_sim(|sim| sim.set_faults(faults));
    }

    /// Pulses the chain's reset line.
    pub fn reset(&self) {
        let mut shared = lock(&self.shared);
        shared.sim.reset();
        shared.to_host.clear();
    }

    /// The chain's reset line as an embedded-hal output pin (low = held in reset).
    pub fn reset_pin(&self) -> ResetPin {
        ResetPin {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The TPS546-style core regulator on this board's I2C bus.
    pub fn regulator(&self) -> Tps546 {
        Tps546::new(Arc::clone(&self.shared))
    }

    /// The EMC2101-style temperature sensor and fan controller on this board's I2C bus.
    pub fn fan_controller(&self) -> Emc2101 {
        Emc2101::new(Arc::clone(&self.shared))
    }

    /// The board's I2C bus: the regulator at 0x24 and the fan controller at 0x4C.
    pub fn i2c_bus(&self) -> SimI2cBus {
        SimI2cBus {
            regulator: self.regulator(),
            fan: self.fan_controller(),
        }
    }

    /// Advances simulated time with the wall clock, `speed` times faster, in `tick` steps, until the
    /// task is dropped. A step never covers more than [`MAX_TICKS_PER_STEP`] ticks of wall time,
    /// so an overloaded host slows the simulation down rather than locking up behind it.
    pub async fn run_realtime(self, speed: f64, tick: std::time::Duration) {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = tokio::time::Instant::now();
        loop {
            interval.tick().await;
            let now = tokio::time::Instant::now();
            // A host too slow for `speed` gets slower simulated time, not a spiral: crediting
            // the whole gap would make the next step longer still, until nothing else runs.
            let wall = (now - last).min(tick * MAX_TICKS_PER_STEP);
            self.advance(wall.as_secs_f64() * speed);
            last = now;
        }
    }
}

/// The most wall time one step of [`SimControl::run_realtime`] credits, in ticks.
pub const MAX_TICKS_PER_STEP: u32 = 4;

/// NRSTI of the chain as a GPIO: driving it low holds every chip in reset; driving it high
/// releases them at power-on state.
#[derive(Debug, Clone)]
pub struct ResetPin {
    shared: SharedSim,
}

impl embedded_hal::digital::ErrorType for ResetPin {
    type Error = core::convert::Infallible;
}

impl embedded_hal::digital::OutputPin for ResetPin {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        let mut shared = lock(&self.shared);
        shared.sim.set_reset_line(true);
        shared.to_host.clear();
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Self::Error> {
        lock(&self.shared).sim.set_reset_line(false);
        Ok(())
    }
}
