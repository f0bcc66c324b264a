use fleet_proto::report::DeviceSigner;

use super::*;

const NOW: u64 = 1_796_000_000;

fn topic(miner: &str, kind: &str) -> String {
    format!("hashwarden/v1/site/{miner}/{kind}")
}

fn report(signer: &DeviceSigner, miner: &str, kind: &str, body: &str) -> Vec<u8> {
    serde_json::to_vec(&signer.sign(&topic(miner, kind), body.to_string())).expect("encodes")
}

/// As the agent opens what is queued: the signatures checked together (on its verifier thread),
/// then each report's standing decided in order.
fn open_batch(book: &mut Enrolment, batch: &[(&str, &str, &[u8])]) -> Vec<Result<Opened, Refused>> {
    let items: Vec<(&str, &[u8])> = batch.iter().map(|(_, t, w)| (*t, *w)).collect();
    let mut keys = fleet_proto::report::KeyCache::new(64);
    fleet_proto::report::check_many(&items, &mut keys)
        .into_iter()
        .zip(batch)
        .map(|(checked, (miner, _, _))| book.open_checked(miner, checked, NOW))
        .collect()
}

fn open(book: &mut Enrolment, miner: &str, kind: &str, wire: &[u8]) -> Result<Opened, Refused> {
    book.open(miner, &topic(miner, kind), wire, NOW)
}

#[test]
fn a_configured_key_is_the_only_voice_of_its_miner() {
    let m1 = DeviceSigner::from_seed(&[1; 32]);
    let forger = DeviceSigner::from_seed(&[66; 32]);
    let mut book = Enrolment::new(EnrolMode::Config, 4);
    book.enrol("m1", m1.public_hex(), How::Config)
        .expect("a key");
    assert_eq!(
        open(&mut book, "m1", "state", &report(&m1, "m1", "state", "{}")),
        Ok(Opened::Report("{}".into()))
    );
    // Unsigned, signed by another key, or m1's own report moved to another topic.
    assert!(matches!(
        open(&mut book, "m1", "state", br#"{"v":1,"mode":"sleeping"}"#),
        Err(Refused::Envelope {
            source: ReportRefusal::Unsigned,
            ..
        })
    ));
    assert!(matches!(
        open(
            &mut book,
            "m1",
            "state",
            &report(&forger, "m1", "state", "{}")
        ),
        Err(Refused::OtherKey { .. })
    ));
    let mut moved: fleet_proto::report::SignedReport =
        serde_json::from_slice(&report(&m1, "m1", "telemetry", "{}")).expect("parses");
    moved.payload = "{}".into();
    let moved = serde_json::to_vec(&moved).expect("encodes");
    assert!(matches!(
        open(&mut book, "m1", "state", &moved),
        Err(Refused::Envelope {
            source: ReportRefusal::BadSignature,
            ..
        })
    ));
    assert!(book.unenrolled().next().is_none());
}

#[test]
fn in_config_mode_an_unknown_miner_is_held_with_its_key_for_the_operator() {
    let m2 = DeviceSigner::from_seed(&[2; 32]);
    let mut book = Enrolment::new(EnrolMode::Config, 4);
    let first = open(&mut book, "m2", "state", &report(&m2, "m2", "state", "{}"));
    assert!(matches!(
        first,
        Err(Refused::Unenrolled { first: true, .. })
    ));
    let again = open(
        &mut book,
        "m2",
        "telemetry",
        &report(&m2, "m2", "telemetry", "{}"),
    );
    assert!(matches!(
        again,
        Err(Refused::Unenrolled { first: false, .. })
    ));
    let held: Vec<&Unenrolled> = book.unenrolled().collect();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].public_key.as_deref(), Some(m2.public_hex()));
    // The operator copies the key into the config; the next start enrols it.
    book.enrol(
        "m2",
        &held[0].public_key.clone().expect("a key"),
        How::Config,
    )
    .expect("enrols");
    assert!(book.unenrolled().next().is_none());
    assert_eq!(
        open(&mut book, "m2", "state", &report(&m2, "m2", "state", "{}")),
        Ok(Opened::Report("{}".into()))
    );
}

