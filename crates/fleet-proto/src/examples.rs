//! One example of every message, built from the types themselves. `docs/mqtt.md` shows exactly
//! these (checked by `tests/docs.rs`), so the documentation cannot drift from the contract.

use crate::command::{Action, Command, CommandSigner, TuneMode, VERSION};
use crate::messages::{
    Ack, AckStatus, ChainHealth, CurvePoint, Fan, GridSignal, Hashrate, MaestroTarget, Market,
    Mode, Nameplate, PowerPrice, State, Telemetry,
};
use crate::topic::{self, Kind, MinerTopic, Name};

/// A documented message: what it is, where it goes, and its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub title: &'static str,
    pub topic: String,
    pub retained: bool,
    pub json: String,
}

/// The documentation's signing key: a fixed seed, never used anywhere real.
pub const EXAMPLE_SEED: [u8; 32] = [7; 32];

fn name(text: &str) -> Name {
    // The example names are valid by construction.
    Name::new(text).unwrap_or_else(|_| unreachable!("example names are valid"))
}

fn pretty<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("<{e}>"))
}

pub fn example_command(action: Action, seq: u64) -> Command {
    Command {
        v: VERSION,
        id: format!("cmd-{seq:06}"),
        site: name("tx-west"),
        miner: name("s19xp-r04-017"),
        issued_at: 1_767_225_600,
        expires_at: 1_767_225_660,
        seq,
        action,
    }
}

