//! Hex text to bytes without an allocator, tolerant of the spaces and line breaks that people paste
//! from logic-analyser exports.

/// Why a hex string could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("invalid hex character {character:?} at position {position}")]
    InvalidCharacter { character: char, position: usize },
    #[error("odd number of hex digits")]
    OddLength,
    #[error("hex holds more than {capacity} bytes")]
    TooLong { capacity: usize },
    #[error("expected {expected} bytes of hex, found {found}")]
    WrongLength { expected: usize, found: usize },
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes `text` into `out`, skipping ASCII whitespace and an optional `0x` prefix per token, and
/// returns the number of bytes written.
pub fn decode_into(text: &str, out: &mut [u8]) -> Result<usize, HexError> {
    let mut written = 0;
    let mut high: Option<u8> = None;
    for token in text.split_ascii_whitespace() {
        let token = token
            .strip_prefix("0x")
            .or_else(|| token.strip_prefix("0X"))
            .unwrap_or(token);
        for (c, position) in token.bytes().zip(0..) {
            let value = nibble(c).ok_or(HexError::InvalidCharacter {
                character: char::from(c),
                position,
            })?;
            match high.take() {
                None => high = Some(value),
                Some(h) => {
                    let capacity = out.len();
                    let slot = out.get_mut(written).ok_or(HexError::TooLong { capacity })?;
                    *slot = (h << 4) | value;
                    written += 1;
                }
            }
        }
    }
    if high.is_some() {
        return Err(HexError::OddLength);
    }
    Ok(written)
}

/// Decodes exactly `N` bytes.
pub fn decode_array<const N: usize>(text: &str) -> Result<[u8; N], HexError> {
    let mut out = [0u8; N];
    match decode_into(text, &mut out)? {
        n if n == N => Ok(out),
        found => Err(HexError::WrongLength { expected: N, found }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_and_prefixes() {
        let mut out = [0u8; 8];
        assert_eq!(decode_into("55 aa\n0x53 05", &mut out), Ok(4));
        assert_eq!(&out[..4], &[0x55, 0xAA, 0x53, 0x05]);
    }

    #[test]
    fn errors() {
        let mut out = [0u8; 2];
        assert_eq!(decode_into("5", &mut out), Err(HexError::OddLength));
        assert_eq!(decode_into("5 5", &mut out), Ok(1));
        assert!(matches!(
            decode_into("zz", &mut out),
            Err(HexError::InvalidCharacter { character: 'z', .. })
        ));
        assert_eq!(
            decode_into("010203", &mut out),
            Err(HexError::TooLong { capacity: 2 })
        );
    }
}