#[test]
fn first_seen_enrols_once_and_pins_the_key() {
    let m3 = DeviceSigner::from_seed(&[3; 32]);
    let later = DeviceSigner::from_seed(&[33; 32]);
    let mut book = Enrolment::new(EnrolMode::FirstSeen, 4);
    // Its retained status arrived before its first report: held, then handed over.
    assert!(!book.status("m3", true));
    assert_eq!(
        open(
            &mut book,
            "m3",
            "state",
            &report(&m3, "m3", "state", "{\"a\":1}")
        ),
        Ok(Opened::Enrolled {
            payload: "{\"a\":1}".into(),
            status: Some(true)
        })
    );
    assert!(book.status("m3", false));
    assert_eq!(book.how("m3"), Some(How::FirstSeen));
    assert_eq!(
        book.take_new(),
        vec![NewEnrolment {
            miner: "m3".into(),
            public_key: m3.public_hex().into(),
            at: NOW
        }]
    );
    assert!(book.take_new().is_empty());
    // Whoever comes second with another key is not m3.
    assert!(matches!(
        open(
            &mut book,
            "m3",
            "state",
            &report(&later, "m3", "state", "{}")
        ),
        Err(Refused::OtherKey { .. })
    ));
    // Nor may m3's key speak for a second name (its reports replayed onto a ghost's topic
    // fail the signature anyway; a key signing for two names is refused outright).
    assert!(matches!(
        open(
            &mut book,
            "ghost",
            "state",
            &report(&m3, "ghost", "state", "{}")
        ),
        Err(Refused::KeyTaken { .. })
    ));
    assert_eq!(book.enrolled_count(), 1);
}

#[test]
fn a_configured_key_replaces_one_first_seen_and_not_the_other_way() {
    let old = DeviceSigner::from_seed(&[4; 32]);
    let new = DeviceSigner::from_seed(&[44; 32]);
    let mut book = Enrolment::new(EnrolMode::FirstSeen, 4);
    book.enrol("m4", old.public_hex(), How::FirstSeen)
        .expect("from the store");
    book.enrol("m4", new.public_hex(), How::Config)
        .expect("from the config");
    assert_eq!(book.how("m4"), Some(How::Config));
    assert!(open(&mut book, "m4", "state", &report(&new, "m4", "state", "{}")).is_ok());
    assert!(open(&mut book, "m4", "state", &report(&old, "m4", "state", "{}")).is_err());
    // A stale first-seen record loaded after the config does not win either: not for m4, and
    // not for another name claiming the key the config gives m4.
    book.enrol("m4", old.public_hex(), How::FirstSeen)
        .expect("a key");
    assert!(open(&mut book, "m4", "state", &report(&new, "m4", "state", "{}")).is_ok());
    book.enrol("m9", new.public_hex(), How::FirstSeen)
        .expect("a key");
    assert_eq!(book.how("m4"), Some(How::Config));
    assert_eq!(book.how("m9"), None);
}

#[test]
fn unknown_miners_are_held_within_the_bound_and_a_flood_is_refused() {
    let mut book = Enrolment::new(EnrolMode::Config, 3);
    let mut refusals = Vec::new();
    for i in 0..1000 {
        let miner = format!("ghost{i}");
        let wire = format!("{{\"v\":1,\"n\":{i}}}");
        refusals.push(open(&mut book, &miner, "state", wire.as_bytes()));
        book.status(&miner, true);
    }
    assert_eq!(book.unenrolled().count(), 3);
    assert_eq!(book.status.len(), 3);
    let full_logged = refusals
        .iter()
        .filter(|r| matches!(r, Err(Refused::Full { first: true, .. })))
        .count();
    assert_eq!(full_logged, 1, "one log line for the whole flood");
    assert!(refusals.iter().all(|r| r.is_err()));
}

#[test]
fn signed_garbage_and_bad_keys_are_refused_without_being_held() {
    let mut book = Enrolment::new(EnrolMode::FirstSeen, 4);
    for wire in [
        b"\x00\xff".to_vec(),
        br#"{"v":1,"key_id":"nothex","payload":"{}","sig":"00"}"#.to_vec(),
        format!(
            r#"{{"v":1,"key_id":"{}","payload":"{{}}","sig":"{}"}}"#,
            DeviceSigner::from_seed(&[5; 32]).public_hex(),
            "ab".repeat(64)
        )
        .into_bytes(),
    ] {
        assert!(
            matches!(
                open(&mut book, "m5", "state", &wire),
                Err(Refused::Envelope { .. })
            ),
            "{}",
            String::from_utf8_lossy(&wire)
        );
    }
    assert_eq!(book.enrolled_count(), 0);
    assert!(book.unenrolled().next().is_none());
}

