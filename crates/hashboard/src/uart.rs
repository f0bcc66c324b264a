//! What a chain's UART must do besides moving bytes.

/// Changing the line rate: the chips switch baud mid-conversation (protocol.md §7), so the host's port
/// must follow. Implemented by the firmware's serial port and by test doubles.
// Chain drivers run on one executor per board; a `Send` bound on the future would exclude
// single-threaded embedded executors, so the async fn is left unbounded, as embedded-io-async does.
#[allow(async_fn_in_trait)]
pub trait SetBaud: embedded_io::ErrorType {
    /// Switches the port to `baud` once everything written so far has been sent.
    async fn set_baud(&mut self, baud: u32) -> Result<(), Self::Error>;
}
