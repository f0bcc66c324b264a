//! Where capture bytes come from: a hex argument, a file, or standard input, as hex text or raw
//! binary.

use std::io::Read;
use std::path::PathBuf;

use crate::CliError;

#[derive(Debug, Clone)]
pub enum Source {
    Argument(String),
    File(PathBuf),
    Stdin,
}

/// Reads all the bytes of a capture.
pub fn read(source: &Source) -> Result<Vec<u8>, CliError> {
    match source {
        Source::Argument(text) => parse_hex(text),
        Source::File(path) => {
            let raw = std::fs::read(path)
                .map_err(|e| CliError::Io(format!("{}: {e}", path.display())))?;
            from_raw(raw)
        }
        Source::Stdin => {
            let mut raw = Vec::new();
            std::io::stdin()
                .read_to_end(&mut raw)
                .map_err(|e| CliError::Io(format!("standard input: {e}")))?;
            from_raw(raw)
        }
    }
}

/// Text made only of hex digits, whitespace, `0x` prefixes and `#` comment lines is hex; anything
/// else is a raw binary capture.
fn from_raw(raw: Vec<u8>) -> Result<Vec<u8>, CliError> {
    match std::str::from_utf8(&raw) {
        Ok(text) if looks_like_hex(text) => parse_hex(text),
        _ => Ok(raw),
    }
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn looks_like_hex(text: &str) -> bool {
    let body = strip_comments(text);
    body.split_ascii_whitespace().all(|token| {
        let digits = token
            .strip_prefix("0x")
            .or_else(|| token.strip_prefix("0X"))
            .unwrap_or(token);
        digits.bytes().all(|b| b.is_ascii_hexdigit())
    }) && body.bytes().any(|b| b.is_ascii_hexdigit())
}

pub fn parse_hex(text: &str) -> Result<Vec<u8>, CliError> {
    let body = strip_comments(text);
    let mut out = vec![0u8; body.len() / 2 + 1];
    let n =
        bm13xx::hex::decode_into(&body, &mut out).map_err(|e| CliError::Input(e.to_string()))?;
    out.truncate(n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_files_with_comments() {
        let bytes =
            from_raw(b"# chain inactive\n55 AA 53 05\n00 00 03 # crc\n".to_vec()).expect("hex");
        assert_eq!(bytes, [0x55, 0xAA, 0x53, 0x05, 0x00, 0x00, 0x03]);
    }

    #[test]
    fn binary_stays_binary() {
        let raw = vec![0xAA, 0x55, 0x13, 0x97, 0x18, 0x00, 0x00, 0x00, 0x06];
        assert_eq!(from_raw(raw.clone()).expect("binary"), raw);
        // ASCII that is not hex is binary too.
        assert_eq!(from_raw(b"hello".to_vec()).expect("binary"), b"hello");
    }

    #[test]
    fn odd_hex_is_an_error() {
        assert!(matches!(parse_hex("55A"), Err(CliError::Input(_))));
    }
}
