use fleet_proto::examples;
use fleet_proto::messages::State;
use fleet_proto::{Ack, AckStatus, Action, Kind, Name};
use proptest::prelude::*;

use super::*;
use crate::fleet::FleetView;

const NOW: u64 = 1_767_225_600;
const BOARD: &str = "bm1397-hashboard-12";
const OLD: Version = Version(0, 1, 0);
const NEW: Version = Version(0, 9, 0);

fn site() -> Name {
    Name::new("tx-west").expect("valid")
}

fn image() -> Image {
    Image {
        version: NEW,
        sha256: "ab".repeat(32),
        boards: vec![BOARD.into()],
        url: "http://10.20.0.5:9100/images/abab.img".into(),
    }
}

fn staging() -> Staging {
    Staging {
        canary: 1,
        batch: 3,
        max_offline: 2,
        max_failure_rate: 0.25,
        deadline_s: 300,
        settle_s: 30,
        ack_timeout_s: 10,
        max_attempts: 3,
        offline_grace_s: 60,
        command_ttl_s: 120,
    }
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("m{i}")).collect()
}

/// `miner` says it is online and runs `version` on `board`, as of `at`.
fn report(fleet: &mut FleetView, miner: &str, version: Version, board: &str, at: u64) {
    let mut state: State =
        serde_json::from_slice(&examples::payload("/state").expect("example")).expect("parses");
    state.firmware = format!("hashwarden-fw {version}");
    state.nameplate.model = board.into();
    state.at = at;
    fleet
        .ingest(miner, Kind::Status, b"online", at)
        .expect("status");
    fleet
        .ingest(
            miner,
            Kind::State,
            &serde_json::to_vec(&state).expect("encodes"),
            at,
        )
        .expect("state");
}

fn offline(fleet: &mut FleetView, miner: &str, at: u64) {
    fleet
        .ingest(miner, Kind::Status, b"offline", at)
        .expect("status");
}

fn fleet_of(miners: &[String]) -> FleetView {
    let mut fleet = FleetView::default();
    for miner in miners {
        report(&mut fleet, miner, OLD, BOARD, NOW);
    }
    fleet
}

fn ack(miner: &str, id: &str, status: AckStatus, reason: Option<&str>) -> Ack {
    Ack {
        v: 1,
        id: Some(id.into()),
        miner: Name::new(miner).expect("valid"),
        status,
        reason: reason.map(str::to_string),
        at: NOW,
    }
}

fn step(rollout: &Rollout, miner: &str) -> Step {
    rollout
        .targets
        .iter()
        .find(|t| t.miner == miner)
        .map(|t| t.step.clone())
        .expect("a target")
}

/// Carries `command`'s miner through: applied, back as the new version, settled.
fn succeed(rollout: &mut Rollout, fleet: &mut FleetView, command: &Command, at: u64) {
    let miner = command.miner.as_str();
    rollout.on_ack(
        miner,
        &ack(miner, &command.id, AckStatus::Applied, None),
        at,
    );
    report(fleet, miner, NEW, BOARD, at + 5);
}

