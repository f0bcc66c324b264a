//! What sans-IO sequencers ask their caller to do.

use crate::command::CommandFrame;
use crate::response::ResponseFormat;

/// One thing for the caller to do; sequencers yield these in order and never touch I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Write the frame, then wait `wait_ms` before the next step.
    Send { frame: CommandFrame, wait_ms: u32 },
    /// Write `frame` (a broadcast chip-id read) and collect the answers: `expected` chips should
    /// reply, nearest first, in `format`. The caller reads until a frame takes longer than
    /// `timeout_ms` and must stop if the count is wrong (ESP-Miner refuses to continue). Then wait
    /// `wait_ms`.
    Enumerate {
        frame: CommandFrame,
        expected: u32,
        format: ResponseFormat,
        timeout_ms: u32,
        wait_ms: u32,
    },
    /// Switch the host UART to `baud` once every byte sent so far has left it, then wait.
    SetHostBaud { baud: u32, wait_ms: u32 },
}

impl Step {
    pub const fn send(frame: CommandFrame, wait_ms: u32) -> Self {
        Self::Send { frame, wait_ms }
    }

    /// The frame to write, if this step writes one.
    pub const fn frame(&self) -> Option<&CommandFrame> {
        match self {
            Self::Send { frame, .. } | Self::Enumerate { frame, .. } => Some(frame),
            Self::SetHostBaud { .. } => None,
        }
    }
}
