//! Moving every chip of a chain from one clock to another through the PLL ramp, chips side by
//! side: each ramp step waits the PLL's settle time, so ramping a hundred chips one after another
//! would take a hundred times as long as ramping them together. A chain whose chips share one
//! clock before and after gets broadcast frames instead (one frame per step for the whole chain).

use bm13xx::{ChipModel, Frequency, FrequencyRamp, PllConstraints, Step};
use embedded_hal_async::delay::DelayNs;
use embedded_io_async::{Read, Write};

use crate::chain::Chain;
use crate::uart::SetBaud;

/// Per-chip ramps run at once; a bounded array keeps this allocation-free.
const LANES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClockError<E: core::fmt::Debug> {
    #[error("UART error: {0:?}")]
    Uart(E),
    #[error("no PLL setting for {0}")]
    NoPll(Frequency),
    #[error("{from} clocks for {to} targets: one per chip is needed")]
    Mismatch { from: usize, to: usize },
}

/// Ramps chip `i` from `from[i]` to `to[i]` kHz (chips absent from the chain are skipped).
/// Returns the milliseconds waited.
pub async fn ramp_each<U, E, D>(
    chain: &mut Chain<U>,
    delay: &mut D,
    model: ChipModel,
    from: &[u32],
    to: &[u32],
) -> Result<u32, ClockError<E>>
where
    U: Read<Error = E> + Write<Error = E> + SetBaud<Error = E>,
    E: core::fmt::Debug + embedded_io::Error,
    D: DelayNs,
{
    if from.len() != to.len() {
        return Err(ClockError::Mismatch {
            from: from.len(),
            to: to.len(),
        });
    }
    let constraints = PllConstraints::esp_miner(model);
    let uniform = |clocks: &[u32]| clocks.windows(2).all(|pair| pair[0] == pair[1]);
    if let (Some(&start), Some(&end)) = (from.first(), to.first())
        && uniform(from)
        && uniform(to)
    {
        let ramp = FrequencyRamp::new(
            model,
            Frequency::from_khz(start),
            Frequency::from_khz(end),
            constraints,
        );
        let mut lanes = [Some(ramp)];
        return run_lanes(chain, delay, &mut lanes).await;
    }
    let addressing = chain.addressing();
    let mut took_ms = 0;
    let mut first = 0;
    while first < from.len() {
        let mut lanes: [Option<FrequencyRamp>; LANES] = core::array::from_fn(|lane| {
            let chip = first + lane;
            let address = addressing.address_of(u32::try_from(chip).ok()?)?;
            let (&start, &end) = (from.get(chip)?, to.get(chip)?);
            Some(
                FrequencyRamp::new(
                    model,
                    Frequency::from_khz(start),
                    Frequency::from_khz(end),
                    constraints,
                )
                .to_chip(address),
            )
        });
        took_ms += run_lanes(chain, delay, &mut lanes).await?;
        first += LANES;
    }
    Ok(took_ms)
}

/// Steps every ramp once per round, then waits the longest wait any of them asked for: every
/// ramp gets at least its own gap between frames.
async fn run_lanes<U, E, D>(
    chain: &mut Chain<U>,
    delay: &mut D,
    lanes: &mut [Option<FrequencyRamp>],
) -> Result<u32, ClockError<E>>
where
    U: Read<Error = E> + Write<Error = E> + SetBaud<Error = E>,
    E: core::fmt::Debug + embedded_io::Error,
    D: DelayNs,
{
    let mut took_ms = 0;
    loop {
        let mut wait = None::<u32>;
        for lane in lanes.iter_mut() {
            let Some(ramp) = lane else { continue };
            match ramp.next() {
                None => *lane = None,
                Some(Err(e)) => return Err(ClockError::NoPll(e.target)),
                Some(Ok(Step::Send { frame, wait_ms })) => {
                    chain
                        .write_frame(frame.as_bytes())
                        .await
                        .map_err(ClockError::Uart)?;
                    wait = Some(wait.unwrap_or(0).max(wait_ms));
                }
                // A frequency ramp only sends.
                Some(Ok(_)) => {}
            }
        }
        let Some(wait_ms) = wait else {
            return Ok(took_ms);
        };
        delay.delay_ms(wait_ms).await;
        took_ms += wait_ms;
    }
}
