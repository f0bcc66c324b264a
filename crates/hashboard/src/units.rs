//! Float helpers that `core` lacks (no libm): powers of two, rounding and ceilings for the small,
//! non-negative values drivers deal in.

/// 2^exponent, exactly, for exponents a PMBus word can carry.
pub fn pow2(exponent: i32) -> f32 {
    let mut value = 1.0f32;
    if exponent >= 0 {
        for _ in 0..exponent {
            value *= 2.0;
        }
    } else {
        for _ in 0..-exponent {
            value *= 0.5;
        }
    }
    value
}

/// Rounds half away from zero.
pub fn round(value: f32) -> f32 {
    let truncated = value as i64 as f32;
    let frac = value - truncated;
    if frac >= 0.5 {
        truncated + 1.0
    } else if frac <= -0.5 {
        truncated - 1.0
    } else {
        truncated
    }
}

/// The smallest whole number ≥ `value`, for non-negative values.
pub fn ceil(value: f32) -> f32 {
    let truncated = value as u64 as f32;
    if truncated < value {
        truncated + 1.0
    } else {
        truncated
    }
}

/// PMBus LINEAR11: a 5-bit two's-complement exponent over an 11-bit two's-complement mantissa.
pub fn from_linear11(word: u16) -> f32 {
    let exponent = ((word >> 11) as i16) << 11 >> 11;
    let mantissa = ((word & 0x7FF) as i16) << 5 >> 5;
    f32::from(mantissa) * pow2(i32::from(exponent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear11_examples() {
        // Exponent −2, mantissa 48: 12.0 (a common READ_VIN encoding).
        assert_eq!(from_linear11((0b11110 << 11) | 48), 12.0);
        // Exponent 0, mantissa −1.
        assert_eq!(from_linear11(0x07FF), -1.0);
        // Exponent −1, mantissa 1023: 511.5.
        assert_eq!(from_linear11((0b11111 << 11) | 1023), 511.5);
    }

    #[test]
    fn rounding() {
        assert_eq!(round(2.5), 3.0);
        assert_eq!(round(2.49), 2.0);
        assert_eq!(round(-2.5), -3.0);
        assert_eq!(ceil(69.85), 70.0);
        assert_eq!(ceil(70.0), 70.0);
        assert_eq!(pow2(-9), 1.0 / 512.0);
        assert_eq!(pow2(3), 8.0);
    }
}
