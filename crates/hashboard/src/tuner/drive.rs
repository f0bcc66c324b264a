//! The tuner driven to the end over a [`TuneRig`]: for a board task that may block while it
//! tunes (and for the tests that score the method against the simulator's oracle).

use bm13xx::Frequency;

use super::{ChipSample, Goal, Profile, TuneError, TuneRig, TuneStep, Tuner, TunerConfig};
use crate::board::BoardDescription;
use crate::mining::MAX_CHIPS;
use crate::profile::StoredProfile;

/// Runs `tuner` to its profile, and leaves the board at it.
async fn drive<R: TuneRig>(rig: &mut R, tuner: &mut Tuner) -> Result<Profile, TuneError<R::Error>> {
    let mut samples = [ChipSample::default(); MAX_CHIPS];
    loop {
        match tuner.step() {
            TuneStep::Measure { seconds } => {
                apply(rig, tuner.core_mv(), tuner.clocks()).await?;
                let samples = &mut samples[..tuner.chips()];
                samples.fill(ChipSample::default());
                let watts = rig
                    .measure(seconds, samples)
                    .await
                    .map_err(TuneError::Rig)?;
                tuner.observe(samples, watts);
            }
            TuneStep::Finished => {
                let profile = tuner.outcome().ok_or(TuneError::Unreachable)??.clone();
                // A sweep ends at its last voltage, not at the point it picked.
                apply(rig, profile.core_mv, profile.clocks()).await?;
                return Ok(profile);
            }
        }
    }
}

async fn apply<R: TuneRig>(
    rig: &mut R,
    core_mv: u32,
    clocks: &[u32],
) -> Result<(), TuneError<R::Error>> {
    rig.set_core_mv(core_mv).await.map_err(TuneError::Rig)?;
    for (chip, &khz) in (0u32..).zip(clocks) {
        rig.set_clock(chip, Frequency::from_khz(khz))
            .await
            .map_err(TuneError::Rig)?;
    }
    Ok(())
}

/// Tunes a chain of `chips` on `board` for `goal` (see [`Tuner::sweep`]).
pub async fn tune<R: TuneRig>(
    rig: &mut R,
    board: &BoardDescription,
    chips: usize,
    goal: Goal,
    config: TunerConfig,
) -> Result<Profile, TuneError<R::Error>> {
    drive(rig, &mut Tuner::sweep(board, chips, goal, config)).await
}

/// Resumes from a stored profile (see [`Tuner::resume`]).
pub async fn resume<R: TuneRig>(
    rig: &mut R,
    board: &BoardDescription,
    profile: &StoredProfile,
    config: TunerConfig,
) -> Result<Profile, TuneError<R::Error>> {
    drive(rig, &mut Tuner::resume(board, profile, config)).await
}
