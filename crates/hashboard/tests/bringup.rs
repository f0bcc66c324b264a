//! Chain bring-up against the simulator: boards of one and many chips, every model, and the ways a
//! chain fails to come up, each reported where it happens.

mod common;

use bm13xx::{ChipModel, InitConfig};
use chipsim::Faults;
use common::{SimPort, bench};
use hashboard::board::{BITAXE_MAX, BM1397_HASHBOARD_12};
use hashboard::chain::{BringUpError, Chain};

type Result<T> = core::result::Result<T, BringUpError<core::convert::Infallible>>;

async fn bring_up(
    model: ChipModel,
    sim_chips: u32,
    expected: u32,
    faults: Faults,
) -> Result<Chain<SimPort>> {
    let mut b = bench(model, sim_chips, 5, faults);
    Chain::bring_up(
        b.port,
        &mut b.reset,
        &mut b.delay,
        InitConfig::esp_miner(model, expected),
    )
    .await
}

#[tokio::test]
async fn single_chip_board_comes_up() {
    let chain = bring_up(
        BITAXE_MAX.model,
        1,
        BITAXE_MAX.chips_per_chain,
        Faults::default(),
    )
    .await
    .expect("comes up");
    assert_eq!(chain.chips(), 1);
    assert_eq!(chain.baud(), 3_125_000);
    assert_eq!(chain.decoder_stats().errors(), 0);
}

#[tokio::test]
async fn twelve_chip_hashboard_comes_up() {
    let board = BM1397_HASHBOARD_12;
    let chain = bring_up(board.model, 12, board.chips_per_chain, Faults::default())
        .await
        .expect("comes up");
    assert_eq!(chain.chips(), 12);
    assert_eq!(chain.addressing().interval(), 21);
}

#[tokio::test]
async fn every_model_comes_up() {
    for model in ChipModel::ALL {
        let chain = bring_up(model, 3, 3, Faults::default())
            .await
            .unwrap_or_else(|e| panic!("{model}: {e}"));
        let expected_baud = if model == ChipModel::Bm1397 {
            3_125_000
        } else {
            1_000_000
        };
        assert_eq!(chain.baud(), expected_baud, "{model}");
    }
}

#[tokio::test]
async fn a_chain_break_is_reported_at_the_chip_where_it_breaks() {
    let error = bring_up(
        ChipModel::Bm1397,
        12,
        12,
        Faults {
            break_after: Some(4),
            ..Faults::default()
        },
    )
    .await
    .expect_err("broken chain");
    assert_eq!(
        error,
        BringUpError::ChainBreak {
            expected: 12,
            found: 5
        }
    );
    assert_eq!(
        error.to_string(),
        "expected 12 chips, 5 answered: the chain breaks after chip 4"
    );
}

#[tokio::test]
async fn a_noisy_uart_costs_a_retry_not_the_chain() {
    // At this rate about half the tries lose an answer somewhere in enumeration or the baud
    // check: every board coming up needs the retries.
    let noisy = Faults {
        bit_flip_rate: 0.0015,
        ..Faults::default()
    };
    let mut retried_past = 0;
    for seed in 1..=8 {
        let mut b = bench(ChipModel::Bm1397, 12, seed, noisy.clone());
        let chain = Chain::bring_up(
            b.port,
            &mut b.reset,
            &mut b.delay,
            InitConfig::esp_miner(ChipModel::Bm1397, 12),
        )
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(chain.chips(), 12);
        retried_past += chain.uart_errors_since_bring_up() - chain.decoder_stats().errors();
    }
    // What the failed tries saw is still counted, though each try starts a new decoder.
    assert!(retried_past > 0);
}

#[tokio::test]
async fn a_dead_chain_and_extra_chips_are_errors_too() {
    let dead = bring_up(
        ChipModel::Bm1397,
        4,
        4,
        Faults {
            stuck_in_reset: vec![0],
            ..Faults::default()
        },
    )
    .await;
    assert_eq!(dead.expect_err("dead"), BringUpError::NoChips);
    let extra = bring_up(ChipModel::Bm1397, 5, 4, Faults::default()).await;
    assert_eq!(
        extra.expect_err("extra"),
        BringUpError::ExtraChips {
            expected: 4,
            found: 5
        }
    );
}

/// A BM1366 chain driven as a BM1397 board answers chip id 0x1366, and the error says so.
#[tokio::test]
async fn the_wrong_chip_model_is_named() {
    let mut b = bench(ChipModel::Bm1366, 1, 5, Faults::default());
    let error = Chain::bring_up(
        b.port,
        &mut b.reset,
        &mut b.delay,
        InitConfig::esp_miner(ChipModel::Bm1397, 1),
    )
    .await
    .expect_err("wrong model");
    assert_eq!(
        error,
        BringUpError::WrongChip {
            index: 0,
            chip_id: 0x1366,
            expected: ChipModel::Bm1397
        }
    );
}

#[tokio::test]
async fn a_chip_that_stops_answering_mid_bring_up_fails_it() {
    // Chip 2 answers the enumeration... then falls silent before the read-back at the fast rate.
    let mut b = bench(ChipModel::Bm1397, 4, 5, Faults::default());
    let script =
        chipsim::FaultScript::from_json(r#"[{"at_s": 0.5, "faults": {"unresponsive": [2]}}]"#)
            .expect("valid");
    b.control.with_sim(|sim| sim.set_fault_script(script));
    let error = Chain::bring_up(
        b.port,
        &mut b.reset,
        &mut b.delay,
        InitConfig::esp_miner(ChipModel::Bm1397, 4),
    )
    .await
    .expect_err("silent chip");
    // The first try fails the read-back at chip 2; the retries find it silent from reset on, so
    // the last word is the count: the chain answers up to chip 1 and no further.
    assert_eq!(
        error,
        BringUpError::ChainBreak {
            expected: 4,
            found: 3
        }
    );
}

#[tokio::test]
async fn what_a_retry_cannot_fix_is_not_retried() {
    let answers = BringUpError::<()>::BaudVerify {
        index: 2,
        address: 128,
        baud: 3_125_000,
    };
    assert!(answers.may_pass_on_retry());
    assert!(!BringUpError::<()>::ResetPin.may_pass_on_retry());
    assert!(!BringUpError::Uart(()).may_pass_on_retry());
}
