//! The simulator under arbitrary host traffic: it never panics, stays deterministic, keeps its
//! physics finite, and a reset always brings back a chain that enumerates correctly.

use bm13xx::{ChipModel, Command, Destination};
use chipsim::{ChainConfig, ChainSim};
use proptest::prelude::*;

/// Host traffic: raw bytes (biased towards frame starts and real frames) and pauses.
#[derive(Debug, Clone)]
enum Traffic {
    Bytes(Vec<u8>),
    Frame(Command),
    Wait(f64),
    Baud(u32),
}

fn command() -> impl Strategy<Value = Command> {
    let destination = prop_oneof![
        any::<u8>().prop_map(Destination::Chip),
        Just(Destination::All)
    ];
    prop_oneof![
        any::<u8>().prop_map(|address| Command::SetAddress { address }),
        Just(Command::ChainInactive),
        (destination.clone(), any::<u8>()).prop_map(|(d, r)| Command::read(d, r)),
        (destination, any::<u8>(), any::<u32>()).prop_map(|(destination, register, value)| {
            Command::WriteRegister {
                destination,
                register,
                value,
            }
        }),
    ]
}

fn traffic() -> impl Strategy<Value = Traffic> {
    prop_oneof![
        prop::collection::vec(
            prop_oneof![any::<u8>(), Just(0x55u8), Just(0xAAu8), Just(0x21u8)],
            0..200
        )
        .prop_map(Traffic::Bytes),
        command().prop_map(Traffic::Frame),
        (0.0f64..5.0).prop_map(Traffic::Wait),
        prop::sample::select(vec![115_200u32, 1_000_000, 3_125_000, 9_600]).prop_map(Traffic::Baud),
    ]
}

fn model() -> impl Strategy<Value = ChipModel> {
    prop::sample::select(ChipModel::ALL.to_vec())
}

fn play(model: ChipModel, chips: u32, seed: u64, script: &[Traffic]) -> (ChainSim, Vec<u8>) {
    let mut config = ChainConfig::new(model, chips, seed);
    config.share_floor_log2 = 32;
    let mut sim = ChainSim::new(config).expect("valid");
    let mut baud = 115_200;
    let mut heard = Vec::new();
    for step in script {
        match step {
            Traffic::Bytes(bytes) => sim.receive(bytes, baud),
            Traffic::Frame(command) => sim.receive(command.encode().as_bytes(), baud),
            Traffic::Wait(seconds) => sim.advance(*seconds),
            Traffic::Baud(b) => baud = *b,
        }
        heard.extend(sim.take_output(baud));
    }
    (sim, heard)
}

proptest! {
    #[test]
    fn any_traffic_is_survived_deterministically(
        model in model(),
        chips in 1u32..5,
        seed in any::<u64>(),
        script in prop::collection::vec(traffic(), 0..40),
    ) {
        let (mut sim, heard) = play(model, chips, seed, &script);
        let (_, again) = play(model, chips, seed, &script);
        prop_assert_eq!(&heard, &again, "same seed and traffic, same wire");
        prop_assert!(sim.power_w().is_finite() && sim.power_w() >= 0.0);
        for chip in sim.chips() {
            prop_assert!(chip.thermal.temp_c.is_finite());
            prop_assert!(chip.frequency_mhz().is_finite() && chip.frequency_mhz() >= 0.0);
        }
        // Whatever the host did, a reset brings back a chain at power-on state.
        sim.reset();
        sim.receive(Command::read(Destination::All, 0x00).encode().as_bytes(), 115_200);
        let answer = sim.take_output(115_200);
        // Version rolling is off after reset, so every model answers in 9 bytes.
        prop_assert_eq!(answer.len(), 9 * chips as usize);
    }
}
