//! The hash-clock PLL (register 0x08): divider sets, their register words, and the solver that
//! picks the best legal set for a target frequency (§8).
//!
//! f = 25 MHz × FBDIV / (REFDIV × POSTDIV1 × POSTDIV2). BM1397 stores the post-dividers raw;
//! BM1366+ store them minus one (§8.2).

use crate::frequency::Frequency;
use crate::model::ChipModel;
use crate::registers::{Register, address};

const REF_KHZ: u64 = 25_000;
/// ESP-Miner sets the high-VCO bit at or above this VCO on BM1366+.
const HIGH_VCO_KHZ: u64 = 2_400_000;

/// A divider set the model's PLL can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PllDividers {
    fbdiv: u16,
    refdiv: u8,
    postdiv1: u8,
    postdiv2: u8,
}

/// A divider is out of its field's range for this model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal PLL dividers: FBDIV 1..=4095, REFDIV 1..=63, post-dividers 1..={max_postdiv}")]
pub struct InvalidDividers {
    pub max_postdiv: u8,
}

impl PllDividers {
    /// Post-divider fields are 3 bits: raw 1..=7 on BM1397, value − 1 (so 1..=8) on BM1366+.
    pub const fn new(
        model: ChipModel,
        fbdiv: u16,
        refdiv: u8,
        postdiv1: u8,
        postdiv2: u8,
    ) -> Result<Self, InvalidDividers> {
        let max_postdiv = if model.postdiv_minus_one() { 8 } else { 7 };
        let legal = fbdiv >= 1
            && fbdiv <= 0xFFF
            && refdiv >= 1
            && refdiv <= 63
            && postdiv1 >= 1
            && postdiv1 <= max_postdiv
            && postdiv2 >= 1
            && postdiv2 <= max_postdiv;
        if legal {
            Ok(Self {
                fbdiv,
                refdiv,
                postdiv1,
                postdiv2,
            })
        } else {
            Err(InvalidDividers { max_postdiv })
        }
    }

    pub const fn fbdiv(self) -> u16 {
        self.fbdiv
    }

    pub const fn refdiv(self) -> u8 {
        self.refdiv
    }

    pub const fn postdiv1(self) -> u8 {
        self.postdiv1
    }

    pub const fn postdiv2(self) -> u8 {
        self.postdiv2
    }

    const fn total_divide(self) -> u64 {
        self.refdiv as u64 * self.postdiv1 as u64 * self.postdiv2 as u64
    }

    /// The output frequency, rounded to the nearest kHz.
    pub const fn frequency(self) -> Frequency {
        let d = self.total_divide();
        Frequency::from_khz(((REF_KHZ * self.fbdiv as u64 * 2 + d) / (2 * d)) as u32)
    }

    /// The VCO frequency, 25 MHz × FBDIV / REFDIV, rounded to the nearest kHz.
    pub const fn vco(self) -> Frequency {
        let r = self.refdiv as u64;
        Frequency::from_khz(((REF_KHZ * self.fbdiv as u64 * 2 + r) / (2 * r)) as u32)
    }
}

/// Register 0x08 (or 0x60/0x64/0x68): a divider set with its enable and range bits, for one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PllParameter {
    model: ChipModel,
    dividers: PllDividers,
    /// Bit 31. Bitmain firmware writes it; ESP-Miner does not.
    locked: bool,
    /// Bit 30.
    enabled: bool,
    /// Bit 28, VCO high range.
    high_vco: bool,
}

impl PllParameter {
    /// The word ESP-Miner writes: enabled, not locked, high-VCO on BM1366+ when VCO ≥ 2400 MHz
    /// (never on BM1397).
    pub const fn esp_miner(model: ChipModel, dividers: PllDividers) -> Self {
        let vco_khz = REF_KHZ * dividers.fbdiv as u64 / dividers.refdiv as u64;
        Self {
            model,
            dividers,
            locked: false,
            enabled: true,
            high_vco: model.postdiv_minus_one() && vco_khz >= HIGH_VCO_KHZ,
        }
    }

