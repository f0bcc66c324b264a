use super::*;
use fleet_proto::examples;

const NOW: u64 = 1_771_900_000;

/// An agent for the tests of its logic: it takes unsigned readings (the feed gate has tests of
/// its own, and `unsigned_feeds_are_refused_unless_the_site_says_so` below).
fn agent(extra: &str) -> Agent {
    agent_with_feeds("[feeds]\naccept_unsigned = true\n", extra)
}

/// A miner's device key in these tests: one per name.
fn device(miner: &str) -> fleet_proto::report::DeviceSigner {
    let mut seed = [0x5a; 32];
    for (slot, byte) in seed.iter_mut().zip(miner.bytes()) {
        *slot = byte;
    }
    fleet_proto::report::DeviceSigner::from_seed(&seed)
}

/// `payload` arriving on `topic` at `at`, signed as a miner signs it when it is a miner's state,
/// telemetry or ack.
fn say(agent: &mut Agent, topic: &str, payload: &[u8], at: u64) {
    match MinerTopic::parse(topic) {
        Ok(t) if t.kind.signed_by_miner() => {
            let text = String::from_utf8_lossy(payload).into_owned();
            let wire =
                serde_json::to_vec(&device(t.miner.as_str()).sign(topic, text)).expect("encodes");
            agent.take_at(topic, &wire, at);
        }
        _ => agent.take_at(topic, payload, at),
    }
}

fn agent_with_feeds(feeds: &str, extra: &str) -> Agent {
    let text = format!(
        "[site]\nname = \"tx-west\"\n[tariff]\nkind = \"fixed\"\nprice = 0.06\n\
         [policy]\nmin_on_s = 0\nmin_off_s = 0\nrestore_cooldown_s = 0\n{extra}\n{feeds}"
    );
    let config = SiteConfig::parse(std::path::Path::new("site.toml"), &text).expect("valid");
    let site = Name::new("tx-west").expect("valid");
    Agent::new(
        config,
        site,
        CommandSigner::from_seed("h", &[3; 32]),
        false,
        NOW,
    )
    .map(|mut agent| {
        // These tests are about the agent's logic: each miner's key is taken at first sight
        // (`enrolment` below has the tests of who is listened to).
        agent.enrolment = crate::enrol::Enrolment::new(crate::enrol::EnrolMode::FirstSeen, 16);
        agent
    })
    .expect("starts")
}

fn example(suffix: &str) -> Vec<u8> {
    examples::payload(suffix).expect("a documented example")
}

/// The documented S19 XP (21.6 J/TH) as miner `m1`, online and mining.
fn hear_miner(agent: &mut Agent) {
    let t = |kind| format!("hashwarden/v1/tx-west/m1/{kind}");
    say(agent, &t("status"), b"online", NOW);
    say(agent, &t("state"), &example("/state"), NOW);
    say(agent, &t("telemetry"), &example("/telemetry"), NOW);
}

fn market(hashprice: f64, at: u64) -> Vec<u8> {
    format!("{{\"v\":1,\"at\":{at},\"hashprice_usd_per_ph_day\":{hashprice}}}").into_bytes()
}

fn actions(sent: &[(Name, Vec<u8>)]) -> Vec<String> {
    sent.iter()
        .map(|(miner, bytes)| {
            let signed: fleet_proto::SignedCommand =
                serde_json::from_slice(bytes).expect("a signed command");
            let command: serde_json::Value = serde_json::from_str(&signed.payload).expect("json");
            format!("{miner}:{}", command["action"].as_str().unwrap_or(""))
        })
        .collect()
}

#[test]
fn a_market_drop_sleeps_the_machine_with_a_signed_command() {
    let mut agent = agent("");
    hear_miner(&mut agent);
    // No market yet: the safe policy keeps it as it is.
    assert!(agent.round(NOW + 1).is_empty());
    say(
        &mut agent,
        "hashwarden/v1/tx-west/market",
        &market(40.0, NOW),
        NOW,
    );
    assert!(agent.round(NOW + 2).is_empty(), "profitable at $40");
    say(
        &mut agent,
        "hashwarden/v1/tx-west/market",
        &market(25.0, NOW + 3),
        NOW + 3,
    );
    let sent = agent.round(NOW + 3);
    assert_eq!(actions(&sent), ["m1:sleep"]);
    // Verifiable by the miners: signed by the agent's key.
    let signed: fleet_proto::SignedCommand = serde_json::from_slice(&sent[0].1).expect("signed");
    assert_eq!(signed.key_id, "h");
    // In flight: nothing more is sent, and the plan does not flip it back.
    assert!(agent.round(NOW + 4).is_empty());
}

