use super::*;

const NOW: u64 = 1_767_225_600;

fn site() -> Name {
    Name::new("tx-west").expect("valid")
}

fn key() -> CommandSigner {
    CommandSigner::from_seed("prices", &[5; 32])
}

fn verifier() -> FeedVerifier {
    let mut keys = TrustedKeys::default();
    keys.trust("prices", &key().public_key()).expect("valid");
    FeedVerifier::new(site(), keys)
}

fn market(hashprice: f64) -> serde_json::Value {
    serde_json::json!({"v": 1, "at": NOW, "hashprice_usd_per_ph_day": hashprice})
}

fn wire(feed: &Feed, signer: &CommandSigner) -> Vec<u8> {
    serde_json::to_vec(&feed.sign(signer).expect("signs")).expect("encodes")
}

fn reading(kind: FeedKind, seq: u64) -> Feed {
    Feed::new(site(), kind, NOW, 900, seq, market(28.0))
}

#[test]
fn a_signed_reading_is_taken_once_and_in_order() {
    let mut agent = verifier();
    let first = wire(&reading(FeedKind::Market, 10), &key());
    let taken = agent
        .check(&first, FeedKind::Market, NOW + 1)
        .expect("taken")
        .expect("new");
    assert_eq!(taken.reading, market(28.0));
    assert_eq!(agent.check(&first, FeedKind::Market, NOW + 2), Ok(None));
    let second = wire(&reading(FeedKind::Market, 11), &key());
    assert!(matches!(
        agent.check(&second, FeedKind::Market, NOW + 3),
        Ok(Some(_))
    ));
    // The first one captured and published again after the second: a replay.
    assert_eq!(
        agent.check(&first, FeedKind::Market, NOW + 4),
        Err(FeedRefusal::Replayed { seq: 10, last: 11 })
    );
    // Sequence numbers are per kind: a power price may start anywhere.
    let power = wire(&reading(FeedKind::Power, 1), &key());
    assert!(matches!(
        agent.check(&power, FeedKind::Power, NOW + 5),
        Ok(Some(_))
    ));
}

#[test]
fn unsigned_forged_foreign_stale_and_misrouted_readings_are_refused() {
    let mut agent = verifier();
    let now = NOW + 1;
    // What anyone with a broker login could publish before: a bare reading.
    let bare = serde_json::to_vec(&market(0.12)).expect("encodes");
    assert_eq!(
        agent.check(&bare, FeedKind::Market, now),
        Err(FeedRefusal::Unsigned)
    );
    assert!(matches!(
        agent.check(b"\x00{garbage", FeedKind::Market, now),
        Err(FeedRefusal::Malformed(_))
    ));
    // Signed by a key of the right name that the site does not trust.
    let stranger = CommandSigner::from_seed("prices", &[6; 32]);
    assert_eq!(
        agent.check(
            &wire(&reading(FeedKind::Market, 1), &stranger),
            FeedKind::Market,
            now
        ),
        Err(FeedRefusal::Key(KeyRefusal::BadSignature))
    );
    let unknown = CommandSigner::from_seed("someone", &[6; 32]);
    assert_eq!(
        agent.check(
            &wire(&reading(FeedKind::Market, 1), &unknown),
            FeedKind::Market,
            now
        ),
        Err(FeedRefusal::Key(KeyRefusal::Unknown("someone".into())))
    );
    // The payload changed after signing.
    let mut tampered = reading(FeedKind::Market, 2).sign(&key()).expect("signs");
    tampered.payload = tampered.payload.replace("28.0", "0.12");
    assert_eq!(
        agent.check(
            &serde_json::to_vec(&tampered).expect("encodes"),
            FeedKind::Market,
            now
        ),
        Err(FeedRefusal::Key(KeyRefusal::BadSignature))
    );
    // Another site's reading, a market reading on the grid topic.
    let mut elsewhere = reading(FeedKind::Market, 3);
    elsewhere.site = Name::new("ok-east").expect("valid");
    assert_eq!(
        agent.check(&wire(&elsewhere, &key()), FeedKind::Market, now),
        Err(FeedRefusal::OtherSite("ok-east".into()))
    );
    assert!(matches!(
        agent.check(
            &wire(&reading(FeedKind::Market, 4), &key()),
            FeedKind::Grid,
            now
        ),
        Err(FeedRefusal::WrongTopic { .. })
    ));
    // Expired, and from too far ahead.
    assert_eq!(
        agent.check(
            &wire(&reading(FeedKind::Market, 5), &key()),
            FeedKind::Market,
            NOW + 900
        ),
        Err(FeedRefusal::Expired {
            expires_at: NOW + 900,
            now: NOW + 900
        })
    );
    assert!(matches!(
        agent.check(
            &wire(&reading(FeedKind::Market, 6), &key()),
            FeedKind::Market,
            NOW - MAX_CLOCK_SKEW_S - 1
        ),
        Err(FeedRefusal::FromTheFuture { .. })
    ));
    // None of that moved the sequence: the real reading is still taken.
    assert!(matches!(
        agent.check(
            &wire(&reading(FeedKind::Market, 1), &key()),
            FeedKind::Market,
            now
        ),
        Ok(Some(_))
    ));
}
