//! Curtailment primitives the firmware exposes: sleep and wake, each ramped and each reporting
//! when it is done. (A power target is the tuner with [`crate::tuner::Goal::PowerTarget`].)
//!
//! Sleep steps the clock down before cutting the supply, so the regulator sees a staircase rather
//! than a cliff, then leaves the fan at the board's minimum safe duty. Wake restores the supply at
//! the board's lowest voltage and ramps it to the profile's, brings the chain up again (the chips
//! lost their state) and ramps every chip to its tuned clock, side by side.

use bm13xx::{Command, Destination, Frequency, InitConfig, PllConstraints};
use embedded_hal::digital::OutputPin;
use embedded_hal::i2c::I2c;
use embedded_hal_async::delay::DelayNs;
use embedded_io_async::{Read, Write};

use crate::board::BoardDescription;
use crate::chain::{BringUpError, Chain};
use crate::clocks::ClockError;
use crate::drivers::DriverError;
use crate::drivers::emc2101::Emc2101;
use crate::drivers::tps546::Tps546;
use crate::profile::{ProfileError, StoredProfile};
use crate::uart::SetBaud;

/// Clock fractions on the way down to sleep; each held for [`SLEEP_STEP_MS`].
const SLEEP_STEPS: [f32; 3] = [0.75, 0.5, 0.25];
const SLEEP_STEP_MS: u32 = 100;

/// Where the board is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    Mining,
    Sleeping,
}

/// A finished transition and how long it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub state: PowerState,
    pub took_ms: u32,
}

/// Why a transition did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CurtailError<U: core::fmt::Debug, B: core::fmt::Debug> {
    #[error("UART error: {0:?}")]
    Uart(U),
    #[error("board peripheral: {0}")]
    Peripheral(DriverError<B>),
    #[error("bringing the chain back up failed: {0}")]
    BringUp(BringUpError<U>),
    #[error("the stored profile cannot be used: {0}")]
    Profile(ProfileError),
    #[error("no PLL setting for {0}")]
    Clock(Frequency),
}

/// Stops hashing: clock down in steps from `from`, supply off, fan to the board's minimum.
pub async fn sleep<U, E, I2C, F, D>(
    chain: &mut Chain<U>,
    regulator: &mut Tps546<I2C>,
    fan: Option<&mut Emc2101<F>>,
    delay: &mut D,
    board: &BoardDescription,
    from: Frequency,
) -> Result<Transition, CurtailError<E, I2C::Error>>
where
    U: Read<Error = E> + Write<Error = E> + SetBaud<Error = E>,
    E: core::fmt::Debug + embedded_io::Error,
    I2C: I2c,
    F: I2c<Error = I2C::Error>,
    D: DelayNs,
{
    let took_ms = clock_down(chain, delay, board, from).await?;
    regulator
        .set_output(false)
        .map_err(CurtailError::Peripheral)?;
    if let Some(fan) = fan {
        fan.set_fan_percent(board.min_fan_percent)
            .map_err(CurtailError::Peripheral)?;
    }
    Ok(Transition {
        state: PowerState::Sleeping,
        took_ms,
    })
}

/// Steps every chip's clock down from `from` to a quarter of it (or the board's minimum), each
/// step held for a moment: the first half of [`sleep`], and all of it on a board whose supply
/// cannot be cut. Returns the time it took, ms.
pub async fn clock_down<U, E, B, D>(
    chain: &mut Chain<U>,
    delay: &mut D,
    board: &BoardDescription,
    from: Frequency,
) -> Result<u32, CurtailError<E, B>>
where
    U: Read<Error = E> + Write<Error = E> + SetBaud<Error = E>,
    E: core::fmt::Debug + embedded_io::Error,
    B: core::fmt::Debug,
    D: DelayNs,
{
    let mut took_ms = 0;
    for fraction in SLEEP_STEPS {
        let khz = (from.khz() as f32 * fraction) as u32;
        let step = board.clamp_frequency(Frequency::from_khz(khz));
        write_clock(chain, board, Destination::All, step).await?;
        delay.delay_ms(SLEEP_STEP_MS).await;
        took_ms += SLEEP_STEP_MS;
    }
    Ok(took_ms)
}

/// Resumes at a stored profile: supply on at its voltage, the chain brought up again, then every
/// chip ramped to its own clock. The profile is checked against the board first.
#[allow(clippy::too_many_arguments)]
pub async fn wake<U, E, I2C, R, D>(
    chain: &mut Chain<U>,
    regulator: &mut Tps546<I2C>,
    reset: &mut R,
    delay: &mut D,
    board: &BoardDescription,
    config: InitConfig,
    profile: &StoredProfile,
) -> Result<Transition, CurtailError<E, I2C::Error>>
where
    U: Read<Error = E> + Write<Error = E> + SetBaud<Error = E>,
    E: core::fmt::Debug + embedded_io::Error,
    I2C: I2c,
    R: OutputPin,
    D: DelayNs,
{
    profile.check_for(board).map_err(CurtailError::Profile)?;
    // Power up at the board's lowest voltage and ramp to the profile's from there.
    let mut took_ms = crate::power::supply_on(regulator, board, delay, profile.core_mv)
        .await
        .map_err(CurtailError::Peripheral)?;
    // Bring up at the lowest clock the profile uses, then ramp each chip from there.
    let floor = profile
        .clocks()
        .iter()
        .copied()
        .min()
        .unwrap_or(board.default_frequency.khz());
    let start = Frequency::from_khz(floor);
    let config = InitConfig {
        frequency: start,
        ..config
    };
    chain
        .reinit(reset, delay, config)
        .await
        .map_err(CurtailError::BringUp)?;
    let from = [floor; crate::mining::MAX_CHIPS];
    let clocks = profile.clocks();
    took_ms += crate::clocks::ramp_each(chain, delay, board.model, &from[..clocks.len()], clocks)
        .await
        .map_err(|e| match e {
            ClockError::Uart(e) => CurtailError::Uart(e),
            ClockError::NoPll(frequency) => CurtailError::Clock(frequency),
            ClockError::Mismatch { .. } => CurtailError::Profile(ProfileError::WrongChipCount {
                expected: clocks.len(),
                found: from.len(),
            }),
        })?;
    Ok(Transition {
        state: PowerState::Mining,
        took_ms,
    })
}

async fn write_clock<U, E, B>(
    chain: &mut Chain<U>,
    board: &BoardDescription,
    destination: Destination,
    frequency: Frequency,
) -> Result<(), CurtailError<E, B>>
where
    U: Read<Error = E> + Write<Error = E> + SetBaud<Error = E>,
    E: core::fmt::Debug + embedded_io::Error,
    B: core::fmt::Debug,
{
    let setting = bm13xx::pll::solve(
        board.model,
        frequency,
        PllConstraints::esp_miner(board.model),
    )
    .map_err(|_| CurtailError::Clock(frequency))?;
    chain
        .write_frame(
            Command::write(destination, setting.parameter)
                .encode()
                .as_bytes(),
        )
        .await
        .map_err(CurtailError::Uart)
}
