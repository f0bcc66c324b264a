//! Per-chip clock ramps against the simulator: every chip reaches its own clock, side by side
//! (one chip's ramp time, not the sum), and a chain moving together gets broadcast frames.

mod common;

use bm13xx::ramp::RampPoints;
use bm13xx::{ChipModel, Frequency};
use common::{Up, board_up};
use hashboard::clocks::{ClockError, ramp_each};

const CHIPS: u32 = 4;

fn clocks_mhz(up: &Up) -> Vec<f64> {
    up.control
        .with_sim(|s| s.chips().iter().map(|c| c.frequency_mhz()).collect())
}

fn frames(up: &Up) -> u64 {
    up.control.with_sim(|s| s.stats().frames_received)
}

/// ms a lone BM1397 ramp takes: three 10 ms gaps and the 100 ms settle per point.
fn lone_ramp_ms(from_khz: u32, to_khz: u32) -> u32 {
    let points = RampPoints::new(Frequency::from_khz(from_khz), Frequency::from_khz(to_khz));
    points.count() as u32 * 130
}

#[tokio::test]
async fn each_chip_reaches_its_own_clock_in_one_ramps_time() {
    let mut up = board_up(CHIPS, 41).await;
    let start = up.config.frequency.khz();
    let from = [start; CHIPS as usize];
    let to = [450_000, 400_000, start, 475_000];
    let before = frames(&up);
    let took_ms = ramp_each(&mut up.chain, &mut up.delay, ChipModel::Bm1397, &from, &to)
        .await
        .expect("ramps");
    assert_eq!(
        clocks_mhz(&up),
        [450.0, 400.0, start as f64 / 1000.0, 475.0]
    );
    let longest = to
        .iter()
        .map(|&t| lone_ramp_ms(start, t))
        .max()
        .unwrap_or(0);
    let sum: u32 = to.iter().map(|&t| lone_ramp_ms(start, t)).sum();
    assert_eq!(
        took_ms, longest,
        "side by side: {took_ms} ms vs {sum} ms one after another"
    );
    // Four frames per point per chip, addressed to that chip.
    let points: u64 = to
        .iter()
        .map(|&t| {
            RampPoints::new(Frequency::from_khz(start), Frequency::from_khz(t)).count() as u64
        })
        .sum();
    assert_eq!(frames(&up) - before, 4 * points);
}

#[tokio::test]
async fn a_chain_moving_together_is_ramped_by_broadcast() {
    let mut up = board_up(CHIPS, 42).await;
    let start = up.config.frequency.khz();
    let before = frames(&up);
    ramp_each(
        &mut up.chain,
        &mut up.delay,
        ChipModel::Bm1397,
        &[start; 4],
        &[500_000; 4],
    )
    .await
    .expect("ramps");
    assert_eq!(clocks_mhz(&up), [500.0; 4]);
    let points = RampPoints::new(Frequency::from_khz(start), Frequency::from_khz(500_000)).count();
    assert_eq!(
        frames(&up) - before,
        4 * points as u64,
        "one frame set per step, not per chip"
    );
}

#[tokio::test]
async fn mismatched_lists_are_refused_before_anything_is_sent() {
    let mut up = board_up(CHIPS, 43).await;
    let before = frames(&up);
    let result = ramp_each(
        &mut up.chain,
        &mut up.delay,
        ChipModel::Bm1397,
        &[425_000; 4],
        &[450_000; 3],
    )
    .await;
    assert!(matches!(
        result,
        Err(ClockError::Mismatch { from: 4, to: 3 })
    ));
    assert_eq!(frames(&up), before);
}