pub fn all() -> Vec<Example> {
    let site = name("tx-west");
    let miner = name("s19xp-r04-017");
    let topic = |kind| MinerTopic::new(&site, &miner, kind).to_string();
    let signer = CommandSigner::from_seed("host-2026a", &EXAMPLE_SEED);
    let signed = |action, seq| {
        pretty(
            &signer
                .sign(&example_command(action, seq))
                .unwrap_or_else(|e| unreachable!("{e}")),
        )
    };

    let telemetry = Telemetry {
        v: VERSION,
        at: 1_767_225_605,
        uptime_s: 86_400,
        firmware: "hashwarden-fw 0.1.0".into(),
        mode: Mode::Mining,
        hashrate_ths: Hashrate {
            s5: 141.2,
            m1: 140.8,
            m15: 140.9,
        },
        share_difficulty: 1.84e12,
        shares_accepted: 5_120,
        shares_rejected: 3,
        power_w: 3_029.0,
        efficiency_j_per_th: Some(21.5),
        board_temp_c: Some(58.5),
        fans: vec![
            Fan {
                rpm: 4_800,
                percent: 62.0,
            },
            Fan {
                rpm: 4_760,
                percent: 62.0,
            },
        ],
        chains: vec![ChainHealth {
            index: 0,
            chips_expected: 110,
            chips_alive: 110,
            hashrate_ths: 47.1,
            hw_error_rate: 0.0004,
            max_chip_temp_c: Some(71.0),
        }],
        hw_error_rate: 0.0004,
    };
    let state = State {
        v: VERSION,
        at: 1_767_225_600,
        mode: Mode::Mining,
        power_target_w: None,
        tune: Some(TuneMode::Efficiency),
        firmware: "hashwarden-fw 0.1.0".into(),
        nameplate: Nameplate {
            model: "S19 XP".into(),
            chip: "bm1366".into(),
            chips: 330,
            hashrate_ths: 141.0,
            power_w: 3_031.0,
        },
        curve: vec![
            CurvePoint {
                core_mv: 1_300,
                hashrate_ths: 150.2,
                power_w: 3_560.0,
            },
            CurvePoint {
                core_mv: 1_250,
                hashrate_ths: 141.0,
                power_w: 3_031.0,
            },
            CurvePoint {
                core_mv: 1_200,
                hashrate_ths: 126.4,
                power_w: 2_590.0,
            },
        ],
        durable_sleep: false,
    };
    let ack = |status, reason: Option<&str>| Ack {
        v: VERSION,
        id: Some("cmd-000042".into()),
        miner: miner.clone(),
        status,
        reason: reason.map(str::to_string),
        at: 1_767_225_601,
    };
    vec![
        Example {
            title: "status (online; the last will publishes \"offline\")",
            topic: topic(Kind::Status),
            retained: true,
            json: crate::messages::ONLINE.into(),
        },
        Example {
            title: "telemetry",
            topic: topic(Kind::Telemetry),
            retained: false,
            json: pretty(&telemetry),
        },
        Example {
            title: "state",
            topic: topic(Kind::State),
            retained: true,
            json: pretty(&state),
        },
        Example {
            title: "telemetry, as the miner publishes it: the report above signed by its device key (state and acks likewise)",
            topic: topic(Kind::Telemetry),
            retained: false,
            json: pretty(&device_signed(&topic(Kind::Telemetry), &telemetry)),
        },
        Example {
            title: "cmd: sleep",
            topic: topic(Kind::Cmd),
            retained: false,
            json: signed(Action::Sleep, 42),
        },
        Example {
            title: "cmd: wake",
            topic: topic(Kind::Cmd),
            retained: false,
            json: signed(Action::Wake, 43),
        },
        Example {
            title: "cmd: set_power_target",
            topic: topic(Kind::Cmd),
            retained: false,
            json: signed(Action::SetPowerTarget { watts: 2_400.0 }, 44),
        },
        Example {
            title: "cmd: set_mode",
            topic: topic(Kind::Cmd),
            retained: false,
            json: signed(
                Action::SetMode {
                    mode: TuneMode::Efficiency,
                },
                45,
            ),
        },
        Example {
            title: "cmd: set_frequency (expert)",
            topic: topic(Kind::Cmd),
            retained: false,
            json: signed(Action::SetFrequency { mhz: 485.0 }, 46),
        },
        Example {
            title: "cmd: set_voltage (expert)",
            topic: topic(Kind::Cmd),
            retained: false,
            json: signed(Action::SetVoltage { millivolts: 1_250 }, 47),
        },
        Example {
            title: "cmd: reboot",
            topic: topic(Kind::Cmd),
            retained: false,
            json: signed(Action::Reboot, 48),
        },
        Example {
            title: "cmd: identify",
            topic: topic(Kind::Cmd),
            retained: false,
            json: signed(Action::Identify, 49),
        },
        Example {
            title: "cmd: update (fetch a signed image and boot it on trial)",
            topic: topic(Kind::Cmd),
            retained: false,
            json: signed(
                Action::Update {
                    url: "http://10.20.0.5:8090/images/hashwarden-fw-0.4.2.img".into(),
                    sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
                        .into(),
                    version: crate::image::Version(0, 4, 2),
                },
                50,
            ),
        },
        Example {
            title: "ack: accepted",
            topic: topic(Kind::Ack),
            retained: false,
            json: pretty(&ack(AckStatus::Accepted, None)),
        },
        Example {
            title: "ack: applied",
            topic: topic(Kind::Ack),
            retained: false,
            json: pretty(&ack(AckStatus::Applied, None)),
        },
        Example {
            title: "ack: rejected",
            topic: topic(Kind::Ack),
            retained: false,
            json: pretty(&ack(
                AckStatus::Rejected,
                Some("replayed: sequence 42 was already used"),
            )),
        },
        Example {
            title: "ack: duplicate",
            topic: topic(Kind::Ack),
            retained: false,
            json: pretty(&ack(AckStatus::Duplicate, None)),
        },
        Example {
            title: "ack: failed",
            topic: topic(Kind::Ack),
            retained: false,
            json: pretty(&ack(
                AckStatus::Failed,
                Some("chain 1 did not come back up: expected 110 chips, 64 answered"),
            )),
        },
        Example {
            title: "agent presence (miners' failsafe watches it)",
            topic: topic::agent_status(&site),
            retained: true,
            json: crate::messages::ONLINE.into(),
        },
        Example {
            title: "grid (site power cap)",
            topic: topic::grid(&site),
            retained: false,
            json: pretty(&GridSignal {
                v: VERSION,
                at: 1_767_225_600,
                cap_kw: Some(1_800.0),
                until: Some(1_767_229_200),
                from: None,
            }),
        },
        Example {
            title: "grid (demand response with 30 minutes' notice)",
            topic: topic::grid(&site),
            retained: false,
            json: pretty(&GridSignal {
                v: VERSION,
                at: 1_767_225_600,
                cap_kw: Some(1_200.0),
                until: Some(1_767_238_800),
                from: Some(1_767_227_400),
            }),
        },
        Example {
            title: "market (the network's figures; or `hashprice_usd_per_ph_day` alone)",
            topic: topic::market(&site),
            retained: true,
            json: pretty(&Market {
                v: VERSION,
                at: 1_771_891_200,
                hashprice_usd_per_ph_day: None,
                difficulty: Some(144.5e12),
                height: Some(935_000),
                fees_per_block_btc: Some(0.02),
                btc_usd: Some(63_000.0),
            }),
        },
        Example {
            title: "power (the site's real-time power price, $/kWh)",
            topic: topic::power(&site),
            retained: true,
            json: pretty(&PowerPrice {
                v: VERSION,
                at: 1_771_891_200,
                usd_per_kwh: 0.043,
            }),
        },
        Example {
            title: "power, as the agent takes it: the reading above signed by a feed key (`hashwarden feed power`)",
            topic: topic::power(&site),
            retained: true,
            json: signed_power(&site),
        },
        Example {
            title: "maestro/target (demand response)",
            topic: topic::MAESTRO_TARGET.into(),
            retained: false,
            json: pretty(&MaestroTarget {
                target: 0,
                timestamp: 1_767_225_600,
            }),
        },
    ]
}

