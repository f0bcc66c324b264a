//! Numbers as people type them: decimal, or hex with a 0x prefix.

use std::num::ParseIntError;

/// Parses `"42"` or `"0x2A"` into any unsigned integer type.
pub fn parse_uint<T>(text: &str) -> Result<T, String>
where
    T: TryFrom<u64>,
{
    let text = text.trim().replace('_', "");
    let parsed: Result<u64, ParseIntError> =
        match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => text.parse(),
        };
    let value = parsed.map_err(|e| format!("{text:?} is not a number ({e})"))?;
    T::try_from(value).map_err(|_| format!("{value} is out of range"))
}

pub fn parse_u8(text: &str) -> Result<u8, String> {
    parse_uint(text)
}

pub fn parse_u32(text: &str) -> Result<u32, String> {
    parse_uint(text)
}

/// A positive, finite decimal such as a frequency or a difficulty.
pub fn parse_positive(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(format!("{text:?} must be a positive number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_and_hex() {
        assert_eq!(parse_u32("42"), Ok(42));
        assert_eq!(parse_u32("0x2A"), Ok(42));
        assert_eq!(parse_u32("0x1705_dd01"), Ok(0x1705_dd01));
        assert_eq!(parse_u8("0xFF"), Ok(255));
        assert!(parse_u8("256").is_err());
        assert!(parse_u32("0xZZ").is_err());
        assert!(parse_u32("-1").is_err());
        assert!(parse_positive("0").is_err());
        assert!(parse_positive("NaN").is_err());
        assert_eq!(parse_positive("56.25"), Ok(56.25));
    }
}