    /// Reads a word back. `None` if a divider field is zero where the model needs it non-zero.
    pub const fn from_register(model: ChipModel, value: u32) -> Option<Self> {
        let fbdiv = ((value >> 16) & 0xFFF) as u16;
        let refdiv = ((value >> 8) & 0x3F) as u8;
        let field1 = ((value >> 4) & 0x7) as u8;
        let field2 = (value & 0x7) as u8;
        let (p1, p2) = if model.postdiv_minus_one() {
            (field1 + 1, field2 + 1)
        } else {
            (field1, field2)
        };
        match PllDividers::new(model, fbdiv, refdiv, p1, p2) {
            Ok(dividers) => Some(Self {
                model,
                dividers,
                locked: value & 0x8000_0000 != 0,
                enabled: value & 0x4000_0000 != 0,
                high_vco: value & 0x1000_0000 != 0,
            }),
            Err(_) => None,
        }
    }

    pub const fn dividers(self) -> PllDividers {
        self.dividers
    }

    pub const fn model(self) -> ChipModel {
        self.model
    }

    /// The PLL output. On BM1397 the hash clock is further divided by PLLDIV0 + 1 (register 0x70),
    /// which drivers set to 0.
    pub const fn frequency(self) -> Frequency {
        self.dividers.frequency()
    }

    /// The hash clock on BM1397, where register 0x70 divides the PLL output further.
    pub const fn hash_clock(self, divider: Pll0Divider) -> Frequency {
        let d = self.dividers;
        let total = d.total_divide() * (divider.pll_div0() as u64 + 1);
        Frequency::from_khz(((REF_KHZ * d.fbdiv as u64 * 2 + total) / (2 * total)) as u32)
    }

    pub const fn value(self) -> u32 {
        let d = self.dividers;
        let (f1, f2) = if self.model.postdiv_minus_one() {
            (d.postdiv1 - 1, d.postdiv2 - 1)
        } else {
            (d.postdiv1, d.postdiv2)
        };
        (self.locked as u32) << 31
            | (self.enabled as u32) << 30
            | (self.high_vco as u32) << 28
            | (d.fbdiv as u32) << 16
            | (d.refdiv as u32) << 8
            | (f1 as u32) << 4
            | f2 as u32
    }
}

impl Register for PllParameter {
    const ADDRESS: u8 = address::PLL0;

    fn to_value(self) -> u32 {
        self.value()
    }
}

/// BM1397 PLL0 divider register (0x70): drivers write 0x0F0F0F00 before every PLL change so that
/// PLLDIV0 = 0 and the hash clock is the PLL output itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pll0Divider(pub u32);

impl Pll0Divider {
    pub const DRIVERS: Self = Self(0x0F0F_0F00);
    pub const RESET: Self = Self(0x0304_0607);

    /// PLLDIV0, bits [3:0]: the hash clock is the PLL output / (PLLDIV0 + 1).
    pub const fn pll_div0(self) -> u8 {
        (self.0 & 0xF) as u8
    }
}

impl Register for Pll0Divider {
    const ADDRESS: u8 = address::PLL0_DIVIDER;

    fn to_value(self) -> u32 {
        self.0
    }
}

/// Which divider sets the solver may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PllConstraints {
    pub fbdiv_min: u16,
    pub fbdiv_max: u16,
    /// VCO window, inclusive, in kHz.
    pub vco_min: Frequency,
    pub vco_max: Frequency,
}

impl PllConstraints {
    /// ESP-Miner's windows: FBDIV per model, VCO unconstrained. This reproduces ESP-Miner's
    /// register words, including its BM1397 choices with an 800–900 MHz VCO, which ESP-Miner
    /// itself labels experimental.
    pub const fn esp_miner(model: ChipModel) -> Self {
        let (fbdiv_min, fbdiv_max) = model.fbdiv_window();
        Self {
            fbdiv_min,
            fbdiv_max,
            vco_min: Frequency::from_khz(0),
            vco_max: Frequency::from_khz(u32::MAX),
        }
    }