/// A miner's report in its envelope, signed by the documentation's key as a device key.
fn device_signed(topic: &str, report: &impl serde::Serialize) -> crate::report::SignedReport {
    let device = crate::report::DeviceSigner::from_seed(&EXAMPLE_SEED);
    let payload = serde_json::to_string(report).unwrap_or_else(|e| unreachable!("{e}"));
    device.sign(topic, payload)
}

/// The power example in a feed's envelope, signed by the documentation's key.
fn signed_power(site: &Name) -> String {
    let reading = PowerPrice {
        v: VERSION,
        at: 1_771_891_200,
        usd_per_kwh: 0.043,
    };
    let feed = crate::feed::Feed::new(
        site.clone(),
        crate::feed::FeedKind::Power,
        1_771_891_200,
        3_600,
        1_771_891_200_000,
        serde_json::to_value(reading).unwrap_or_default(),
    );
    match feed.sign(&crate::CommandSigner::from_seed("prices", &EXAMPLE_SEED)) {
        Ok(signed) => pretty(&signed),
        Err(e) => format!("<{e}>"),
    }
}

/// The first example's payload on a topic ending in `suffix` (`"/state"`, `"/telemetry"`, …):
/// documented messages for other crates' tests.
pub fn payload(suffix: &str) -> Option<Vec<u8>> {
    all()
        .into_iter()
        .find(|e| e.topic.ends_with(suffix))
        .map(|e| e.json.into_bytes())
}

/// The examples rendered as Markdown, as they appear in `docs/mqtt.md`.
pub fn markdown() -> String {
    let mut out = String::new();
    for example in all() {
        let retained = if example.retained { ", retained" } else { "" };
        let fence = if example.json.starts_with('{') {
            "json"
        } else {
            "text"
        };
        out.push_str(&format!(
            "### {}\n\n`{}`{retained}\n\n```{fence}\n{}\n```\n\n",
            example.title, example.topic, example.json
        ));
    }
    out
}
