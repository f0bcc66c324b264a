//! Optimise mode: each machine's power target (0 = asleep) to maximise the site's profit under
//! its cap — watts go where the marginal TH per W earns most.
//!
//! Each machine's measured points (and its full point) form an upper concave hull from (0 W,
//! 0 TH/s): its segments have falling TH per W, so taking segments in order of profit per watt
//! across the fleet is optimal for the hull (a fractional knapsack whose only indivisible piece
//! is each machine's first segment — a machine cannot run below its lowest point). A machine's
//! fixed overhead is charged to its first segment; the hysteresis band makes waking a sleeping
//! machine a little harder than keeping a running one on.

use std::cmp::Ordering;

use super::order::EfficiencyOrder;
use super::threshold::untouchable;
use super::{Decision, Economics, Inputs, Machine, Reason, Setting};
use crate::units::{TerahashPerSecond, Watts};

/// A piece of a machine's hull: `watts` more for `hashrate` more.
#[derive(Debug, Clone, Copy)]
struct Segment {
    machine: u32,
    index: u32,
    watts: f64,
    hashrate: f64,
    profit_per_w: f64,
}

/// The upper concave hull of a machine's points from the origin, as (W, TH/s) vertices after
/// the origin, into `hull` (`points` is scratch). Points above its full power are not its to
/// run. Both buffers are reused across the fleet: a plan allocates per fleet, not per machine.
pub fn hull(machine: &Machine, points: &mut Vec<(f64, f64)>, hull: &mut Vec<(f64, f64)>) {
    let full = machine.full.watts.0;
    points.clear();
    points.extend(
        machine
            .curve
            .iter()
            .chain(std::iter::once(&machine.full))
            .map(|p| (p.watts.0, p.hashrate.0))
            .filter(|&(w, h)| w.is_finite() && h.is_finite() && w > 0.0 && h > 0.0 && w <= full),
    );
    points.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    hull.clear();
    hull.push((0.0, 0.0));
    for &p in points.iter() {
        let Some(&last) = hull.last() else { continue };
        if p.1 <= last.1 {
            // More watts for no more hash rate: never worth it.
            continue;
        }
        while hull.len() >= 2 {
            let (a, b) = (hull[hull.len() - 2], hull[hull.len() - 1]);
            // b is under (or on) the line from a to p: not a vertex of the upper hull.
            let cross = (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0);
            if cross >= 0.0 {
                hull.pop();
            } else {
                break;
            }
        }
        hull.push(p);
    }
}

/// Reusable buffers for the hulls.
#[derive(Debug, Default)]
struct Scratch {
    points: Vec<(f64, f64)>,
    hull: Vec<(f64, f64)>,
    pieces: Vec<(f64, f64)>,
}

/// A machine's segments with their profit per watt per day; the first one carries the overhead
/// and the band, and is merged with the next while it earns less per watt than the next (so the
/// segments stay in falling order, as the greedy needs).
fn segments(
    machine_index: usize,
    machine: &Machine,
    economics: &Economics,
    band: f64,
    scratch: &mut Scratch,
    out: &mut Vec<Segment>,
) {
    let value_per_th = economics.hashprice.0 * (1.0 - economics.pool_fee) / 1000.0;
    let cost_per_w = 24.0 / 1000.0 * economics.power_price.0;
    // Waking a sleeping machine must clear the band; a running one keeps running inside it.
    let hysteresis = if machine.running() { band } else { -band };
    hull(machine, &mut scratch.points, &mut scratch.hull);
    let pieces = &mut scratch.pieces;
    pieces.clear();
    pieces.extend(
        scratch
            .hull
            .windows(2)
            .map(|pair| (pair[1].0 - pair[0].0, pair[1].1 - pair[0].1)),
    );
    let profit = |index: usize, (watts, hashrate): (f64, f64)| {
        let mut day = hashrate * value_per_th - watts * cost_per_w;
        if index == 0 {
            day += hysteresis * watts * cost_per_w - machine.overhead.0;
        }
        day / watts
    };
    while pieces.len() >= 2 && profit(0, pieces[0]) < profit(1, pieces[1]) {
        let next = pieces.remove(1);
        pieces[0] = (pieces[0].0 + next.0, pieces[0].1 + next.1);
    }
    out.extend(
        pieces
            .iter()
            .enumerate()
            .map(|(index, &(watts, hashrate))| Segment {
                machine: machine_index as u32,
                index: index as u32,
                watts,
                hashrate,
                profit_per_w: profit(index, (watts, hashrate)),
            }),
    );
}