    /// ESP-Miner's FBDIV window plus the VCO range other sources assume (bm13xx-rs: 2000 <
    /// VCO ≤ 3200 MHz). For BM1397 this keeps the VCO where the gekko and Bitmain values run it.
    pub const fn vco_limited(model: ChipModel) -> Self {
        let (fbdiv_min, _) = model.fbdiv_window();
        Self {
            fbdiv_min,
            fbdiv_max: 250,
            vco_min: Frequency::from_khz(2_000_001),
            vco_max: Frequency::from_khz(3_200_000),
        }
    }
}

/// What the solver chose for a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PllSetting {
    pub parameter: PllParameter,
    /// The frequency these dividers give.
    pub actual: Frequency,
    pub vco: Frequency,
}

/// No divider set within the constraints gets anywhere near the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no legal PLL divider set for {target}")]
pub struct NoPllSolution {
    pub target: Frequency,
}

/// One candidate's closeness, as an exact fraction: |f·d − 25 MHz·fb| / d, in kHz.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    dividers: PllDividers,
    error_numerator: u64,
}

impl Candidate {
    fn denominator(&self) -> u64 {
        self.dividers.total_divide()
    }

    /// ESP-Miner compares in float with an epsilon of 1e-4 MHz (0.1 kHz). Reproduced in exact
    /// arithmetic: errors a/da and b/db are equal when |a·db − b·da| < 0.1 kHz · da · db.
    fn error_cmp(&self, other: &Self) -> core::cmp::Ordering {
        let lhs = u128::from(self.error_numerator) * u128::from(other.denominator());
        let rhs = u128::from(other.error_numerator) * u128::from(self.denominator());
        let tolerance = u128::from(self.denominator()) * u128::from(other.denominator());
        if lhs.abs_diff(rhs) * 10 < tolerance {
            core::cmp::Ordering::Equal
        } else {
            lhs.cmp(&rhs)
        }
    }

    /// VCO = 25 MHz · fb / ref, compared exactly with the same 0.1 kHz tolerance.
    fn vco_cmp(&self, other: &Self) -> core::cmp::Ordering {
        let lhs = u128::from(self.dividers.fbdiv) * u128::from(other.dividers.refdiv);
        let rhs = u128::from(other.dividers.fbdiv) * u128::from(self.dividers.refdiv);
        let scale = u128::from(REF_KHZ) * 10;
        let tolerance = u128::from(self.dividers.refdiv) * u128::from(other.dividers.refdiv);
        if lhs.abs_diff(rhs) * scale < tolerance {
            core::cmp::Ordering::Equal
        } else {
            lhs.cmp(&rhs)
        }
    }

    fn better_than(&self, best: &Self) -> bool {
        use core::cmp::Ordering::{Equal, Less};
        let p = |c: &Self| u16::from(c.dividers.postdiv1) * u16::from(c.dividers.postdiv2);
        match self.error_cmp(best) {
            Less => true,
            Equal => match self.vco_cmp(best) {
                Less => true,
                Equal => p(self) < p(best),
                _ => false,
            },
            _ => false,
        }
    }
}

