//! Adapters that let the board code drive an in-process `chipsim` chain (feature `sim`): the
//! simulator's UART is the chain's port, and waiting advances simulated time. Shared by the
//! integration tests and the firmware's `--sim` mode so both exercise the same wiring.

use chipsim::{SimControl, SimUart};

use crate::uart::SetBaud;

impl SetBaud for SimUart {
    async fn set_baud(&mut self, baud: u32) -> Result<(), Self::Error> {
        SimUart::set_baud(self, baud);
        Ok(())
    }
}

/// Waiting is simulated time passing: deterministic, and as fast as the CPU allows. Bring-up's
/// settle times and ramps take microseconds of wall time.
#[derive(Debug, Clone)]
pub struct SimTimeDelay(pub SimControl);

impl embedded_hal_async::delay::DelayNs for SimTimeDelay {
    async fn delay_ns(&mut self, ns: u32) {
        self.0.advance(f64::from(ns) / 1e9);
    }
}