#[test]
fn bad_inputs_are_counted_and_change_nothing() {
    let mut agent = agent("");
    hear_miner(&mut agent);
    say(
        &mut agent,
        "hashwarden/v1/tx-west/market",
        &market(40.0, NOW),
        NOW,
    );
    for (topic, payload) in [
        ("hashwarden/v1/tx-west/market", market(0.0, NOW + 1)),
        ("hashwarden/v1/tx-west/market", market(400.0, NOW + 1)),
        ("hashwarden/v1/tx-west/market", market(25.0, NOW + 9_999)),
        ("hashwarden/v1/tx-west/market", b"{".to_vec()),
        ("hashwarden/v1/tx-west/grid", b"[]".to_vec()),
        ("maestro/target", b"{\"target\":\"x\"}".to_vec()),
        ("hashwarden/v1/tx-west/m1/telemetry", b"\xff".to_vec()),
        ("hashwarden/v1/tx-west/m1/ack", b"null".to_vec()),
    ] {
        say(&mut agent, topic, &payload, NOW + 1);
    }
    assert_eq!(agent.records.counters.refused_messages, 8);
    assert!(agent.round(NOW + 2).is_empty(), "still $40, still mining");
    // Another site's messages are not this agent's.
    say(
        &mut agent,
        "hashwarden/v1/other/m9/status",
        b"online",
        NOW + 2,
    );
    assert_eq!(agent.fleet.len(), 1);
}

#[test]
fn a_replayed_reading_is_taken_when_its_time_comes() {
    let mut agent = agent("");
    hear_miner(&mut agent);
    let reading = |at: u64, hashprice: f64| fleet_proto::Market {
        v: 1,
        at,
        hashprice_usd_per_ph_day: Some(hashprice),
        difficulty: None,
        height: None,
        fees_per_block_btc: None,
        btc_usd: None,
    };
    agent.replay = vec![reading(NOW - 10, 40.0), reading(NOW + 100, 25.0)].into();
    assert!(agent.round(NOW).is_empty(), "$40 now");
    assert!(agent.round(NOW + 99).is_empty());
    // Still reporting (a miner silent for a minute counts as offline).
    say(
        &mut agent,
        "hashwarden/v1/tx-west/m1/telemetry",
        &example("/telemetry"),
        NOW + 99,
    );
    assert_eq!(actions(&agent.round(NOW + 100)), ["m1:sleep"]);
    assert!(agent.replay.is_empty());
}

#[test]
fn wakes_go_out_in_staggered_batches_most_efficient_first() {
    let mut agent = agent("batch_size = 1\nbatch_interval_s = 30\n");
    // Two sleeping machines: the documented S19 XP (21.6 J/TH) and a 30 J/TH one.
    let mut state: fleet_proto::State = serde_json::from_slice(&example("/state")).expect("parses");
    state.mode = fleet_proto::Mode::Sleeping;
    let mut telemetry: fleet_proto::Telemetry =
        serde_json::from_slice(&example("/telemetry")).expect("parses");
    telemetry.mode = fleet_proto::Mode::Sleeping;
    telemetry.power_w = 20.0;
    for (miner, watts) in [("m1", 3_031.0), ("m2", 4_230.0)] {
        let mut state = state.clone();
        state.nameplate.power_w = watts;
        let t = |kind| format!("hashwarden/v1/tx-west/{miner}/{kind}");
        say(&mut agent, &t("status"), b"online", NOW);
        say(
            &mut agent,
            &t("state"),
            &serde_json::to_vec(&state).expect("encodes"),
            NOW,
        );
        say(
            &mut agent,
            &t("telemetry"),
            &serde_json::to_vec(&telemetry).expect("encodes"),
            NOW,
        );
    }
    say(
        &mut agent,
        "hashwarden/v1/tx-west/market",
        &market(60.0, NOW),
        NOW,
    );
    let first = agent.round(NOW);
    assert_eq!(actions(&first), ["m1:wake"], "the efficient one first");
    let signed: fleet_proto::SignedCommand = serde_json::from_slice(&first[0].1).expect("signed");
    let id =
        serde_json::from_str::<serde_json::Value>(&signed.payload).expect("json")["id"].clone();
    let ack = format!(
        "{{\"v\":1,\"id\":{id},\"miner\":\"m1\",\"status\":\"applied\",\"reason\":null,\"at\":{NOW}}}"
    );
    say(
        &mut agent,
        "hashwarden/v1/tx-west/m1/ack",
        ack.as_bytes(),
        NOW + 1,
    );
    assert!(
        agent.round(NOW + 29).is_empty(),
        "the next batch waits its interval"
    );
    for miner in ["m1", "m2"] {
        let t = format!("hashwarden/v1/tx-west/{miner}/telemetry");
        say(
            &mut agent,
            &t,
            &serde_json::to_vec(&telemetry).expect("encodes"),
            NOW + 29,
        );
    }
    assert_eq!(actions(&agent.round(NOW + 30)), ["m2:wake"]);
}

