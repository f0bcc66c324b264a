//! Properties: stored profiles and nonce checks take anything without panicking; the clock search
//! never leaves the board's limits; the voltage ramp always ends inside them.

use bm13xx::{ChipAddressing, ChipModel, NonceLayout, NonceResponse};
use hashboard::board::{BITAXE_MAX, BM1397_HASHBOARD_12};
use hashboard::mining::Dispatcher;
use hashboard::power::VoltageRamp;
use hashboard::profile::StoredProfile;
use hashboard::tuner::{ChipSample, ClockSearch, TunerConfig};
use proptest::prelude::*;

proptest! {
    #[test]
    fn any_bytes_as_a_profile(bytes in prop::collection::vec(any::<u8>(), 0..1200)) {
        if let Ok(profile) = StoredProfile::decode(&bytes) {
            // Whatever decodes re-encodes to the same bytes.
            let mut out = vec![0u8; bytes.len()];
            prop_assert_eq!(profile.encode(&mut out), Ok(bytes.len()));
            prop_assert_eq!(out, bytes);
        }
    }

    #[test]
    fn any_nonce_response_is_sorted_without_panic(
        model in prop::sample::select(ChipModel::ALL.to_vec()),
        bytes in any::<[u8; 4]>(), byte6 in any::<u8>(), byte7 in any::<u8>(), version in any::<Option<u16>>(),
    ) {
        let mut d = Dispatcher::new(model, NonceLayout::ESP_MINER, ChipAddressing::for_chain(3).expect("valid"), 256.0, 1.0);
        let _ = d.check(&NonceResponse { nonce_bytes: bytes, byte6, byte7, version_bits: version });
        prop_assert_eq!(d.stale(), 1, "no job was dispatched, so every nonce is stale");
    }

    #[test]
    fn clock_search_stays_within_the_board(
        rounds in prop::collection::vec(prop::collection::vec((0u32..200, 0u32..50), 4), 0..60),
    ) {
        let board = &BM1397_HASHBOARD_12;
        let mut search = ClockSearch::new(4, &[425_000; 4], &TunerConfig::DEFAULT, board);
        for round in rounds {
            let samples: Vec<ChipSample> = round.iter().map(|&(valid, errors)| ChipSample { valid, errors }).collect();
            search.observe(&samples);
            for &khz in search.clocks() {
                prop_assert!(khz >= board.min_frequency.khz() - 12_500 && khz <= board.max_frequency.khz());
            }
        }
    }

    #[test]
    fn voltage_ramps_end_inside_the_board(from in 0u32..3000, to in 0u32..3000) {
        let ramp = VoltageRamp::new(&BITAXE_MAX, from, to);
        let target = ramp.plan().target_mv;
        prop_assert!((BITAXE_MAX.min_core_mv..=BITAXE_MAX.max_core_mv).contains(&target));
        let mut previous = from;
        let mut last = from;
        for step in ramp {
            prop_assert!(step.abs_diff(previous) <= 10);
            previous = step;
            last = step;
        }
        prop_assert_eq!(last, target);
    }
}