/// ESP-Miner's search (§8.3): REFDIV 2→1, POSTDIV1 7→1, POSTDIV2 7→1 with POSTDIV1 > POSTDIV2,
/// FBDIV = round(f/25 × divide); the closest frequency wins, then the lower VCO, then the smaller
/// post-divide.
///
/// ```
/// use bm13xx::{ChipModel, Frequency, PllConstraints};
///
/// let model = ChipModel::Bm1370;
/// let setting = bm13xx::pll::solve(model, Frequency::from_khz(600_000), PllConstraints::esp_miner(model))?;
/// assert_eq!(setting.parameter.value(), 0x50C0_0230);
/// assert_eq!(setting.vco, Frequency::from_khz(2_400_000));
/// # Ok::<(), bm13xx::pll::NoPllSolution>(())
/// ```
pub fn solve(
    model: ChipModel,
    target: Frequency,
    constraints: PllConstraints,
) -> Result<PllSetting, NoPllSolution> {
    let f = u64::from(target.khz());
    let mut best: Option<Candidate> = None;
    for refdiv in (1..=2u8).rev() {
        for postdiv1 in (1..=7u8).rev() {
            for postdiv2 in (1..postdiv1).rev() {
                let d = u64::from(refdiv) * u64::from(postdiv1) * u64::from(postdiv2);
                // round(f · d / 25 MHz), half away from zero.
                let fbdiv = (2 * f * d + REF_KHZ) / (2 * REF_KHZ);
                let Ok(fbdiv) = u16::try_from(fbdiv) else {
                    continue;
                };
                if fbdiv < constraints.fbdiv_min || fbdiv > constraints.fbdiv_max {
                    continue;
                }
                let Ok(dividers) = PllDividers::new(model, fbdiv, refdiv, postdiv1, postdiv2)
                else {
                    continue;
                };
                let vco_khz = REF_KHZ * u64::from(fbdiv) / u64::from(refdiv);
                if vco_khz < u64::from(constraints.vco_min.khz())
                    || vco_khz > u64::from(constraints.vco_max.khz())
                {
                    continue;
                }
                let candidate = Candidate {
                    dividers,
                    error_numerator: (f * d).abs_diff(REF_KHZ * u64::from(fbdiv)),
                };
                if best.as_ref().is_none_or(|b| candidate.better_than(b)) {
                    best = Some(candidate);
                }
            }
        }
    }
    let best = best.ok_or(NoPllSolution { target })?;
    let parameter = PllParameter::esp_miner(model, best.dividers);
    Ok(PllSetting {
        parameter,
        actual: best.dividers.frequency(),
        vco: best.dividers.vco(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mhz(value: u32) -> Frequency {
        Frequency::from_khz(value * 1000)
    }

    #[track_caller]
    fn check(model: ChipModel, target: u32, dividers: (u16, u8, u8, u8), word: u32, vco: u32) {
        let setting =
            solve(model, mhz(target), PllConstraints::esp_miner(model)).expect("solvable");
        let d = setting.parameter.dividers();
        assert_eq!(
            (d.fbdiv(), d.refdiv(), d.postdiv1(), d.postdiv2()),
            dividers
        );
        assert_eq!(
            setting.parameter.value(),
            word,
            "{model} {target} MHz: {:#010x}",
            setting.parameter.value()
        );
        assert_eq!(setting.vco, mhz(vco));
        assert_eq!(
            PllParameter::from_register(model, word),
            Some(setting.parameter)
        );
    }

    #[test]
    fn esp_miner_selected_results() {
        check(ChipModel::Bm1397, 425, (68, 2, 2, 1), 0x4044_0221, 850);
        check(ChipModel::Bm1397, 450, (72, 2, 2, 1), 0x4048_0221, 900);
        check(ChipModel::Bm1397, 485, (194, 2, 5, 1), 0x40C2_0251, 2425);
        check(ChipModel::Bm1366, 485, (194, 2, 5, 1), 0x50C2_0240, 2425);
        check(ChipModel::Bm1366, 525, (168, 2, 4, 1), 0x40A8_0230, 2100);
        check(ChipModel::Bm1368, 490, (196, 2, 5, 1), 0x50C4_0240, 2450);
        check(ChipModel::Bm1370, 525, (168, 2, 4, 1), 0x40A8_0230, 2100);
        check(ChipModel::Bm1370, 600, (192, 2, 4, 1), 0x50C0_0230, 2400);
    }

    #[test]
    fn reset_words_decode_to_50_mhz() {
        let bm1366 = PllParameter::from_register(ChipModel::Bm1366, 0xC054_0165).expect("legal");
        assert_eq!(bm1366.frequency(), mhz(50));
        // BM1397: the PLL runs at 400 MHz and the reset PLLDIV0 = 7 divides it by 8.
        let bm1397 = PllParameter::from_register(ChipModel::Bm1397, 0xC060_0161).expect("legal");
        assert_eq!(bm1397.frequency(), mhz(400));
        assert_eq!(bm1397.hash_clock(Pll0Divider::RESET), mhz(50));
        assert_eq!(bm1397.hash_clock(Pll0Divider::DRIVERS), mhz(400));
        // Bitmain's 6.25 MHz ramp word only lines up with the minus-one reading (§8.2).
        let ramp = PllParameter::from_register(ChipModel::Bm1366, 0xC0A2_0255).expect("legal");
        assert_eq!(ramp.frequency(), Frequency::from_khz(56_250));
        assert_eq!(ramp.value(), 0xC0A2_0255);
    }

    #[test]
    fn gekko_words_decode_with_raw_post_dividers() {
        // cgminer / old ESP-Miner BM1397 values (§8.3).
        let f = |word| {
            PllParameter::from_register(ChipModel::Bm1397, word)
                .expect("legal")
                .frequency()
        };
        assert_eq!(f(0x40AA_0215), mhz(425));
        assert_eq!(f(0x4064_0115), mhz(500));
        assert_eq!(f(0x40A0_0225), mhz(200));
        assert_eq!(f(0x40F0_0235), mhz(200));
    }

    #[test]
    fn fractional_targets_and_achieved_frequency() {
        let model = ChipModel::Bm1366;
        let setting = solve(
            model,
            Frequency::from_khz(56_250),
            PllConstraints::esp_miner(model),
        )
        .expect("solvable");
        assert_eq!(setting.actual, Frequency::from_khz(56_250));
        // 501 MHz is out of reach inside the FBDIV window (20.04 × divide is never close to an
        // integer in 144..=235); the achieved frequency says where the solver landed.
        let setting = solve(model, mhz(501), PllConstraints::esp_miner(model)).expect("solvable");
        assert_eq!(setting.actual, mhz(500));
    }

    /// §8.3: for 56.25 MHz ESP-Miner writes 0x40BD0265 and bm13xx-rs 0xC0B40274; both are 56.25 MHz
    /// under the minus-one encoding, and the solver reproduces ESP-Miner's.
    #[test]
    fn bm13xx_rs_and_esp_miner_words_for_56_25_mhz() {
        let model = ChipModel::Bm1366;
        let target = Frequency::from_khz(56_250);
        let setting = solve(model, target, PllConstraints::esp_miner(model)).expect("solvable");
        assert_eq!(setting.parameter.value(), 0x40BD_0265);
        let rs = PllParameter::from_register(model, 0xC0B4_0274).expect("legal");
        assert_eq!(rs.frequency(), target);
    }

    #[test]
    fn vco_limited_profile_keeps_the_vco_in_range() {
        for model in ChipModel::ALL {
            for target in (100..=800).step_by(25) {
                let constraints = PllConstraints::vco_limited(model);
                if let Ok(setting) = solve(model, mhz(target), constraints) {
                    assert!(setting.vco > mhz(2000) && setting.vco <= mhz(3200));
                    assert!(
                        setting.actual.khz().abs_diff(target * 1000) <= 5_000,
                        "{model} {target}"
                    );
                }
            }
        }
        let bm1397 = solve(
            ChipModel::Bm1397,
            mhz(425),
            PllConstraints::vco_limited(ChipModel::Bm1397),
        )
        .expect("solvable");
        assert_eq!(bm1397.actual, mhz(425));
        assert!(bm1397.vco >= mhz(2000));
    }

    #[test]
    fn illegal_dividers_are_unrepresentable() {
        assert!(PllDividers::new(ChipModel::Bm1397, 0, 1, 1, 1).is_err());
        assert!(PllDividers::new(ChipModel::Bm1397, 100, 1, 8, 1).is_err());
        assert!(PllDividers::new(ChipModel::Bm1366, 100, 1, 8, 8).is_ok());
        assert!(PllDividers::new(ChipModel::Bm1366, 100, 64, 1, 1).is_err());
        assert_eq!(
            PllParameter::from_register(ChipModel::Bm1397, 0x4044_0201),
            None
        );
        assert!(
            solve(
                ChipModel::Bm1397,
                mhz(10_000),
                PllConstraints::esp_miner(ChipModel::Bm1397)
            )
            .is_err()
        );
    }
}