#[test]
fn a_machine_in_maintenance_is_left_alone_and_overheads_count() {
    // Exempt: a market far under water changes nothing.
    let mut exempt = agent("[[machines]]\nid = \"m1\"\nexempt = true\n");
    hear_miner(&mut exempt);
    say(
        &mut exempt,
        "hashwarden/v1/tx-west/market",
        &market(25.0, NOW),
        NOW,
    );
    assert!(exempt.round(NOW + 1).is_empty());
    // An overhead of $2 a day on 140 TH/s lifts its breakeven by ~$14.5/PH/day: at $40 the
    // documented S19 XP is profitable on power alone (breakeven $31.7), not with the overhead.
    let mut costly = agent("[[machines]]\nid = \"m1\"\noverhead_usd_per_day = 2.0\n");
    hear_miner(&mut costly);
    say(
        &mut costly,
        "hashwarden/v1/tx-west/market",
        &market(40.0, NOW),
        NOW,
    );
    assert_eq!(actions(&costly.round(NOW + 1)), ["m1:sleep"]);
}

#[test]
fn a_grid_cap_sleeps_a_profitable_machine() {
    let mut agent = agent("");
    hear_miner(&mut agent);
    say(
        &mut agent,
        "hashwarden/v1/tx-west/market",
        &market(40.0, NOW),
        NOW,
    );
    let cap = format!(
        "{{\"v\":1,\"at\":{NOW},\"cap_kw\":1.0,\"until\":{}}}",
        NOW + 600
    );
    say(
        &mut agent,
        "hashwarden/v1/tx-west/grid",
        cap.as_bytes(),
        NOW + 1,
    );
    assert_eq!(actions(&agent.round(NOW + 1)), ["m1:sleep"]);
}

#[test]
fn a_grid_cap_with_notice_sheds_its_lead_before_it_starts() {
    let mut agent = agent("");
    hear_miner(&mut agent);
    say(
        &mut agent,
        "hashwarden/v1/tx-west/market",
        &market(40.0, NOW),
        NOW,
    );
    // Thirty minutes' notice; the default lead is five minutes.
    let from = NOW + 1_800;
    let cap = format!(
        "{{\"v\":1,\"at\":{NOW},\"cap_kw\":1.0,\"from\":{from},\"until\":{}}}",
        from + 3_600
    );
    say(
        &mut agent,
        "hashwarden/v1/tx-west/grid",
        cap.as_bytes(),
        NOW + 1,
    );
    for t in [NOW + 1, NOW + 600, from - 301] {
        say(
            &mut agent,
            "hashwarden/v1/tx-west/m1/telemetry",
            &example("/telemetry"),
            t,
        );
        assert!(agent.round(t).is_empty(), "mining on at {t}");
    }
    say(
        &mut agent,
        "hashwarden/v1/tx-west/m1/telemetry",
        &example("/telemetry"),
        from - 300,
    );
    assert_eq!(actions(&agent.round(from - 300)), ["m1:sleep"]);
    // One that ends before it starts is refused and counted.
    let backwards = format!(
        "{{\"v\":1,\"at\":{NOW},\"cap_kw\":1.0,\"from\":{},\"until\":{from}}}",
        from + 60
    );
    say(
        &mut agent,
        "hashwarden/v1/tx-west/grid",
        backwards.as_bytes(),
        from,
    );
    assert_eq!(agent.records.counters.refused_messages, 1);
}

fn power(usd_per_kwh: f64, at: u64) -> Vec<u8> {
    format!("{{\"v\":1,\"at\":{at},\"usd_per_kwh\":{usd_per_kwh}}}").into_bytes()
}

