//! Core-voltage changes: clamped to the board's window and taken in small steps, so the chips
//! never see a jump that would glitch them or overshoot the regulator's limits.

use crate::board::BoardDescription;

/// Largest single step of the per-chip core voltage.
pub const VOLTAGE_STEP_MV: u32 = 10;
/// Settling time after each step.
pub const VOLTAGE_STEP_WAIT_MS: u32 = 20;

/// Where a voltage change is going, and why it may not be where it was asked to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoltagePlan {
    pub requested_mv: u32,
    /// The requested voltage clamped to the board's window.
    pub target_mv: u32,
    pub clamped: bool,
}

/// The per-chip voltages to command, in order, from `from_mv` to the clamped target; each is
/// followed by [`VOLTAGE_STEP_WAIT_MS`]. The regulator is commanded `board.regulator_mv(step)`.
#[derive(Debug, Clone)]
pub struct VoltageRamp {
    current_mv: u32,
    plan: VoltagePlan,
}

impl VoltageRamp {
    pub fn new(board: &BoardDescription, from_mv: u32, requested_mv: u32) -> Self {
        let target_mv = board.clamp_core_mv(requested_mv);
        Self {
            current_mv: from_mv,
            plan: VoltagePlan {
                requested_mv,
                target_mv,
                clamped: target_mv != requested_mv,
            },
        }
    }

    pub fn plan(&self) -> VoltagePlan {
        self.plan
    }
}

impl Iterator for VoltageRamp {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let target = self.plan.target_mv;
        if self.current_mv == target {
            return None;
        }
        self.current_mv = if self.current_mv < target {
            (self.current_mv + VOLTAGE_STEP_MV).min(target)
        } else {
            self.current_mv.saturating_sub(VOLTAGE_STEP_MV).max(target)
        };
        Some(self.current_mv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::{BITAXE_MAX, BM1397_HASHBOARD_12};

    #[test]
    fn ramps_in_small_steps_to_the_exact_target() {
        let steps: [u32; 4] = {
            let mut ramp = VoltageRamp::new(&BITAXE_MAX, 1400, 1435);
            core::array::from_fn(|_| ramp.next().unwrap_or(0))
        };
        assert_eq!(steps, [1410, 1420, 1430, 1435]);
        let mut down = VoltageRamp::new(&BITAXE_MAX, 1400, 1385);
        assert_eq!(
            (down.next(), down.next(), down.next()),
            (Some(1390), Some(1385), None)
        );
        assert_eq!(VoltageRamp::new(&BITAXE_MAX, 1400, 1400).next(), None);
    }

    #[test]
    fn requests_outside_the_board_are_clamped_and_say_so() {
        let ramp = VoltageRamp::new(&BM1397_HASHBOARD_12, 1400, 2000);
        assert_eq!(
            ramp.plan(),
            VoltagePlan {
                requested_mv: 2000,
                target_mv: 1500,
                clamped: true
            }
        );
        assert_eq!(ramp.last(), Some(1500));
        // Four series domains: the regulator is commanded four times the per-chip voltage.
        assert_eq!(BM1397_HASHBOARD_12.regulator_mv(1500), 6000);
        let low = VoltageRamp::new(&BM1397_HASHBOARD_12, 1400, 0);
        assert_eq!(low.plan().target_mv, 1100);
    }
}

/// Walks the regulator from `from_mv` to the board-clamped `requested_mv` (per-chip values) along
/// a [`VoltageRamp`], waiting after each step. Returns the plan, which says if it was clamped.
pub async fn ramp_core_voltage<I2C, D>(
    regulator: &mut crate::drivers::tps546::Tps546<I2C>,
    board: &BoardDescription,
    delay: &mut D,
    from_mv: u32,
    requested_mv: u32,
) -> Result<VoltagePlan, crate::drivers::DriverError<I2C::Error>>
where
    I2C: embedded_hal::i2c::I2c,
    D: embedded_hal_async::delay::DelayNs,
{
    let ramp = VoltageRamp::new(board, from_mv, requested_mv);
    let plan = ramp.plan();
    for step in ramp {
        regulator.set_vout_mv(board.regulator_mv(step))?;
        delay.delay_ms(VOLTAGE_STEP_WAIT_MS).await;
    }
    Ok(plan)
}

/// Time for the supply to come up before anything is ramped or reset.
pub const SUPPLY_SETTLE_MS: u32 = 100;

/// Turns the supply on at the board's lowest voltage, lets it settle, then ramps to `core_mv`
/// (per chip): cold chips never see their working voltage in one step. Returns the time the
/// waits took, ms.
pub async fn supply_on<I2C, D>(
    regulator: &mut crate::drivers::tps546::Tps546<I2C>,
    board: &BoardDescription,
    delay: &mut D,
    core_mv: u32,
) -> Result<u32, crate::drivers::DriverError<I2C::Error>>
where
    I2C: embedded_hal::i2c::I2c,
    D: embedded_hal_async::delay::DelayNs,
{
    regulator.set_vout_mv(board.regulator_mv(board.min_core_mv))?;
    regulator.set_output(true)?;
    delay.delay_ms(SUPPLY_SETTLE_MS).await;
    ramp_core_voltage(regulator, board, delay, board.min_core_mv, core_mv).await?;
    let steps = core_mv
        .saturating_sub(board.min_core_mv)
        .div_ceil(VOLTAGE_STEP_MV);
    Ok(SUPPLY_SETTLE_MS + steps * VOLTAGE_STEP_WAIT_MS)
}

#[cfg(test)]
mod ramp_tests {
    extern crate std;

    use std::vec;

    use embedded_hal_mock::eh1::i2c::{Mock, Transaction};

    use super::*;
    use crate::board::BITAXE_MAX;
    use crate::drivers::tps546::{self, Tps546, VoutLimits};

    struct NoopDelay;

    impl embedded_hal_async::delay::DelayNs for NoopDelay {
        async fn delay_ns(&mut self, _: u32) {}
    }

    /// 1.40 → 1.43 V: three VOUT_COMMAND writes at 2^-9 V per count (721.92 → 722, 727.04 → 727,
    /// 732.16 → 732).
    #[test]
    fn ramp_writes_each_step_to_the_regulator() {
        let a = tps546::DEFAULT_ADDRESS;
        let expected = [
            Transaction::write_read(a, vec![0xAD], vec![6, 0x54, 0x49, 0x54, 0x6B, 0x24, 0x41]),
            Transaction::write_read(a, vec![0x20], vec![0x17]),
            // VOUT_MAX 1.5 V = 768, VOUT_MIN 1.1 V = 563.2 → 563.
            Transaction::write(a, vec![0x24, 0x00, 0x03]),
            Transaction::write(a, vec![0x2B, 0x33, 0x02]),
            Transaction::write(a, vec![0x21, 0xD2, 0x02]),
            Transaction::write(a, vec![0x21, 0xD7, 0x02]),
            Transaction::write(a, vec![0x21, 0xDC, 0x02]),
        ];
        let mut mock = Mock::new(&expected);
        let mut tps = Tps546::init(
            mock.clone(),
            a,
            VoutLimits {
                min_mv: 1100,
                max_mv: 1500,
            },
        )
        .expect("inits");
        let plan = embassy_futures::block_on(ramp_core_voltage(
            &mut tps,
            &BITAXE_MAX,
            &mut NoopDelay,
            1400,
            1430,
        ))
        .expect("ramps");
        assert!(!plan.clamped);
        mock.done();
    }
}
