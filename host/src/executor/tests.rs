use fleet_proto::examples;
use fleet_proto::{Ack, AckStatus, Action, Kind, Mode, Name, Telemetry};

use super::*;
use crate::fleet::FleetView;

const NOW: u64 = 1_767_225_600;
const FULL: Watts = Watts(3_031.0);

fn site() -> Name {
    Name::new("tx-west").expect("valid")
}

fn example(suffix: &str) -> Vec<u8> {
    examples::payload(suffix).expect("a documented example")
}

/// A fleet of one miner, online, mining at full power.
fn fleet() -> FleetView {
    let mut fleet = FleetView::default();
    fleet
        .ingest("m1", Kind::Status, b"online", NOW)
        .expect("status");
    fleet
        .ingest("m1", Kind::State, &example("/state"), NOW)
        .expect("state");
    telemetry(&mut fleet, Mode::Mining, 3_031.0, NOW);
    fleet
}

fn telemetry(fleet: &mut FleetView, mode: Mode, power_w: f64, at: u64) {
    let mut t: Telemetry = serde_json::from_slice(&example("/telemetry")).expect("parses");
    t.mode = mode;
    t.power_w = power_w;
    t.at = at;
    fleet
        .ingest(
            "m1",
            Kind::Telemetry,
            &serde_json::to_vec(&t).expect("encodes"),
            at,
        )
        .expect("telemetry");
}

fn ack(id: &str, status: AckStatus) -> Ack {
    Ack {
        v: 1,
        id: Some(id.into()),
        miner: Name::new("m1").expect("valid"),
        status,
        reason: (status == AckStatus::Failed).then(|| "no regulator".into()),
        at: NOW,
    }
}

#[test]
fn a_sleep_is_sent_acked_and_verified_by_the_power_dropping() {
    let mut fleet = fleet();
    let mut executor = Executor::new(site(), ExecutorConfig::default(), 1_000);
    executor.want("m1", Setting::Full, Setting::Sleep, NOW, Some(FULL), FULL);
    let sent = executor.tick(NOW, &fleet);
    assert_eq!(sent.len(), 1);
    let command = &sent[0];
    assert_eq!(
        (command.action.clone(), command.seq),
        (Action::Sleep, 1_000)
    );
    assert_eq!(command.miner.as_str(), "m1");
    assert_eq!(command.expires_at, NOW + 60);
    // Nothing more goes out while it is in flight.
    assert!(executor.tick(NOW + 1, &fleet).is_empty());
    executor.on_ack("m1", &ack(&command.id, AckStatus::Accepted), NOW + 1);
    executor.on_ack("m1", &ack(&command.id, AckStatus::Applied), NOW + 2);
    assert_eq!(
        executor.op("m1").map(|o| &o.phase),
        Some(&Phase::Applied { at: NOW + 2 })
    );
    // Telemetry from before the ack proves nothing; a sleeping one at 20 W does.
    executor.tick(NOW + 3, &fleet);
    assert_eq!(
        executor.op("m1").map(|o| &o.phase),
        Some(&Phase::Applied { at: NOW + 2 })
    );
    telemetry(&mut fleet, Mode::Sleeping, 20.0, NOW + 5);
    executor.tick(NOW + 5, &fleet);
    assert_eq!(
        executor.op("m1").map(|o| &o.phase),
        Some(&Phase::Verified { at: NOW + 5 })
    );
    assert_eq!(executor.last_switch("m1"), Some((NOW + 5, false)));
    // Asking again for what is done sends nothing.
    executor.want(
        "m1",
        Setting::Full,
        Setting::Sleep,
        NOW + 6,
        Some(FULL),
        FULL,
    );
    assert!(executor.tick(NOW + 6, &fleet).is_empty());
}

