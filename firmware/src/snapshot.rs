//! The one reading of the miner that every API renders.

use fleet_proto::Mode;
use fleet_proto::messages::Hashrate;

/// What the miner is doing, as every reader sees it: the mining loop takes one reading a second
/// and the cgminer API, the AxeOS API, `/metrics` and the MQTT telemetry all render from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub elapsed_s: u64,
    pub mhs_av: f64,
    pub mhs_5s: f64,
    pub accepted: u64,
    pub rejected: u64,
    pub stale: u64,
    pub hardware_errors: u64,
    /// Nonces that met the chips' ticket: cgminer's "Diff1 Work" in ticket units.
    pub nonces: u64,
    pub pools: Vec<PoolRow>,
    pub chains: Vec<ChainRow>,
    pub board: &'static str,
    pub mode: Mode,
    /// TH/s over 5 s, 1 min and 15 min.
    pub hashrate: Hashrate,
    /// What the chips should make at their clocks, TH/s.
    pub expected_ths: f64,
    /// Sum and best of the validated shares' difficulties.
    pub share_difficulty: f64,
    pub best_difficulty: f64,
    /// Regulator output power (PMBus), when the board can read it.
    pub power_w: Option<f64>,
    /// Fan (tachometer rpm, commanded duty %), when the board has a fan controller.
    pub fan: Option<(u32, f32)>,
    /// The board sensor (on the hottest chip) and the hottest chip itself (`--sim` knows it).
    pub board_temp_c: Option<f64>,
    /// The hottest voltage regulator, when the boards can read theirs.
    pub regulator_temp_c: Option<f64>,
    pub hottest_chip_c: Option<f64>,
    pub core_mv: u32,
    pub frequency_mhz: f64,
    pub chips_up: u32,
    pub chips_expected: u32,
    pub asic_model: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolRow {
    pub url: String,
    pub user: String,
    pub alive: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChainRow {
    pub index: u32,
    pub chips: u32,
    pub chips_up: u32,
    pub model: &'static str,
    pub frequency_mhz: f64,
    pub temperature_c: f64,
    pub mhs_av: f64,
    pub ths_5s: f64,
    pub nonces: u64,
    pub hardware_errors: u64,
}

impl Snapshot {
    /// The machine from its chains: rates, counts and power add up, the hottest reading counts,
    /// and the mode is the most pressing one (overheated before mining before sleeping).
    pub fn merge(parts: Vec<Snapshot>) -> Snapshot {
        let mut parts = parts.into_iter();
        let Some(mut machine) = parts.next() else {
            return Snapshot::default();
        };
        let hotter = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        for chain in parts {
            machine.elapsed_s = machine.elapsed_s.max(chain.elapsed_s);
            machine.mhs_av += chain.mhs_av;
            machine.mhs_5s += chain.mhs_5s;
            // Chains carry no pool verdicts or pool list: the daemon adds the machine's once.
            machine.accepted += chain.accepted;
            machine.rejected += chain.rejected;
            machine.stale += chain.stale;
            machine.hardware_errors += chain.hardware_errors;
            machine.nonces += chain.nonces;
            machine.chains.extend(chain.chains);
            machine.mode = more_pressing(machine.mode, chain.mode);
            machine.hashrate.s5 += chain.hashrate.s5;
            machine.hashrate.m1 += chain.hashrate.m1;
            machine.hashrate.m15 += chain.hashrate.m15;
            machine.expected_ths += chain.expected_ths;
            machine.share_difficulty += chain.share_difficulty;
            machine.best_difficulty = machine.best_difficulty.max(chain.best_difficulty);
            machine.power_w = match (machine.power_w, chain.power_w) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            machine.fan = machine.fan.or(chain.fan);
            machine.board_temp_c = hotter(machine.board_temp_c, chain.board_temp_c);
            machine.regulator_temp_c = hotter(machine.regulator_temp_c, chain.regulator_temp_c);
            machine.hottest_chip_c = hotter(machine.hottest_chip_c, chain.hottest_chip_c);
            machine.chips_up += chain.chips_up;
            machine.chips_expected += chain.chips_expected;
        }
        machine
    }
}

fn more_pressing(a: Mode, b: Mode) -> Mode {
    let rank = |mode: Mode| match mode {
        Mode::Overheated => 4,
        Mode::Tuning => 3,
        Mode::PowerTarget => 2,
        Mode::Mining => 1,
        Mode::Sleeping => 0,
    };
    if rank(b) > rank(a) { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(index: u32, mode: Mode, power: Option<f64>, temp: f64, stale: u64) -> Snapshot {
        Snapshot {
            elapsed_s: 10,
            nonces: 100,
            stale,
            chains: vec![ChainRow {
                index,
                chips: 100,
                chips_up: 100,
                ..ChainRow::default()
            }],
            mode,
            hashrate: fleet_proto::messages::Hashrate {
                s5: 30.0,
                m1: 31.0,
                m15: 32.0,
            },
            power_w: power,
            hottest_chip_c: Some(temp),
            chips_up: 100,
            chips_expected: 100,
            ..Snapshot::default()
        }
    }

    #[test]
    fn a_machine_adds_up_its_chains() {
        let machine = Snapshot::merge(vec![
            chain(0, Mode::Mining, Some(1000.0), 60.0, 1),
            chain(1, Mode::Overheated, Some(900.0), 95.0, 2),
            chain(2, Mode::Sleeping, None, 30.0, 3),
        ]);
        assert_eq!(machine.chains.len(), 3);
        assert_eq!(machine.nonces, 300);
        assert_eq!(machine.hashrate.s5, 90.0);
        assert_eq!(machine.power_w, Some(1900.0));
        assert_eq!(machine.hottest_chip_c, Some(95.0));
        assert_eq!(machine.mode, Mode::Overheated);
        assert_eq!(machine.chips_expected, 300);
        assert_eq!(machine.stale, 6);
        assert_eq!(Snapshot::merge(Vec::new()), Snapshot::default());
    }
}