#[test]
fn the_canary_goes_alone_and_the_rest_follow_in_waves_within_max_offline() {
    let miners = names(6);
    let mut fleet = fleet_of(&miners);
    let mut rollout = Rollout::new(image(), staging(), &miners);
    let mut seq = 500;
    let (sent, _) = rollout.tick(NOW, &fleet, &site(), &mut seq);
    assert_eq!(sent.len(), 1, "the canary alone");
    let canary = &sent[0];
    assert_eq!(canary.miner.as_str(), "m0");
    assert_eq!((canary.seq, canary.id.as_str()), (500, "fw-500"));
    assert_eq!(
        canary.action,
        Action::Update {
            url: image().url,
            sha256: image().sha256,
            version: NEW
        }
    );
    assert_eq!(canary.expires_at, NOW + 120);
    // While the canary has not settled, nobody else is touched.
    succeed(&mut rollout, &mut fleet, canary, NOW + 1);
    for t in [NOW + 6, NOW + 20, NOW + 35] {
        let (sent, _) = rollout.tick(t, &fleet, &site(), &mut seq);
        assert!(sent.is_empty(), "at +{}", t - NOW);
    }
    assert_eq!(step(&rollout, "m0"), Step::Settling { since: NOW + 6 });
    let (sent, moved) = rollout.tick(NOW + 36, &fleet, &site(), &mut seq);
    assert_eq!(step(&rollout, "m0"), Step::Updated { at: NOW + 36 });
    assert!(moved.iter().any(|m| m.miner == "m0"));
    // Wave 1 is three miners, but only two may be down at once.
    let miners_sent: Vec<&str> = sent.iter().map(|c| c.miner.as_str()).collect();
    assert_eq!(miners_sent, ["m1", "m2"]);
    assert_eq!(
        sent.iter().map(|c| c.seq).collect::<Vec<_>>(),
        [501, 502],
        "one counter, strictly increasing"
    );
    succeed(&mut rollout, &mut fleet, &sent[0], NOW + 37);
    rollout.on_ack(
        "m2",
        &ack("m2", &sent[1].id, AckStatus::Accepted, None),
        NOW + 37,
    );
    let (sent, _) = rollout.tick(NOW + 43, &fleet, &site(), &mut seq);
    assert!(
        sent.is_empty(),
        "m1 settling and m2 installing fill the room"
    );
    report(&mut fleet, "m3", OLD, BOARD, NOW + 79);
    let (sent, _) = rollout.tick(NOW + 80, &fleet, &site(), &mut seq);
    let miners_sent: Vec<&str> = sent.iter().map(|c| c.miner.as_str()).collect();
    assert_eq!(miners_sent, ["m3"], "the wave's third, in m1's place");
    assert_eq!(rollout.tally().updated, 2);
    assert!(!rollout.finished());
}

#[test]
fn a_failed_canary_halts_the_rollout_with_nobody_else_touched() {
    let miners = names(4);
    let fleet = fleet_of(&miners);
    let mut rollout = Rollout::new(image(), staging(), &miners);
    let mut seq = 1;
    let (sent, _) = rollout.tick(NOW, &fleet, &site(), &mut seq);
    let moved = rollout.on_ack(
        "m0",
        &ack(
            "m0",
            &sent[0].id,
            AckStatus::Failed,
            Some("refused: payload hash mismatch"),
        ),
        NOW + 3,
    );
    assert_eq!(
        moved.map(|m| m.step),
        Some(Step::Failed {
            reason: "refused: payload hash mismatch".into()
        })
    );
    assert_eq!(rollout.halted.as_deref(), Some("a canary failed"));
    for t in [NOW + 4, NOW + 100, NOW + 1_000] {
        assert!(rollout.tick(t, &fleet, &site(), &mut seq).0.is_empty());
    }
    assert!(rollout.finished());
    assert_eq!(rollout.tally().waiting, 3);
}

#[test]
fn failures_past_the_threshold_stop_new_waves_but_let_the_running_ones_finish() {
    let miners = names(8);
    let mut fleet = fleet_of(&miners);
    let mut staging = staging();
    staging.max_offline = 3;
    let mut rollout = Rollout::new(image(), staging, &miners);
    let mut seq = 1;
    let (sent, _) = rollout.tick(NOW, &fleet, &site(), &mut seq);
    succeed(&mut rollout, &mut fleet, &sent[0], NOW);
    rollout.tick(NOW + 5, &fleet, &site(), &mut seq);
    let (wave, _) = rollout.tick(NOW + 40, &fleet, &site(), &mut seq);
    assert_eq!(wave.len(), 3);
    // Two refuse (the first already makes it 1 of 2 finished: over 25 %), the third is still
    // installing.
    for command in &wave[..2] {
        let miner = command.miner.as_str();
        rollout.on_ack(
            miner,
            &ack(miner, &command.id, AckStatus::Failed, Some("no space")),
            NOW + 41,
        );
    }
    assert!(
        rollout
            .halted
            .as_deref()
            .is_some_and(|h| h.contains("1 of 2 failed, over the 25 % allowed")),
        "{:?}",
        rollout.halted
    );
    let third = &wave[2];
    rollout.on_ack(
        third.miner.as_str(),
        &ack(third.miner.as_str(), &third.id, AckStatus::Applied, None),
        NOW + 42,
    );
    assert!(!rollout.finished(), "one still in flight");
    report(&mut fleet, third.miner.as_str(), NEW, BOARD, NOW + 50);
    for t in [NOW + 50, NOW + 81] {
        assert!(rollout.tick(t, &fleet, &site(), &mut seq).0.is_empty());
    }
    assert_eq!(
        step(&rollout, third.miner.as_str()),
        Step::Updated { at: NOW + 81 }
    );
    assert!(rollout.finished());
    let tally = rollout.tally();
    assert_eq!((tally.updated, tally.failed, tally.waiting), (2, 2, 4));
}