#[test]
fn many_at_once_is_the_same_as_one_by_one_and_a_forgery_in_a_batch_is_caught() {
    let miners: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    let signers: Vec<DeviceSigner> = (0..20u8)
        .map(|i| DeviceSigner::from_seed(&[i + 100; 32]))
        .collect();
    let forger = DeviceSigner::from_seed(&[250; 32]);
    let mut book = Enrolment::new(EnrolMode::FirstSeen, 4);
    for (miner, signer) in miners.iter().zip(&signers).take(16) {
        book.enrol(miner, signer.public_hex(), How::Config)
            .expect("a key");
    }
    let topics: Vec<String> = miners.iter().map(|m| topic(m, "telemetry")).collect();
    let mut wires: Vec<Vec<u8>> = miners
        .iter()
        .zip(&signers)
        .map(|(m, s)| report(s, m, "telemetry", &format!("{{\"n\":\"{m}\"}}")))
        .collect();
    // m3's report altered on the way; m5's signed by someone else under m5's key id; m7 unsigned.
    let mut altered: fleet_proto::report::SignedReport =
        serde_json::from_slice(&wires[3]).expect("parses");
    altered.payload = "{\"n\":\"sleeping\"}".into();
    wires[3] = serde_json::to_vec(&altered).expect("encodes");
    let mut foreign = forger.sign(&topics[5], "{}".into());
    foreign.key_id = signers[5].public_hex().into();
    wires[5] = serde_json::to_vec(&foreign).expect("encodes");
    wires[7] = b"{\"n\":\"m7\"}".to_vec();
    // m16..m19 are not enrolled: first sight enrols them (a second report of m16 too).
    wires.push(report(&signers[16], "m16", "telemetry", "{\"again\":1}"));
    let mut names: Vec<&str> = miners.iter().map(String::as_str).collect();
    names.push("m16");
    let mut all_topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    all_topics.push(&topics[16]);
    let batch: Vec<(&str, &str, &[u8])> = names
        .iter()
        .zip(&all_topics)
        .zip(&wires)
        .map(|((m, t), w)| (*m, *t, w.as_slice()))
        .collect();

    let mut one_by_one = book.clone();
    let expected: Vec<Result<Opened, Refused>> = batch
        .iter()
        .map(|(m, t, w)| one_by_one.open(m, t, w, NOW))
        .collect();
    let together = open_batch(&mut book, &batch);
    assert_eq!(together, expected);
    for bad in [3, 5, 7] {
        assert!(together[bad].is_err(), "m{bad}: {:?}", together[bad]);
    }
    let taken = together.iter().filter(|r| r.is_ok()).count();
    assert_eq!(taken, 21 - 3);
    assert!(matches!(together[16], Ok(Opened::Enrolled { .. })));
    assert!(matches!(together[20], Ok(Opened::Report(_))));
    assert_eq!(book.enrolled_count(), 20);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Whatever is altered in whichever reports — a payload byte, a signature byte, the key id —
    /// the batch decides exactly as one by one: nothing forged slips through with good company.
    #[test]
    fn a_batch_decides_as_one_by_one(
        damage in proptest::collection::vec((0usize..12, 0u8..4, proptest::prelude::any::<u8>()), 0..6)
    ) {
        let signers: Vec<DeviceSigner> =
            (0..12u8).map(|i| DeviceSigner::from_seed(&[i + 1; 32])).collect();
        let miners: Vec<String> = (0..12).map(|i| format!("m{i}")).collect();
        let topics: Vec<String> = miners.iter().map(|m| topic(m, "telemetry")).collect();
        let mut book = Enrolment::new(EnrolMode::Config, 4);
        for (miner, signer) in miners.iter().zip(&signers) {
            book.enrol(miner, signer.public_hex(), How::Config).expect("a key");
        }
        let mut envelopes: Vec<fleet_proto::report::SignedReport> = signers
            .iter()
            .zip(&topics)
            .map(|(s, t)| s.sign(t, format!("{{\"t\":\"{t}\"}}")))
            .collect();
        for (which, how, byte) in damage {
            let envelope = &mut envelopes[which];
            match how {
                0 => envelope.payload.push(char::from(b'a' + byte % 26)),
                1 => {
                    let mut sig = envelope.sig.clone().into_bytes();
                    let at = usize::from(byte) % sig.len();
                    sig[at] = if sig[at] == b'0' { b'1' } else { b'0' };
                    envelope.sig = String::from_utf8(sig).expect("hex");
                }
                2 => envelope.key_id = signers[(which + 1) % 12].public_hex().into(),
                _ => envelope.payload = "{}".into(),
            }
        }
        let wires: Vec<Vec<u8>> = envelopes
            .iter()
            .map(|e| serde_json::to_vec(e).expect("encodes"))
            .collect();
        let batch: Vec<(&str, &str, &[u8])> = miners
            .iter()
            .zip(&topics)
            .zip(&wires)
            .map(|((m, t), w)| (m.as_str(), t.as_str(), w.as_slice()))
            .collect();
        let mut alone = book.clone();
        let expected: Vec<Result<Opened, Refused>> =
            batch.iter().map(|(m, t, w)| alone.open(m, t, w, NOW)).collect();
        proptest::prop_assert_eq!(open_batch(&mut book, &batch), expected);
    }
}