#[test]
fn a_real_time_power_price_moves_the_breakeven_until_it_goes_stale() {
    let mut agent = agent("[power]\nmax_age_s = 60\n");
    hear_miner(&mut agent);
    // 21.6 J/TH: breakeven $31.1/PH/day on the $0.06 tariff, $46.7 at $0.09.
    say(
        &mut agent,
        "hashwarden/v1/tx-west/market",
        &market(40.0, NOW),
        NOW,
    );
    assert!(agent.round(NOW + 1).is_empty(), "profitable on the tariff");
    say(
        &mut agent,
        "hashwarden/v1/tx-west/power",
        &power(0.09, NOW + 2),
        NOW + 2,
    );
    assert_eq!(actions(&agent.round(NOW + 2)), ["m1:sleep"]);
    // A unit error (cents for dollars) is refused; the last good price stands.
    say(
        &mut agent,
        "hashwarden/v1/tx-west/power",
        &power(4.3e1, NOW + 3),
        NOW + 3,
    );
    assert_eq!(agent.records.counters.refused_messages, 1);
    // The feed falls silent: after its bound the tariff is back and the machine (asleep, still
    // reporting) above water again.
    let sleeping = examples::payload("/telemetry")
        .map(|t| String::from_utf8_lossy(&t).replace("\"mining\"", "\"sleeping\""))
        .expect("telemetry");
    say(
        &mut agent,
        "hashwarden/v1/tx-west/m1/telemetry",
        sleeping.as_bytes(),
        NOW + 70,
    );
    assert_eq!(actions(&agent.round(NOW + 70)), ["m1:wake"]);
}

#[test]
fn one_agent_of_a_group_plans_only_its_own_miners() {
    let mut agent = agent("");
    let mut group = crate::shard::Group::new("agent-a");
    group.presence("agent-b", true);
    let fleet: Vec<String> = (1..=8).map(|i| format!("m{i}")).collect();
    for miner in &fleet {
        let t = |kind| format!("hashwarden/v1/tx-west/{miner}/{kind}");
        say(&mut agent, &t("status"), b"online", NOW);
        say(&mut agent, &t("state"), &example("/state"), NOW);
        say(&mut agent, &t("telemetry"), &example("/telemetry"), NOW);
    }
    // Peer presence arrives on its topic; the agent's own echo is not a peer.
    say(
        &mut agent,
        "hashwarden/v1/tx-west/agent/peers/agent-b",
        b"online",
        NOW,
    );
    assert!(agent.group.is_none(), "not in a group unless configured");
    agent.group = Some(crate::shard::Group::new("agent-a"));
    say(
        &mut agent,
        "hashwarden/v1/tx-west/agent/peers/agent-a",
        b"online",
        NOW,
    );
    say(
        &mut agent,
        "hashwarden/v1/tx-west/agent/peers/agent-b",
        b"online",
        NOW,
    );
    assert_eq!(agent.group.as_ref().map(|g| g.size()), Some(2));
    say(
        &mut agent,
        "hashwarden/v1/tx-west/market",
        &market(25.0, NOW),
        NOW,
    );
    let mut slept: Vec<String> = agent
        .round(NOW + 1)
        .iter()
        .map(|(miner, _)| miner.to_string())
        .collect();
    slept.sort();
    let mine: Vec<String> = fleet.iter().filter(|m| group.owns(m)).cloned().collect();
    assert!(
        !mine.is_empty() && mine.len() < fleet.len(),
        "a split: {mine:?}"
    );
    assert_eq!(slept, mine);

    // agent-b goes: its miners are this agent's now.
    say(
        &mut agent,
        "hashwarden/v1/tx-west/agent/peers/agent-b",
        b"offline",
        NOW + 2,
    );
    assert_eq!(agent.round(NOW + 2).len(), fleet.len() - mine.len());

    // agent-b is back before those changes are done: they are its again, and this agent
    // drops them instead of retrying them behind its back.
    say(
        &mut agent,
        "hashwarden/v1/tx-west/agent/peers/agent-b",
        b"online",
        NOW + 3,
    );
    agent.round(NOW + 3);
    let chased: Vec<&str> = agent.executor.ops().map(|op| op.miner.as_str()).collect();
    assert!(chased.iter().all(|m| group.owns(m)), "{chased:?}");
    for retry in 1..=6 {
        let sent = agent.round(NOW + 3 + retry * 30);
        assert!(
            sent.iter().all(|(miner, _)| group.owns(miner.as_str())),
            "retry {retry}"
        );
    }
}