#[test]
fn a_build_the_board_rolls_back_fails_whether_it_reported_first_or_not() {
    let miners = names(2);
    let mut fleet = fleet_of(&miners);
    let mut staging = staging();
    staging.canary = 2;
    let mut rollout = Rollout::new(image(), staging, &miners);
    let mut seq = 1;
    let (sent, _) = rollout.tick(NOW, &fleet, &site(), &mut seq);
    assert_eq!(sent.len(), 2);
    for command in &sent {
        let miner = command.miner.as_str();
        rollout.on_ack(
            miner,
            &ack(miner, &command.id, AckStatus::Applied, None),
            NOW + 1,
        );
    }
    // m0 comes back as the new build, which then dies: the supervisor restores the old one.
    report(&mut fleet, "m0", NEW, BOARD, NOW + 10);
    rollout.tick(NOW + 10, &fleet, &site(), &mut seq);
    report(&mut fleet, "m0", OLD, BOARD, NOW + 20);
    rollout.tick(NOW + 20, &fleet, &site(), &mut seq);
    assert!(
        matches!(step(&rollout, "m0"), Step::Failed { reason } if reason.contains("then ran 0.1.0 (rolled back)"))
    );
    // m1's new build never reports; it is back on the old one when the deadline passes.
    report(&mut fleet, "m1", OLD, BOARD, NOW + 200);
    rollout.tick(NOW + 200, &fleet, &site(), &mut seq);
    assert!(matches!(step(&rollout, "m1"), Step::Installing { .. }));
    report(&mut fleet, "m1", OLD, BOARD, NOW + 300);
    rollout.tick(NOW + 301, &fleet, &site(), &mut seq);
    assert!(
        matches!(step(&rollout, "m1"), Step::Failed { reason } if reason.contains("running 0.1.0 after 300 s (rolled back)")),
        "{:?}",
        step(&rollout, "m1")
    );
}

#[test]
fn a_new_build_that_goes_offline_while_settling_has_failed() {
    let miners = names(1);
    let mut fleet = fleet_of(&miners);
    let mut rollout = Rollout::new(image(), staging(), &miners);
    let mut seq = 1;
    let (sent, _) = rollout.tick(NOW, &fleet, &site(), &mut seq);
    succeed(&mut rollout, &mut fleet, &sent[0], NOW);
    rollout.tick(NOW + 5, &fleet, &site(), &mut seq);
    offline(&mut fleet, "m0", NOW + 9);
    rollout.tick(NOW + 10, &fleet, &site(), &mut seq);
    assert_eq!(
        step(&rollout, "m0"),
        Step::Failed {
            reason: "came back as 0.9.0, then went offline".into()
        }
    );
}

#[test]
fn miners_already_there_or_on_other_boards_get_no_command() {
    let miners = names(3);
    let mut fleet = fleet_of(&miners);
    report(&mut fleet, "m0", NEW, BOARD, NOW);
    report(&mut fleet, "m1", OLD, "bitaxe-max", NOW);
    let mut rollout = Rollout::new(image(), staging(), &miners);
    let mut seq = 1;
    let (sent, _) = rollout.tick(NOW, &fleet, &site(), &mut seq);
    assert_eq!(step(&rollout, "m0"), Step::AlreadyThere);
    assert!(
        matches!(step(&rollout, "m1"), Step::Skipped { reason } if reason.contains("bitaxe-max"))
    );
    let sent: Vec<&str> = sent.iter().map(|c| c.miner.as_str()).collect();
    assert_eq!(sent, ["m2"], "the canary is the first miner that needs it");
}

#[test]
fn the_ack_lost_in_the_restart_does_not_matter_when_the_new_version_reports() {
    let miners = names(1);
    let mut fleet = fleet_of(&miners);
    let mut rollout = Rollout::new(image(), staging(), &miners);
    let mut seq = 1;
    rollout.tick(NOW, &fleet, &site(), &mut seq);
    report(&mut fleet, "m0", NEW, BOARD, NOW + 8);
    let (sent, _) = rollout.tick(NOW + 12, &fleet, &site(), &mut seq);
    assert!(
        sent.is_empty(),
        "no resend to a miner already on the new build"
    );
    assert_eq!(step(&rollout, "m0"), Step::Settling { since: NOW + 12 });
}

