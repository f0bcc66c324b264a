//! A fixed-capacity byte buffer for encoded frames, so encoding needs no allocator.

use core::fmt;

use crate::BufferTooSmall;

/// An encoded frame of at most `N` bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Encoded<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Encoded<N> {
    pub(crate) const fn new() -> Self {
        Self {
            bytes: [0; N],
            len: 0,
        }
    }

    /// Encoders size `N` for their largest frame, so overflowing it is a bug in this crate.
    pub(crate) fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    pub(crate) fn extend(&mut self, data: &[u8]) {
        self.bytes[self.len..self.len + data.len()].copy_from_slice(data);
        self.len += data.len();
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    pub const fn len(&self) -> usize {
        self.len
    }

    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies the frame into a caller's buffer and returns its length.
    pub fn copy_to(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let available = out.len();
        let dest = out.get_mut(..self.len).ok_or(BufferTooSmall {
            needed: self.len,
            available,
        })?;
        dest.copy_from_slice(self.as_bytes());
        Ok(self.len)
    }
}

impl<const N: usize> AsRef<[u8]> for Encoded<N> {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl<const N: usize> fmt::Debug for Encoded<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::UpperHex::fmt(self, f)
    }
}

/// Upper-case hex without separators, the form the capture tool prints.
impl<const N: usize> fmt::UpperHex for Encoded<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_bytes()
            .iter()
            .try_for_each(|b| write!(f, "{b:02X}"))
    }
}