pub(super) fn plan(
    inputs: &Inputs<'_>,
    order: &EfficiencyOrder,
    economics: &Economics,
) -> Vec<Decision> {
    let machines = inputs.machines;
    let policy = inputs.policy;
    let now = inputs.now;
    let fixed: Vec<Option<(Setting, Reason)>> =
        machines.iter().map(|m| untouchable(m, now)).collect();
    let mut budget = inputs.cap.map_or(f64::INFINITY, |cap| cap.0)
        - machines
            .iter()
            .zip(&fixed)
            .filter_map(|(m, f)| {
                f.as_ref()
                    .filter(|_| m.online)
                    .map(|(to, _)| m.power_at(*to).0)
            })
            .sum::<f64>();
    // Every machine's segments in one list; `span[i]` is machine i's (start, count).
    let mut all: Vec<Segment> = Vec::with_capacity(machines.len() * 3);
    let mut span: Vec<(usize, usize)> = Vec::with_capacity(machines.len());
    let mut scratch = Scratch::default();
    for (i, machine) in machines.iter().enumerate() {
        let start = all.len();
        segments(
            i,
            machine,
            economics,
            policy.band.max(0.0),
            &mut scratch,
            &mut all,
        );
        span.push((start, all.len() - start));
    }
    let first = |i: usize| (span[i].1 > 0).then(|| all[span[i].0]);
    let free = |i: usize| fixed[i].is_none();
    // Dwell: a sleeping machine inside it stays asleep; a running one keeps at least its first
    // segment — unless the cap needs it, least efficient first.
    let dwelling = |i: usize| machines[i].dwell_remaining(now, policy);
    let held_asleep: Vec<bool> = (0..machines.len())
        .map(|i| free(i) && !machines[i].running() && dwelling(i).is_some())
        .collect();
    let pinned_candidates: Vec<usize> = (0..machines.len())
        .filter(|&i| {
            free(i) && machines[i].running() && dwelling(i).is_some() && first(i).is_some()
        })
        .collect();
    let mut pinned = vec![false; machines.len()];
    let mut released = vec![false; machines.len()];
    let first_watts = |i: usize| first(i).map_or(0.0, |s| s.watts);
    for &i in &pinned_candidates {
        pinned[i] = true;
        budget -= first_watts(i);
    }
    for i in order.sorted(pinned_candidates, true) {
        if budget >= 0.0 {
            break;
        }
        pinned[i] = false;
        released[i] = true;
        budget += first_watts(i);
    }

    let mut taken = vec![0usize; machines.len()];
    let mut watts = vec![0.0f64; machines.len()];
    let mut hashrate = vec![0.0f64; machines.len()];
    let mut wanted_more = vec![false; machines.len()];
    for i in (0..machines.len()).filter(|&i| pinned[i]) {
        if let Some(segment) = first(i) {
            taken[i] = 1;
            watts[i] = segment.watts;
            hashrate[i] = segment.hashrate;
        }
    }
    let mut segments_by_profit: Vec<Segment> = all
        .iter()
        .filter(|s| {
            let i = s.machine as usize;
            s.profit_per_w > 0.0 && free(i) && !held_asleep[i] && !released[i]
        })
        .copied()
        .collect();
    // Without a cap every earning segment is taken, in any order; with one, the best go first.
    // Exact ties go by id, so the order of the machines' list does not matter.
    if budget.is_finite() {
        segments_by_profit.sort_unstable_by(|a, b| {
            b.profit_per_w
                .total_cmp(&a.profit_per_w)
                .then_with(|| {
                    machines[a.machine as usize]
                        .id
                        .cmp(&machines[b.machine as usize].id)
                })
                .then(a.index.cmp(&b.index))
        });
    }
    let mut partial = vec![false; machines.len()];
    for segment in segments_by_profit {
        let i = segment.machine as usize;
        if segment.index as usize != taken[i] || partial[i] {
            continue;
        }
        if segment.watts <= budget {
            taken[i] += 1;
            watts[i] += segment.watts;
            hashrate[i] += segment.hashrate;
            budget -= segment.watts;
        } else if segment.index > 0 && budget > 0.0 {
            // A power target between two measured points: the limiter holds it by the clock.
            let share = budget / segment.watts;
            watts[i] += budget;
            hashrate[i] += segment.hashrate * share;
            budget = 0.0;
            partial[i] = true;
        } else {
            wanted_more[i] = true;
        }
    }

    machines
        .iter()
        .enumerate()
        .map(|(i, machine)| {
            let breakeven = machine.breakeven(economics);
            let (to, reason) = fixed[i].clone().unwrap_or_else(|| {
                let hold = |reason| (machine.setting, reason);
                if held_asleep[i] {
                    hold(Reason::Dwell {
                        remaining_s: dwelling(i).unwrap_or(0),
                    })
                } else if watts[i] <= 0.0 {
                    let reason = if released[i] {
                        Reason::OverCap {
                            cap: inputs.cap.unwrap_or(Watts(0.0)),
                        }
                    } else if wanted_more[i] {
                        Reason::NoRoomUnderCap {
                            cap: inputs.cap.unwrap_or(Watts(0.0)),
                        }
                    } else {
                        Reason::Unprofitable {
                            hashprice: economics.hashprice,
                            breakeven,
                        }
                    };
                    (Setting::Sleep, reason)
                } else {
                    let target = setting_for(machine, watts[i]);
                    let current = machine.power_at(machine.setting).0;
                    let small =
                        (watts[i] - current).abs() < policy.min_change * machine.full.watts.0;
                    if machine.running() && small && current <= watts[i] {
                        hold(Reason::SmallChange)
                    } else {
                        (
                            target,
                            Reason::Optimised {
                                watts: Watts(watts[i]),
                                hashrate: TerahashPerSecond(hashrate[i]),
                            },
                        )
                    }
                }
            });
            Decision {
                id: machine.id.clone(),
                from: machine.setting,
                to,
                reason,
                at: now,
                breakeven: Some(breakeven),
            }
        })
        .collect()
}

/// Full power when the watts reach it (but for the rounding of summing its segments), else a
/// power target in whole watts, rounded down so a cap spent to the last watt still holds. Watts
/// short of full come only from a binding cap, so even a fraction of a watt short is a target:
/// full power there would draw that fraction over the cap.
fn setting_for(machine: &Machine, watts: f64) -> Setting {
    let full = machine.full.watts.0;
    let rounding = FULL_TOLERANCE * full.abs().max(1.0);
    match (full - watts).partial_cmp(&rounding) {
        Some(Ordering::Less) | Some(Ordering::Equal) => Setting::Full,
        _ => Setting::PowerTarget(Watts(watts.floor())),
    }
}

/// Relative error of a sum of a machine's segments against its full power.
const FULL_TOLERANCE: f64 = 1e-9;