#[test]
fn an_unacknowledged_command_is_resent_then_given_up_but_an_accepted_one_is_waited_for() {
    let miners = names(2);
    let fleet = fleet_of(&miners);
    let mut staging = staging();
    staging.canary = 2;
    let mut rollout = Rollout::new(image(), staging, &miners);
    let mut seq = 10;
    let (sent, _) = rollout.tick(NOW, &fleet, &site(), &mut seq);
    // m1 accepts (the download takes its time); m0 never answers.
    rollout.on_ack(
        "m1",
        &ack("m1", &sent[1].id, AckStatus::Accepted, None),
        NOW + 1,
    );
    let (resent, _) = rollout.tick(NOW + 10, &fleet, &site(), &mut seq);
    assert_eq!(resent.len(), 1);
    assert_eq!((resent[0].miner.as_str(), resent[0].seq), ("m0", 12));
    let (resent, _) = rollout.tick(NOW + 20, &fleet, &site(), &mut seq);
    assert_eq!(resent.len(), 1, "third send");
    let (resent, _) = rollout.tick(NOW + 30, &fleet, &site(), &mut seq);
    assert!(resent.is_empty());
    assert_eq!(
        step(&rollout, "m0"),
        Step::Failed {
            reason: "unresponsive: no ack after 3 sends".into()
        }
    );
    assert!(matches!(
        step(&rollout, "m1"),
        Step::Sent { accepted: true, .. }
    ));
    rollout.tick(NOW + 300, &fleet, &site(), &mut seq);
    assert!(
        matches!(step(&rollout, "m1"), Step::Failed { reason } if reason.contains("not installed within 300 s"))
    );
}

#[test]
fn acks_for_other_commands_change_nothing() {
    let miners = names(1);
    let fleet = fleet_of(&miners);
    let mut rollout = Rollout::new(image(), staging(), &miners);
    let mut seq = 1;
    rollout.tick(NOW, &fleet, &site(), &mut seq);
    let before = rollout.clone();
    assert!(
        rollout
            .on_ack("m0", &ack("m0", "hw-77", AckStatus::Failed, None), NOW)
            .is_none()
    );
    assert!(
        rollout
            .on_ack("m9", &ack("m9", "fw-1", AckStatus::Failed, None), NOW)
            .is_none()
    );
    assert_eq!(rollout, before);
}

#[test]
fn miners_offline_all_along_are_left_out_after_the_grace_and_the_rollout_ends() {
    let miners = names(3);
    let mut fleet = fleet_of(&miners[..1]);
    let mut rollout = Rollout::new(image(), staging(), &miners);
    let mut seq = 1;
    let (sent, _) = rollout.tick(NOW, &fleet, &site(), &mut seq);
    succeed(&mut rollout, &mut fleet, &sent[0], NOW);
    rollout.tick(NOW + 5, &fleet, &site(), &mut seq);
    rollout.tick(NOW + 40, &fleet, &site(), &mut seq);
    assert!(!rollout.finished(), "m1 and m2 may yet appear");
    rollout.tick(NOW + 99, &fleet, &site(), &mut seq);
    assert!(!rollout.finished());
    let (_, moved) = rollout.tick(NOW + 100, &fleet, &site(), &mut seq);
    assert_eq!(moved.len(), 2);
    assert!(rollout.finished());
    assert_eq!(rollout.tally().skipped, 2);
}

#[test]
fn a_rollout_survives_its_json_round_trip_as_the_store_keeps_it() {
    let miners = names(3);
    let fleet = fleet_of(&miners);
    let mut rollout = Rollout::new(image(), staging(), &miners);
    rollout.tick(NOW, &fleet, &site(), &mut 1);
    let text = serde_json::to_string(&rollout).expect("encodes");
    let back: Rollout = serde_json::from_str(&text).expect("decodes");
    assert_eq!(back, rollout);
}

/// How a simulated miner answers its update.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    Good,
    Refuses,
    RollsBack,
    Silent,
}

