//! A simulated chain behind a real pseudo-terminal, so an unmodified binary can open it as a
//! serial port. The host's baud setting is read from the terminal's settings, as the chips would
//! "see" it: a host at the wrong rate is heard as noise.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::pty::{PtyMaster, grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::termios::{BaudRate, SetArg, cfmakeraw, cfsetspeed, tcgetattr, tcsetattr};
use tokio::io::unix::AsyncFd;
use tracing::{debug, warn};

use crate::link::{SimControl, SimUart};

/// The most the simulator queues for a host that is not reading; beyond it the oldest bytes are
/// lost, as a real UART's receive FIFO would overflow.
const MAX_PENDING: usize = 1 << 20;

/// An open pseudo-terminal: the simulator holds the master, hosts open `path`.
#[derive(Debug)]
pub struct Pty {
    master: AsyncFd<PtyMaster>,
    /// Kept open so the master never sees a hang-up between host connections, and to read the
    /// host's line settings.
    slave: File,
    pub path: PathBuf,
}

impl Pty {
    /// Opens a PTY in raw mode at 115 200 Bd. Needs a tokio runtime.
    pub fn open() -> io::Result<Self> {
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY)?;
        grantpt(&master)?;
        unlockpt(&master)?;
        let path = PathBuf::from(ptsname_r(&master)?);
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(OFlag::O_NOCTTY.bits())
            .open(&path)?;
        let mut termios = tcgetattr(slave.as_fd())?;
        // No echo, no line editing, no CR/LF translation: bytes pass as they are.
        cfmakeraw(&mut termios);
        cfsetspeed(&mut termios, BaudRate::B115200)?;
        tcsetattr(slave.as_fd(), SetArg::TCSANOW, &termios)?;
        let flags = OFlag::from_bits_truncate(fcntl(&master, FcntlArg::F_GETFL)?);
        fcntl(&master, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        // Not inherited by programs this process starts (a test harness spawning the host under
        // test): a leaked master keeps the line up after the server is gone, so the host would
        // never see its device vanish.
        fcntl(&master, FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))?;
        // `AsyncFd::new` is deprecated because a wrapped value could close its fd while still
        // registered; `PtyMaster` owns its fd and closes it only when dropped with the AsyncFd,
        // which is the one case the deprecation leaves sound. The replacement is `unsafe`,
        // which this crate forbids.
        #[allow(deprecated)]
        let master = AsyncFd::new(master)?;
        Ok(Self {
            master,
            slave,
            path,
        })
    }

    /// The rate the host has set on its end of the line. Read with TCGETS2 (rustix), so a host
    /// that sets a rate no `Bxxx` constant names — 3.125 Mbaud through `BOTHER`, as serialport
    /// and every BM13xx host do — is seen at its real rate.
    pub fn host_baud(&self) -> io::Result<u32> {
        let termios = rustix::termios::tcgetattr(self.slave.as_fd())?;
        Ok(termios.output_speed())
    }

    /// Serves the chain on this PTY until the task is dropped: host bytes go to the chain at the
    /// host's current rate, simulated time follows the wall clock `speed` times faster, and
    /// whatever the chips send is written back.
    pub async fn serve(self, uart: SimUart, control: SimControl, speed: f64) -> io::Result<()> {
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = tokio::time::Instant::now();
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = [0u8; 4096];
        // The host's rate as last seen on a tick. A PTY has no line time: a host that writes a
        // frame and switches its rate at once (as it should, once the frame has left) can switch
        // before the simulator reads the frame. So bytes that arrive together with a rate change
        // nobody had seen yet are taken to have been sent at the old rate; a change seen on an
        // earlier tick applies to everything after it.
        let mut seen_baud = self.host_baud()?;
        loop {
            tokio::select! {
                biased;
                ready = self.master.readable() => {
                    let mut guard = ready?;
                    guard.clear_ready();
                    let baud = seen_baud;
                    self.pump_input(&uart, baud, &mut buf).await?;
                    seen_baud = self.host_baud()?;
                }
                _ = tick.tick() => {
                    // Input the reactor has not reported yet was still sent at the old rate.
                    self.pump_input(&uart, seen_baud, &mut buf).await?;
                    seen_baud = self.host_baud()?;
                    let now = tokio::time::Instant::now();
                    control.advance((now - last).as_secs_f64() * speed);
                    last = now;
                }
            }
            // Collect what the chips said and push as much as the terminal takes.
            loop {
                let n = uart.try_read(&mut buf);
                if n == 0 {
                    break;
                }
                debug!(bytes = n, "to host: {:02X?}", &buf[..n]);
                pending.extend_from_slice(&buf[..n]);
            }
            if pending.len() > MAX_PENDING {
                let excess = pending.len() - MAX_PENDING;
                warn!(
                    bytes = excess,
                    "host is not reading: dropping the oldest output"
                );
                pending.drain(..excess);
            }
            while !pending.is_empty() {
                match nix::unistd::write(self.master.get_ref(), &pending) {
                    Ok(n) => {
                        pending.drain(..n);
                    }
                    Err(nix::errno::Errno::EAGAIN) => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
}

impl Pty {
    /// Hands everything the host has written so far to the chain, as sent at `baud`.
    async fn pump_input(&self, uart: &SimUart, baud: u32, buf: &mut [u8]) -> io::Result<()> {
        loop {
            match nix::unistd::read(self.master.get_ref(), buf) {
                Ok(0) | Err(nix::errno::Errno::EAGAIN) => return Ok(()),
                Ok(n) => {
                    debug!(bytes = n, baud, "from host: {:02X?}", &buf[..n]);
                    uart.set_baud(baud);
                    uart.send(&buf[..n]);
                }
                // EIO: no host has the terminal open right now.
                Err(nix::errno::Errno::EIO) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The numeric rate of a termios speed constant.
pub fn baud_of(rate: BaudRate) -> u32 {
    use BaudRate::*;
    match rate {
        B0 => 0,
        B50 => 50,
        B75 => 75,
        B110 => 110,
        B134 => 134,
        B150 => 150,
        B200 => 200,
        B300 => 300,
        B600 => 600,
        B1200 => 1_200,
        B1800 => 1_800,
        B2400 => 2_400,
        B4800 => 4_800,
        B9600 => 9_600,
        B19200 => 19_200,
        B38400 => 38_400,
        B57600 => 57_600,
        B115200 => 115_200,
        B230400 => 230_400,
        B460800 => 460_800,
        B500000 => 500_000,
        B576000 => 576_000,
        B921600 => 921_600,
        B1000000 => 1_000_000,
        B1152000 => 1_152_000,
        B1500000 => 1_500_000,
        B2000000 => 2_000_000,
        B2500000 => 2_500_000,
        B3000000 => 3_000_000,
        B3500000 => 3_500_000,
        B4000000 => 4_000_000,
        _ => 0,
    }
}