#[test]
fn applied_but_still_drawing_power_is_a_failure_with_the_reading() {
    let mut fleet = fleet();
    let mut executor = Executor::new(site(), ExecutorConfig::default(), 1);
    executor.want("m1", Setting::Full, Setting::Sleep, NOW, Some(FULL), FULL);
    let id = executor.tick(NOW, &fleet)[0].id.clone();
    executor.on_ack("m1", &ack(&id, AckStatus::Applied), NOW + 1);
    telemetry(&mut fleet, Mode::Sleeping, 2_900.0, NOW + 30);
    executor.tick(NOW + 30, &fleet);
    assert!(matches!(
        executor.op("m1").map(|o| &o.phase),
        Some(Phase::Applied { .. })
    ));
    executor.tick(NOW + 121, &fleet);
    match executor.op("m1").map(|o| &o.phase) {
        Some(Phase::Failed { reason, .. }) => assert!(reason.contains("2900"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn no_ack_means_retries_with_backoff_then_unresponsive() {
    let fleet = fleet();
    let mut executor = Executor::new(site(), ExecutorConfig::default(), 1);
    executor.want("m1", Setting::Full, Setting::Sleep, NOW, Some(FULL), FULL);
    let mut sent_at = Vec::new();
    for t in NOW..NOW + 120 {
        for command in executor.tick(t, &fleet) {
            sent_at.push((t, command.seq));
        }
    }
    // Attempt 1 at 0; 2 after the 10 s ack timeout; 3 after 10 s + 5 s backoff.
    assert_eq!(
        sent_at,
        [(NOW, 1), (NOW + 10, 2), (NOW + 25, 3)],
        "each retry is a new command with a higher sequence number"
    );
    assert_eq!(
        executor.op("m1").map(|o| &o.phase),
        Some(&Phase::Unresponsive {
            attempts: 3,
            at: NOW + 45
        }),
        "unresponsive once the third attempt's ack timeout and backoff have run out"
    );
}

#[test]
fn an_unanswered_change_is_held_then_sent_again_when_its_retry_time_comes() {
    let mut fleet = fleet();
    let config = ExecutorConfig::default();
    let mut executor = Executor::new(site(), config, 1);
    executor.want("m1", Setting::Full, Setting::Sleep, NOW, Some(FULL), FULL);
    for t in NOW..NOW + 60 {
        executor.tick(t, &fleet);
    }
    let until = NOW + 45 + config.retry_after_s;
    assert_eq!(executor.not_carried_out("m1"), Some(until));
    // The same target asked for before then changes nothing.
    executor.want(
        "m1",
        Setting::Full,
        Setting::Sleep,
        until - 1,
        Some(FULL),
        FULL,
    );
    assert!(executor.tick(until - 1, &fleet).is_empty());
    assert_eq!(executor.not_carried_out("m1"), Some(until));
    // At the retry time (the miner still reporting, still mining) it is a new change, sent at
    // once.
    telemetry(&mut fleet, Mode::Mining, 3_031.0, until);
    executor.want("m1", Setting::Full, Setting::Sleep, until, Some(FULL), FULL);
    assert_eq!(executor.not_carried_out("m1"), None);
    let sent = executor.tick(until, &fleet);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].action, Action::Sleep);
    assert_eq!(
        sent[0].seq, 4,
        "numbered above the three unanswered attempts"
    );
}

#[test]
fn an_offline_miner_gets_its_target_when_it_returns() {
    let mut fleet = fleet();
    fleet
        .ingest("m1", Kind::Status, b"offline", NOW)
        .expect("status");
    let mut executor = Executor::new(site(), ExecutorConfig::default(), 1);
    executor.want("m1", Setting::Full, Setting::Sleep, NOW, Some(FULL), FULL);
    assert!(executor.tick(NOW + 1, &fleet).is_empty());
    fleet
        .ingest("m1", Kind::Status, b"online", NOW + 300)
        .expect("status");
    let sent = executor.tick(NOW + 300, &fleet);
    assert_eq!(sent.len(), 1);
}

#[test]
fn what_is_already_in_effect_is_not_sent_again() {
    // A restarted host re-derives "sleep" for a miner that already sleeps.
    let mut fleet = fleet();
    telemetry(&mut fleet, Mode::Sleeping, 15.0, NOW + 1);
    let mut executor = Executor::new(site(), ExecutorConfig::default(), 1);
    executor.want("m1", Setting::Sleep, Setting::Sleep, NOW, Some(FULL), FULL);
    executor.want("m1", Setting::Full, Setting::Sleep, NOW, Some(FULL), FULL);
    assert!(executor.tick(NOW + 2, &fleet).is_empty());
    executor.tick(NOW + 3, &fleet);
    assert!(matches!(
        executor.op("m1").map(|o| &o.phase),
        Some(Phase::Verified { .. })
    ));
}

#[test]
fn a_change_that_replaces_one_in_flight_is_sent_even_if_it_looks_in_effect() {
    // A sleep goes out; before the miner shows it, the price recovers and the plan wants it at
    // full again. The miner still looks "full", but the sleep may yet be carried out: the wake
    // must go out regardless.
    let fleet = fleet();
    let mut executor = Executor::new(site(), ExecutorConfig::default(), 1);
    executor.want("m1", Setting::Full, Setting::Sleep, NOW, Some(FULL), FULL);
    let sleep = executor.tick(NOW, &fleet);
    executor.on_ack("m1", &ack(&sleep[0].id, AckStatus::Applied), NOW + 1);
    executor.want(
        "m1",
        Setting::Sleep,
        Setting::Full,
        NOW + 1,
        Some(FULL),
        FULL,
    );
    let wake = executor.tick(NOW + 1, &fleet);
    assert_eq!(wake.len(), 1, "{:?}", executor.op("m1"));
    assert!(matches!(
        wake[0].action,
        Action::Wake | Action::SetPowerTarget { .. }
    ));
}

#[test]
fn a_power_target_from_asleep_is_set_before_the_wake_and_a_failure_is_kept() {
    let mut fleet = fleet();
    telemetry(&mut fleet, Mode::Sleeping, 15.0, NOW);
    let mut executor = Executor::new(site(), ExecutorConfig::default(), 1);
    let target = Setting::PowerTarget(Watts(2_000.0));
    executor.want("m1", Setting::Sleep, target, NOW, Some(Watts(15.0)), FULL);
    let first = executor.tick(NOW, &fleet);
    assert_eq!(first[0].action, Action::SetPowerTarget { watts: 2_000.0 });
    executor.on_ack("m1", &ack(&first[0].id, AckStatus::Applied), NOW + 1);
    let second = executor.tick(NOW + 1, &fleet);
    assert_eq!(second[0].action, Action::Wake);
    // An ack for another command id is not this one's.
    executor.on_ack("m1", &ack(&first[0].id, AckStatus::Failed), NOW + 2);
    assert!(matches!(
        executor.op("m1").map(|o| &o.phase),
        Some(Phase::Sent { .. })
    ));
    executor.on_ack("m1", &ack(&second[0].id, AckStatus::Failed), NOW + 2);
    match executor.op("m1").map(|o| &o.phase) {
        Some(Phase::Failed { reason, .. }) => assert!(reason.contains("no regulator"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // Not retried by itself.
    assert!(executor.tick(NOW + 100, &fleet).is_empty());
}

#[test]
fn the_steps_for_every_transition() {
    let pt = |w| Setting::PowerTarget(Watts(w));
    assert_eq!(steps(Setting::Full, Setting::Full, FULL), []);
    assert_eq!(steps(pt(1.0), Setting::Sleep, FULL), [Action::Sleep]);
    assert_eq!(steps(Setting::Sleep, Setting::Full, FULL), [Action::Wake]);
    assert_eq!(
        steps(pt(2_000.0), Setting::Full, FULL),
        [Action::SetPowerTarget { watts: 3_031.0 }]
    );
    assert_eq!(
        steps(Setting::Full, pt(2_000.0), FULL),
        [Action::SetPowerTarget { watts: 2_000.0 }]
    );
}

#[test]
fn a_name_that_cannot_be_a_topic_gets_no_op() {
    let fleet = fleet();
    let mut executor = Executor::new(site(), ExecutorConfig::default(), 1);
    executor.want("m1/../m2", Setting::Full, Setting::Sleep, NOW, None, FULL);
    executor.want("+", Setting::Full, Setting::Sleep, NOW, None, FULL);
    assert_eq!(executor.ops().count(), 0);
    assert!(executor.tick(NOW, &fleet).is_empty());
}

#[test]
fn a_late_applied_to_an_earlier_attempt_proves_the_step_and_a_late_refusal_does_not() {
    // An agent behind on its queue (or a congested broker) hears attempt 1's acks only after
    // its ack timeout sent attempt 2.
    let mut fleet = fleet();
    let mut executor = Executor::new(site(), ExecutorConfig::default(), 1);
    executor.want("m1", Setting::Full, Setting::Sleep, NOW, Some(FULL), FULL);
    let first = executor.tick(NOW, &fleet)[0].id.clone();
    let second = executor.tick(NOW + 10, &fleet)[0].id.clone();
    assert_ne!(first, second);
    // Attempt 1 expired on its way: refused, but attempt 2 is still out.
    executor.on_ack("m1", &ack(&first, AckStatus::Rejected), NOW + 11);
    assert!(
        matches!(executor.op("m1").map(|o| &o.phase), Some(Phase::Sent { id, .. }) if *id == second)
    );
    executor.on_ack("m1", &ack(&first, AckStatus::Applied), NOW + 12);
    assert_eq!(
        executor.op("m1").map(|o| &o.phase),
        Some(&Phase::Applied { at: NOW + 12 })
    );
    telemetry(&mut fleet, Mode::Sleeping, 20.0, NOW + 13);
    executor.tick(NOW + 13, &fleet);
    assert_eq!(
        executor.op("m1").map(|o| &o.phase),
        Some(&Phase::Verified { at: NOW + 13 })
    );
    // Attempt 2's ack, arriving after all that, changes nothing.
    executor.on_ack("m1", &ack(&second, AckStatus::Failed), NOW + 14);
    assert_eq!(
        executor.op("m1").map(|o| &o.phase),
        Some(&Phase::Verified { at: NOW + 13 })
    );
}

#[test]
fn a_change_given_up_as_unresponsive_comes_back_on_a_late_applied() {
    let mut fleet = fleet();
    let mut executor = Executor::new(site(), ExecutorConfig::default(), 1);
    executor.want("m1", Setting::Full, Setting::Sleep, NOW, Some(FULL), FULL);
    let mut ids = Vec::new();
    for t in NOW..NOW + 60 {
        ids.extend(executor.tick(t, &fleet).into_iter().map(|c| c.id));
    }
    assert!(matches!(
        executor.op("m1").map(|o| &o.phase),
        Some(Phase::Unresponsive { attempts: 3, .. })
    ));
    // A stranger's id proves nothing; attempt 2's `applied` does.
    executor.on_ack("m1", &ack("hw-999", AckStatus::Applied), NOW + 60);
    assert!(matches!(
        executor.op("m1").map(|o| &o.phase),
        Some(Phase::Unresponsive { .. })
    ));
    executor.on_ack("m1", &ack(&ids[1], AckStatus::Applied), NOW + 61);
    telemetry(&mut fleet, Mode::Sleeping, 20.0, NOW + 62);
    executor.tick(NOW + 62, &fleet);
    assert_eq!(
        executor.op("m1").map(|o| &o.phase),
        Some(&Phase::Verified { at: NOW + 62 })
    );
}

#[test]
fn a_verified_change_the_miner_drifts_off_is_sent_again() {
    let mut fleet = fleet();
    let mut executor = Executor::new(site(), ExecutorConfig::default(), 1);
    assert_eq!(
        executor.want("m1", Setting::Full, Setting::Sleep, NOW, Some(FULL), FULL),
        Wanted::New
    );
    let id = executor.tick(NOW, &fleet)[0].id.clone();
    executor.on_ack("m1", &ack(&id, AckStatus::Applied), NOW + 1);
    telemetry(&mut fleet, Mode::Sleeping, 20.0, NOW + 2);
    executor.tick(NOW + 2, &fleet);
    // Still asleep, as verified: the plan asking again changes nothing.
    assert_eq!(
        executor.want("m1", Setting::Sleep, Setting::Sleep, NOW + 3, None, FULL),
        Wanted::Unchanged
    );
    // Rebooted into mining by itself: the sleep goes again, a new command.
    telemetry(&mut fleet, Mode::Mining, 3_031.0, NOW + 60);
    assert_eq!(
        executor.want(
            "m1",
            Setting::Full,
            Setting::Sleep,
            NOW + 60,
            Some(FULL),
            FULL
        ),
        Wanted::Drifted
    );
    let again = executor.tick(NOW + 60, &fleet);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].action, Action::Sleep);
    assert_ne!(again[0].id, id);
    // While that is in flight, the plan's asking again is nothing new.
    assert_eq!(
        executor.want(
            "m1",
            Setting::Full,
            Setting::Sleep,
            NOW + 61,
            Some(FULL),
            FULL
        ),
        Wanted::Unchanged
    );
}

#[test]
fn a_power_target_reported_a_little_differently_is_no_drift() {
    let target = |w: f64| Setting::PowerTarget(Watts(w));
    assert!(
        !drifted(target(1_998.0), target(2_000.0), 0.1),
        "rounded or clamped"
    );
    assert!(
        drifted(target(1_500.0), target(2_000.0), 0.1),
        "another target"
    );
    assert!(drifted(Setting::Full, target(2_000.0), 0.1));
    assert!(drifted(Setting::Sleep, Setting::Full, 0.1));
    assert!(!drifted(Setting::Sleep, Setting::Sleep, 0.1));
}