fn behaviour() -> impl Strategy<Value = Behaviour> {
    prop_oneof![
        6 => Just(Behaviour::Good),
        1 => Just(Behaviour::Refuses),
        1 => Just(Behaviour::RollsBack),
        1 => Just(Behaviour::Silent),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// Whatever the miners do: never more than `max_offline` updating at once, nobody past the
    /// canary before it has ended, no new miner once halted, one strictly increasing sequence
    /// counter, and it always ends.
    #[test]
    fn staging_holds_whatever_the_miners_do(
        behaviours in proptest::collection::vec(behaviour(), 1..25),
        canary in 1usize..4,
        batch in 1usize..6,
        max_offline in 1usize..5,
        rate in 0.0f64..0.6,
    ) {
        let miners = names(behaviours.len());
        let mut fleet = fleet_of(&miners);
        let staging = Staging {
            canary,
            batch,
            max_offline,
            max_failure_rate: rate,
            // Short, so a case is a few hundred rounds at most.
            deadline_s: 60,
            settle_s: 14,
            ..staging()
        };
        let mut rollout = Rollout::new(image(), staging, &miners);
        let mut seq = 1;
        let mut last_seq = 0;
        let mut started: std::collections::BTreeSet<String> = Default::default();
        let mut pending: Vec<(Command, u64)> = Vec::new();
        let mut now = NOW;
        while !rollout.finished() {
            prop_assert!(now < NOW + 100_000, "never ended");
            let (sent, _) = rollout.tick(now, &fleet, &site(), &mut seq);
            // Steps only move forward, and an ended one stays ended: what holds after the round
            // held when it started its miners.
            let canary_ended = rollout
                .targets
                .iter()
                .filter(|t| t.wave == Some(0))
                .all(|t| t.step.is_final());
            let halted = rollout.halted.is_some();
            for command in sent {
                prop_assert!(command.seq > last_seq);
                last_seq = command.seq;
                let miner = command.miner.as_str().to_string();
                if started.insert(miner.clone()) {
                    prop_assert!(!halted, "{miner} started after the halt");
                    let wave = rollout.targets.iter().find(|t| t.miner == miner).and_then(|t| t.wave);
                    prop_assert!(wave == Some(0) || canary_ended, "{miner} before the canary ended");
                }
                pending.push((command, now));
            }
            let in_flight = rollout.targets.iter().filter(|t| t.step.in_flight()).count();
            prop_assert!(in_flight <= max_offline, "{in_flight} updating at once");
            // Each miner answers a few seconds after its command.
            let (due, later): (Vec<_>, Vec<_>) =
                pending.drain(..).partition(|(_, at)| now >= at + 3);
            pending = later;
            for (command, _) in due {
                let miner = command.miner.as_str();
                let index: usize = miner[1..].parse().expect("m<n>");
                match behaviours[index] {
                    Behaviour::Good => succeed(&mut rollout, &mut fleet, &command, now),
                    Behaviour::Refuses => {
                        rollout.on_ack(miner, &ack(miner, &command.id, AckStatus::Failed, Some("no")), now);
                    }
                    Behaviour::RollsBack => {
                        rollout.on_ack(miner, &ack(miner, &command.id, AckStatus::Applied, None), now);
                        report(&mut fleet, miner, OLD, BOARD, now + 1);
                    }
                    Behaviour::Silent => {}
                }
            }
            // The fleet keeps reporting, so nobody goes silent but the ones that crash.
            now += 7;
            for miner in &miners {
                fleet.ingest(miner, Kind::Status, b"online", now).expect("status");
            }
        }
        let tally = rollout.tally();
        prop_assert_eq!(tally.in_flight, 0);
        let good = behaviours.iter().filter(|b| matches!(b, Behaviour::Good)).count();
        prop_assert!(tally.updated <= good);
        if rollout.halted.is_none() {
            prop_assert_eq!(tally.waiting, 0);
            prop_assert_eq!(tally.updated, good);
        }
    }
}

#[test]
fn a_miner_named_twice_is_updated_once_in_the_order_first_given() {
    let miners: Vec<String> = ["m2", "m1", "m2", "m0", "m1"]
        .iter()
        .map(|m| m.to_string())
        .collect();
    let rollout = Rollout::new(image(), staging(), &miners);
    let order: Vec<&str> = rollout.targets.iter().map(|t| t.miner.as_str()).collect();
    assert_eq!(order, ["m2", "m1", "m0"]);
}
