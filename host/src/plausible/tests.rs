use fleet_proto::examples;

use super::*;

fn example<T: serde::de::DeserializeOwned>(suffix: &str) -> T {
    serde_json::from_slice(&examples::payload(suffix).expect("documented")).expect("parses")
}

#[test]
fn the_documented_reports_are_plausible_at_their_time_and_a_little_before() {
    let t: Telemetry = example("/telemetry");
    let s: State = example("/state");
    for now in [t.at, t.at - AHEAD_S, t.at + 3_600] {
        assert_eq!(telemetry(&t, now), Ok(()));
    }
    assert_eq!(state(&s, s.at), Ok(()));
    // One second more than the skew allowed is from the future.
    assert_eq!(
        telemetry(&t, t.at - AHEAD_S - 1),
        Err(Implausible::FromTheFuture {
            at: t.at,
            ahead: AHEAD_S + 1
        })
    );
    // A retained state a billion seconds ahead (the forged "asleep" that outranked the miner).
    let mut forged = s.clone();
    forged.at = s.at + 1_000_000_000;
    assert!(matches!(
        state(&forged, s.at),
        Err(Implausible::FromTheFuture { .. })
    ));
}

#[test]
fn absurd_figures_are_refused_naming_the_field() {
    let base: Telemetry = example("/telemetry");
    let now = base.at;
    type Spoil = Box<dyn Fn(&mut Telemetry)>;
    let cases: Vec<(&str, Spoil)> = vec![
        ("power_w", Box::new(|t| t.power_w = 1e300)),
        ("power_w", Box::new(|t| t.power_w = -1e300)),
        ("power_w", Box::new(|t| t.power_w = f64::NAN)),
        (
            "hashrate_ths.m1",
            Box::new(|t| t.hashrate_ths.m1 = f64::INFINITY),
        ),
        ("hashrate_ths.s5", Box::new(|t| t.hashrate_ths.s5 = -0.1)),
        (
            "efficiency_j_per_th",
            Box::new(|t| t.efficiency_j_per_th = Some(-1.0)),
        ),
        ("board_temp_c", Box::new(|t| t.board_temp_c = Some(1e9))),
        ("hw_error_rate", Box::new(|t| t.hw_error_rate = 2.0)),
        ("fans.percent", Box::new(|t| t.fans[0].percent = 101.0)),
        (
            "chains.hashrate_ths",
            Box::new(|t| t.chains[0].hashrate_ths = f64::NAN),
        ),
    ];
    for (field, spoil) in cases {
        let mut t = base.clone();
        spoil(&mut t);
        match telemetry(&t, now) {
            Err(Implausible::OutOfRange { field: named, .. }) => assert_eq!(named, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let mut many = base.clone();
    many.fans = vec![many.fans[0]; 5_000];
    assert_eq!(
        telemetry(&many, now),
        Err(Implausible::TooMany {
            field: "fans",
            count: 5_000
        })
    );
}

#[test]
fn an_absurd_nameplate_or_target_is_refused() {
    let base: State = example("/state");
    for (field, spoil) in [
        (
            "nameplate.hashrate_ths",
            (|s: &mut State| s.nameplate.hashrate_ths = 1e300) as fn(&mut State),
        ),
        ("nameplate.power_w", |s: &mut State| {
            s.nameplate.power_w = -5.0
        }),
        ("power_target_w", |s: &mut State| {
            s.power_target_w = Some(0.0)
        }),
        ("curve.power_w", |s: &mut State| {
            s.curve.push(fleet_proto::messages::CurvePoint {
                core_mv: 1300,
                hashrate_ths: 100.0,
                power_w: f64::INFINITY,
            })
        }),
    ] {
        let mut s = base.clone();
        spoil(&mut s);
        match state(&s, base.at) {
            Err(Implausible::OutOfRange { field: named, .. }) => assert_eq!(named, field),
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn text_from_a_miner_is_made_safe_to_print() {
    assert_eq!(printable("hashwarden-fw 0.4.2"), "hashwarden-fw 0.4.2");
    // A right-to-left override would show "no regulator" backwards-spliced; a newline and an
    // escape would forge log lines or recolour the terminal.
    assert_eq!(
        printable("ok\u{202E}rotaluger on\n\u{1b}[31m"),
        "ok?rotaluger on??[31m"
    );
    let long = "x".repeat(MAX_TEXT_CHARS + 10);
    let cut = printable(&long);
    assert_eq!(cut.chars().count(), MAX_TEXT_CHARS + 1);
    assert!(cut.ends_with('…'));
}