/// The agent's part of a rollout: one at a time from the store, the image checked again before
/// anything is sent, update commands from the one counter, acks moving it on.
#[test]
fn rollouts_are_taken_up_one_at_a_time_and_only_with_an_image_that_checks() {
    use crate::rollout::{Request, Staging};
    use fleet_proto::image::Version;
    let dir = std::env::temp_dir().join(format!("hw-agent-rollouts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let seed = [4u8; 32];
    let public_key: String = CommandSigner::from_seed("release", &seed)
        .public_key()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let image = fleet_proto::image::build(
        b"#!/bin/sh\n",
        Version(0, 9, 0),
        &["S19 XP".to_string()],
        "release",
        &seed,
        0,
    );
    let path = dir.join("fw.img");
    std::fs::write(&path, &image).expect("writes");
    let manifest = crate::rollout::check_image(image.as_slice(), "release", &public_key)
        .expect("a good image");
    let request = |image_path: std::path::PathBuf| Request {
        image_path,
        manifest: manifest.clone(),
        key_id: "release".into(),
        public_key: public_key.clone(),
        miners: vec!["m1".into()],
        staging: Staging::default(),
    };
    let store = Store::open(&dir.join("agent.db")).expect("opens");
    let gone = store
        .request_rollout(&request(dir.join("deleted.img")), NOW)
        .expect("queues");
    let good = store.request_rollout(&request(path), NOW).expect("queues");
    let mut agent = agent("");
    agent.rollouts = rollouts::Rollouts::new(Some("http://10.20.0.5:9100/".into()));
    agent
        .attach(Store::open(&dir.join("agent.db")).expect("opens"), NOW)
        .expect("attaches");
    hear_miner(&mut agent);

    // The first can never run (its file is gone): it halts and ends; the second waits.
    assert!(agent.round(NOW + 1).is_empty());
    let first = store.rollout(gone).expect("reads").expect("there");
    assert!(first.finished);
    let halted = first.progress.and_then(|p| p.halted).unwrap_or_default();
    assert!(halted.contains("deleted.img"), "{halted}");
    assert!(
        store
            .rollout(good)
            .expect("reads")
            .expect("there")
            .progress
            .is_none()
    );

    // Then the second: the canary (the only miner) gets its update, numbered like any command.
    let sent = agent.round(NOW + 2);
    assert_eq!(actions(&sent), ["m1:update"]);
    let signed: fleet_proto::SignedCommand = serde_json::from_slice(&sent[0].1).expect("signed");
    let command: serde_json::Value = serde_json::from_str(&signed.payload).expect("json");
    assert_eq!(
        command["url"],
        format!("http://10.20.0.5:9100/images/{}.img", manifest.sha256)
    );
    assert_eq!(command["sha256"], manifest.sha256);
    assert_eq!(command["version"], "0.9.0");
    let id = command["id"].as_str().expect("id").to_string();
    let ack = format!(
        "{{\"v\":1,\"id\":\"{id}\",\"miner\":\"m1\",\"status\":\"applied\",\"reason\":\"installed\",\"at\":{}}}",
        NOW + 3
    );
    say(
        &mut agent,
        "hashwarden/v1/tx-west/m1/ack",
        ack.as_bytes(),
        NOW + 3,
    );
    agent.records.flush();
    let history = store.history(Some("m1"), 10).expect("reads");
    assert!(
        history
            .iter()
            .any(|e| e.kind == AuditKind::Update && e.detail == "installed on trial"),
        "{history:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_change_nobody_answered_is_held_until_the_operator_asks_again() {
    let mut agent = agent("");
    let dir = std::env::temp_dir().join(format!("hw-agent-manual-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch");
    let store = crate::store::Store::open(&dir.join("agent.db")).expect("opens");
    agent.attach(store, NOW).expect("attaches");
    hear_miner(&mut agent);
    say(
        &mut agent,
        "hashwarden/v1/tx-west/market",
        &market(40.0, NOW),
        NOW,
    );
    let curtail_by_hand = |agent: &mut Agent, until: u64| {
        let manual = crate::planner::Manual {
            setting: Setting::Sleep,
            until,
        };
        agent
            .records
            .store()
            .expect("attached")
            .set_override("m1", manual)
            .expect("stored");
    };
    // Sent for every round until `to`, the miner reporting (and never acking) throughout.
    let rounds = |agent: &mut Agent, from: u64, to: u64| -> Vec<String> {
        let mut sent = Vec::new();
        for t in from..to {
            say(
                agent,
                "hashwarden/v1/tx-west/m1/telemetry",
                &example("/telemetry"),
                t,
            );
            sent.extend(actions(&agent.round(t)));
        }
        sent
    };
    curtail_by_hand(&mut agent, NOW + 3_600);
    let sent = rounds(&mut agent, NOW + 1, NOW + 200);
    assert_eq!(sent, ["m1:sleep"; 3], "three attempts, then unresponsive");
    assert!(agent.executor.not_carried_out("m1").is_some());
    // The same override, still in force: nothing more until the retry time.
    assert!(rounds(&mut agent, NOW + 200, NOW + 250).is_empty());
    // The operator curtails it again: sent at once.
    curtail_by_hand(&mut agent, NOW + 7_200);
    assert_eq!(rounds(&mut agent, NOW + 250, NOW + 252), ["m1:sleep"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_round_reads_what_is_queued_first_but_no_more_than_its_limit() {
    let mut agent = agent("");
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    for m in 0..5 {
        let topic = |kind: &str| format!("hashwarden/v1/tx-west/m{m}/{kind}");
        let state = String::from_utf8(example("/state")).expect("text");
        let signed = device(&format!("m{m}")).sign(&topic("state"), state);
        for (kind, payload) in [
            ("status", b"online".to_vec()),
            ("state", serde_json::to_vec(&signed).expect("encodes")),
        ] {
            tx.try_send(link::Incoming::new(topic(kind), payload))
                .expect("room");
        }
    }
    agent.take_queued(&mut rx, 4);
    assert_eq!(
        agent.fleet.len(),
        2,
        "four messages: two miners' status and state"
    );
    agent.take_queued(&mut rx, 100);
    assert_eq!(agent.fleet.len(), 5);
    assert!(rx.try_recv().is_err(), "the queue is empty");
    // An empty queue (or one whose senders are gone) is simply nothing to read.
    drop(tx);
    agent.take_queued(&mut rx, 100);
}

/// Miner `m1`'s telemetry at `at` in `mode`, drawing `power_w`.
fn telemetry_of(mode: &str, power_w: f64, at: u64) -> Vec<u8> {
    let mut t: serde_json::Value = serde_json::from_slice(&example("/telemetry")).expect("json");
    t["mode"] = mode.into();
    t["power_w"] = power_w.into();
    t["at"] = at.into();
    serde_json::to_vec(&t).expect("encodes")
}

/// The signed command `sent` for `m1`, carried out: `applied`, then telemetry showing `mode`.
fn carry_out(agent: &mut Agent, sent: &[(Name, Vec<u8>)], mode: &str, power_w: f64, at: u64) {
    let signed: fleet_proto::SignedCommand = serde_json::from_slice(&sent[0].1).expect("signed");
    let command: serde_json::Value = serde_json::from_str(&signed.payload).expect("json");
    let ack = format!(
        "{{\"v\":1,\"id\":{},\"miner\":\"m1\",\"status\":\"applied\",\"reason\":null,\"at\":{at}}}",
        command["id"]
    );
    say(agent, "hashwarden/v1/tx-west/m1/ack", ack.as_bytes(), at);
    say(
        agent,
        "hashwarden/v1/tx-west/m1/telemetry",
        &telemetry_of(mode, power_w, at + 1),
        at + 1,
    );
}

#[test]
fn a_miner_that_falls_asleep_by_itself_is_woken_again() {
    let mut agent = agent("");
    hear_miner(&mut agent);
    let market_at = |agent: &mut Agent, hashprice: f64, at: u64| {
        say(
            agent,
            "hashwarden/v1/tx-west/market",
            &market(hashprice, at),
            at,
        );
    };
    market_at(&mut agent, 25.0, NOW);
    let sleep = agent.round(NOW + 1);
    assert_eq!(actions(&sleep), ["m1:sleep"]);
    carry_out(&mut agent, &sleep, "sleeping", 10.0, NOW + 2);
    assert!(agent.round(NOW + 4).is_empty());
    market_at(&mut agent, 40.0, NOW + 5);
    let wake = agent.round(NOW + 6);
    assert_eq!(actions(&wake), ["m1:wake"]);
    carry_out(&mut agent, &wake, "mining", 3_000.0, NOW + 7);
    assert!(agent.round(NOW + 9).is_empty());
    assert_eq!(agent.records.counters.verified, 2);
    // Its failsafe slept it (a broker outage, say): the plan still wants it mining.
    say(
        &mut agent,
        "hashwarden/v1/tx-west/m1/telemetry",
        &telemetry_of("sleeping", 10.0, NOW + 20),
        NOW + 20,
    );
    assert_eq!(actions(&agent.round(NOW + 21)), ["m1:wake"]);
    // Once: the new wake is in flight.
    assert!(agent.round(NOW + 22).is_empty());
}

#[test]
fn forged_future_state_and_absurd_telemetry_are_refused_and_counted() {
    let mut agent = agent("");
    hear_miner(&mut agent);
    let before = agent.fleet.get("m1").cloned();
    // A retained "asleep" dated a billion seconds ahead (it would outrank every real report).
    let mut state: serde_json::Value = serde_json::from_slice(&example("/state")).expect("json");
    state["mode"] = "sleeping".into();
    state["at"] = (NOW + 1_000_000_000).into();
    say(
        &mut agent,
        "hashwarden/v1/tx-west/m1/state",
        &serde_json::to_vec(&state).expect("encodes"),
        NOW + 1,
    );
    for power in [1e300, -1e300] {
        say(
            &mut agent,
            "hashwarden/v1/tx-west/m1/telemetry",
            &telemetry_of("mining", power, NOW + 2),
            NOW + 2,
        );
    }
    assert_eq!(agent.records.counters.refused_messages, 3);
    assert_eq!(
        agent.fleet.get("m1").cloned(),
        before,
        "nothing of it was taken"
    );
    assert_eq!(
        agent.fleet.get("m1").and_then(|h| h.setting()),
        Some(Setting::Full)
    );
}

#[test]
fn unsigned_feeds_are_refused_unless_the_site_says_so() {
    let signer = CommandSigner::from_seed("prices", &[5; 32]);
    let feeds = format!(
        "[[feeds.trusted_keys]]\nid = \"prices\"\npublic_key = \"{}\"\n",
        crate::keys::hex(&signer.public_key())
    );
    let mut agent = agent_with_feeds(&feeds, "");
    hear_miner(&mut agent);
    // The attack: anonymous readings on the site's topics. None is taken.
    say(
        &mut agent,
        "hashwarden/v1/tx-west/market",
        &market(0.12, NOW),
        NOW,
    );
    say(
        &mut agent,
        "hashwarden/v1/tx-west/power",
        &power(9.99, NOW),
        NOW,
    );
    say(
        &mut agent,
        "hashwarden/v1/tx-west/grid",
        format!(
            "{{\"v\":1,\"at\":{NOW},\"cap_kw\":0,\"until\":{}}}",
            u64::MAX
        )
        .as_bytes(),
        NOW,
    );
    assert_eq!(agent.records.counters.refused_messages, 3);
    assert!(agent.round(NOW + 1).is_empty(), "nothing moved");
    // The same reading signed by the site's feed key is taken.
    let site = Name::new("tx-west").expect("valid");
    let reading: serde_json::Value = serde_json::from_slice(&market(25.0, NOW)).expect("json");
    let signed = fleet_proto::feed::Feed::new(
        site,
        fleet_proto::feed::FeedKind::Market,
        NOW,
        900,
        1,
        reading,
    )
    .sign(&signer)
    .expect("signs");
    say(
        &mut agent,
        "hashwarden/v1/tx-west/market",
        &serde_json::to_vec(&signed).expect("encodes"),
        NOW + 2,
    );
    assert_eq!(agent.records.counters.refused_messages, 3);
    assert_eq!(actions(&agent.round(NOW + 3)), ["m1:sleep"]);
}

#[test]
fn the_configured_starting_hashprice_is_not_news_after_a_restart() {
    let dir = std::env::temp_dir().join(format!("hw-agent-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch");
    let store = || crate::store::Store::open(&dir.join("agent.db")).expect("opens");
    let started = |now: u64| {
        let text = "[site]\nname = \"tx-west\"\n[tariff]\nkind = \"fixed\"\nprice = 0.06\n\
                    [market]\nhashprice = 40.0\n";
        let config = SiteConfig::parse(std::path::Path::new("site.toml"), text).expect("valid");
        let signer = CommandSigner::from_seed("h", &[3; 32]);
        let site = Name::new("tx-west").expect("valid");
        let mut agent = Agent::new(config, site, signer, false, now).expect("starts");
        agent.attach(store(), now).expect("attaches");
        agent
    };
    // First start: the configured value stands, as of now.
    let first = started(NOW);
    assert!(matches!(
        first.market.view(NOW + 60),
        MarketView::Current { .. }
    ));
    drop(first);
    // Restarted four hours later with no feed since: it is four hours old, so expired — not
    // stamped fresh again.
    let later = NOW + 4 * 3_600;
    let second = started(later);
    assert!(
        matches!(second.market.view(later + 1), MarketView::Expired { .. }),
        "{:?}",
        second.market.view(later + 1)
    );
    // Restarted within its three hours: it stands, with its real age.
    let soon = NOW + 3_600;
    match started(soon).market.view(soon) {
        MarketView::Current { age_s, .. } => assert_eq!(age_s, 3_600),
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn polled_sources_that_disagree_leave_the_site_to_its_safe_policy() {
    let sources = "[market]\nhashprice = 28.0\npoll = [\
                   { kind = \"mempool\", url = \"http://127.0.0.1:9\" },\
                   { kind = \"hashrate_index\", url = \"http://127.0.0.1:9\" },\
                   { kind = \"hashrate_index\", url = \"http://127.0.0.2:9\" }]\n";
    let mut agent = agent_with_feeds("", sources);
    assert!(matches!(agent.market.view(NOW), MarketView::Current { .. }));
    let reading = |hashprice: f64| -> Result<fleet_proto::Market, crate::sources::SourceError> {
        serde_json::from_slice(&market(hashprice, NOW + 10)).map_err(|_| {
            crate::sources::SourceError::Fetch("a test reading that does not parse".into())
        })
    };
    let down = || {
        Err(crate::sources::SourceError::Fetch(
            "connection refused".into(),
        ))
    };
    // One source down, the other two 40 % apart: no majority.
    agent.take_polled(vec![reading(28.0), reading(40.0), down()], NOW + 10);
    assert!(
        matches!(agent.market.view(NOW + 11), MarketView::Expired { .. }),
        "{:?}",
        agent.market.view(NOW + 11)
    );
    // Two agree, one is off by a unit: their median, the third outvoted.
    agent.take_polled(vec![reading(29.0), reading(0.029), reading(29.4)], NOW + 20);
    match agent.market.view(NOW + 21) {
        MarketView::Current { hashprice, .. } => assert!((hashprice.0 - 29.2).abs() < 1e-9),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_verifier_thread_checks_reports_on_their_way_and_the_loop_decides() {
    let mut agent = agent("");
    let (raw_tx, raw) = tokio::sync::mpsc::channel(64);
    let mut checked = verifier::spawn(raw, Name::new("tx-west").expect("a name"), 64);
    let topic = "hashwarden/v1/tx-west/m1/state";
    let state = String::from_utf8(example("/state")).expect("text");
    let good = serde_json::to_vec(&device("m1").sign(topic, state.clone())).expect("encodes");
    let mut forged: fleet_proto::report::SignedReport =
        serde_json::from_slice(&good).expect("parses");
    forged.payload = state.replace("\"mining\"", "\"sleeping\"");
    let forged = serde_json::to_vec(&forged).expect("encodes");
    for (topic, payload) in [
        ("hashwarden/v1/tx-west/m1/status", b"online".to_vec()),
        (topic, good),
        (topic, forged),
        ("hashwarden/v1/tx-west/market", market(40.0, NOW)),
    ] {
        raw_tx
            .blocking_send(link::Incoming::new(topic.into(), payload))
            .expect("room");
    }
    drop(raw_tx);
    let mut verdicts = Vec::new();
    while let Some(message) = checked.blocking_recv() {
        verdicts.push(
            message
                .checked
                .as_ref()
                .map(|c| c.as_ref().map(|c| c.verified).map_err(|e| e.clone())),
        );
        agent.take_message(message, NOW);
    }
    // Only the reports were checked: the good one verified, the altered one not.
    assert_eq!(verdicts, [None, Some(Ok(true)), Some(Ok(false)), None]);
    let heard = agent.fleet.get("m1").expect("m1 enrolled and heard");
    assert_eq!(
        heard.state.as_ref().map(|s| s.mode),
        Some(fleet_proto::Mode::Mining)
    );
    assert_eq!(agent.records.counters.refused_messages, 1);
}

#[test]
fn a_site_coming_up_at_once_is_online_though_few_strangers_statuses_are_held() {
    // First sight enrols; only 16 unknown miners' statuses are held, and 100 come up together.
    let mut agent = agent("");
    for m in 0..100 {
        let topic = |kind: &str| format!("hashwarden/v1/tx-west/m{m}/{kind}");
        say(&mut agent, &topic("status"), b"online", NOW);
        say(&mut agent, &topic("state"), &example("/state"), NOW);
        say(&mut agent, &topic("telemetry"), &example("/telemetry"), NOW);
    }
    say(
        &mut agent,
        "hashwarden/v1/tx-west/m7/status",
        b"offline",
        NOW,
    );
    let machines = agent.fleet.machines(NOW);
    assert_eq!(machines.len(), 100);
    let online = machines.iter().filter(|m| m.online).count();
    assert_eq!(online, 99, "all but m7, whose last will came");
}
