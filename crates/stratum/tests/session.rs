//! The session against a scripted pool: handshake, work, submission and accounting; and hostile
//! pools, which get an error (the firmware drops them) and never a panic.

use serde_json::{Value, json};
use stratum::{Event, Phase, PoolError, Session};

const NOTIFY: &str = r#"{"id":null,"method":"mining.notify","params":["j1","bf44fd3513dc7b837d60e5c628b572b448d204a8000007490000000000000000","01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008","072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000",[],"20000004","1705dd01","64658bd8",true]}"#;

fn request(line: &str) -> (u64, String, Value) {
    let v: Value = serde_json::from_str(line).expect("json");
    (
        v["id"].as_u64().expect("id"),
        v["method"].as_str().expect("method").to_string(),
        v["params"].clone(),
    )
}

/// A session through the handshake, with work from NOTIFY.
fn ready() -> Session {
    let mut s = Session::new("bc1qworker.rig1", "x");
    let lines = s.start();
    let methods: Vec<String> = lines.iter().map(|l| request(l).1).collect();
    assert_eq!(
        methods,
        ["mining.configure", "mining.subscribe", "mining.authorize"]
    );
    let (configure, _, params) = request(&lines[0]);
    assert_eq!(params[1]["version-rolling.mask"], "1fffe000");
    let events = s
        .handle_line(&json!({"id": configure, "result": {"version-rolling": true, "version-rolling.mask": "1fffe000"}, "error": null}).to_string())
        .expect("configure");
    assert_eq!(events, [Event::VersionMask(0x1FFF_E000)]);
    let (subscribe, _, _) = request(&lines[1]);
    s.handle_line(&json!({"id": subscribe, "result": [[["mining.notify", "ae6812eb4cd7735a302a8a9dd95cf71f"]], "e9695791", 4], "error": null}).to_string())
        .expect("subscribe");
    assert_eq!(s.phase(), Phase::Handshake, "not authorized yet");
    let (authorize, _, params) = request(&lines[2]);
    assert_eq!(params, json!(["bc1qworker.rig1", "x"]));
    assert_eq!(
        s.handle_line(&json!({"id": authorize, "result": true, "error": null}).to_string()),
        Ok(vec![Event::Authorized])
    );
    assert_eq!(s.phase(), Phase::Ready);
    assert_eq!(
        s.handle_line(r#"{"id":null,"method":"mining.set_difficulty","params":[512]}"#),
        Ok(vec![Event::Difficulty(512.0)])
    );
    assert_eq!(
        s.handle_line(NOTIFY),
        Ok(vec![Event::Work {
            job_id: "j1".into(),
            clean: true
        }])
    );
    s
}

#[test]
fn work_rolls_extranonce2_and_builds_the_header() {
    let mut s = ready();
    let first = s.next_work().expect("work");
    let second = s.next_work().expect("work");
    assert_eq!(first.extranonce2, [0, 0, 0, 0]);
    assert_eq!(
        second.extranonce2,
        [1, 0, 0, 0],
        "little-endian counter, as ESP-Miner"
    );
    assert_ne!(first.header.merkle_root, second.header.merkle_root);
    assert_eq!((first.version_mask, first.difficulty), (0x1FFF_E000, 512.0));
    assert_eq!(
        (first.header.version, first.header.nbits, first.header.ntime),
        (0x2000_0004, 0x1705_dd01, 0x6465_8bd8)
    );
    // With no branches, the root is the coinbase's hash (coinbase from ESP-Miner's vector).
    let coinbase_hex = "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008e969579100000000072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000";
    let coinbase: Vec<u8> = (0..coinbase_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&coinbase_hex[i..i + 2], 16).expect("hex"))
        .collect();
    assert_eq!(first.header.merkle_root, bm13xx::header::sha256d(&coinbase));
}

#[test]
fn shares_are_submitted_and_counted() {
    let mut s = ready();
    let work = s.next_work().expect("work");
    let line = s
        .submit(
            "j1",
            &work.extranonce2,
            work.header.ntime,
            0x0a4c_049b,
            0x2000_6004,
        )
        .expect("job is current");
    let (id, method, params) = request(&line);
    assert_eq!(method, "mining.submit");
    assert_eq!(
        params,
        json!([
            "bc1qworker.rig1",
            "j1",
            "00000000",
            "64658bd8",
            "0a4c049b",
            "00006000"
        ])
    );
    assert_eq!(
        s.handle_line(&json!({"id": id, "result": true, "error": null}).to_string()),
        Ok(vec![Event::ShareResult {
            job_id: "j1".into(),
            accepted: true,
            reason: None
        }])
    );
    let line = s
        .submit("j1", &work.extranonce2, work.header.ntime, 1, 0x2000_0004)
        .expect("job is current");
    let (id, _, _) = request(&line);
    let events = s
        .handle_line(
            &json!({"id": id, "result": null, "error": [23, "Low difficulty share", null]})
                .to_string(),
        )
        .expect("answer");
    assert!(
        matches!(&events[..], [Event::ShareResult { accepted: false, reason: Some(r), .. }] if r.contains("Low difficulty"))
    );
    // A clean job voids j1: a late share for it is stale and not sent.
    s.handle_line(&NOTIFY.replace("\"j1\"", "\"j2\""))
        .expect("notify");
    assert_eq!(
        s.submit("j1", &work.extranonce2, work.header.ntime, 2, 0x2000_0004),
        None
    );
    let accounting = s.accounting();
    assert_eq!(
        (accounting.accepted, accounting.rejected, accounting.stale),
        (1, 1, 1)
    );
}

#[test]
fn pools_without_version_rolling_get_plain_submits() {
    let mut s = Session::new("w", "x");
    let lines = s.start();
    let (configure, _, _) = request(&lines[0]);
    let events = s
        .handle_line(
            &json!({"id": configure, "result": null, "error": [20, "Method not found", null]})
                .to_string(),
        )
        .expect("an unsupported configure is not fatal");
    assert_eq!(events, [Event::VersionMask(0)]);
    let (subscribe, _, _) = request(&lines[1]);
    s.handle_line(&json!({"id": subscribe, "result": [[], "00", 8], "error": null}).to_string())
        .expect("subscribe");
    let (authorize, _, _) = request(&lines[2]);
    s.handle_line(&json!({"id": authorize, "result": true, "error": null}).to_string())
        .expect("authorize");
    s.handle_line(NOTIFY).expect("notify");
    let work = s.next_work().expect("work");
    assert_eq!(work.extranonce2.len(), 8);
    let (_, _, params) = request(
        &s.submit("j1", &work.extranonce2, 1, 2, 0x2000_0004)
            .expect("current"),
    );
    assert_eq!(
        params.as_array().map(Vec::len),
        Some(5),
        "no version field without rolling"
    );
}

#[test]
fn hostile_and_broken_pools_are_errors() {
    let malformed = |line: &str| {
        let mut s = ready();
        matches!(s.handle_line(line), Err(PoolError::Malformed(_)))
    };
    assert!(malformed("not json"));
    assert!(malformed(&"[".repeat(300_000)));
    assert!(malformed(r#"{"result": true}"#), "a response without an id");
    assert!(malformed(
        r#"{"id":null,"method":"mining.notify","params":["j",1,2]}"#
    ));
    assert!(
        malformed(&NOTIFY.replace("20000004", "2000000")),
        "odd-length hex"
    );
    assert!(
        malformed(&NOTIFY.replace("20000004", "zz000004")),
        "not hex"
    );
    assert!(
        malformed(&NOTIFY.replace("\"j1\"", &format!("\"{}\"", "j".repeat(200)))),
        "job id too long"
    );
    assert!(
        malformed(&NOTIFY.replace("[],", &format!("[{}],", vec!["\"00\""; 40].join(",")))),
        "too many branches"
    );
    assert!(malformed(&NOTIFY.replace("true]", "\"yes\"]")));
    assert!(malformed(
        r#"{"id":null,"method":"mining.set_difficulty","params":[-1]}"#
    ));
    assert!(malformed(
        r#"{"id":null,"method":"mining.set_difficulty","params":["lots"]}"#
    ));
    assert!(malformed(
        r#"{"id":null,"method":"mining.set_extranonce","params":["00", 0]}"#
    ));
    assert!(malformed(
        r#"{"id":null,"method":"mining.set_extranonce","params":["00", 99]}"#
    ));
    // Unknown notifications and responses to nothing are ignored, not errors.
    let mut s = ready();
    assert_eq!(
        s.handle_line(r#"{"id":null,"method":"client.show_message","params":["hi"]}"#),
        Ok(vec![])
    );
    assert_eq!(
        s.handle_line(r#"{"id":999,"result":true,"error":null}"#),
        Ok(vec![])
    );
    // A refused login is a refusal.
    let mut s = Session::new("w", "bad");
    let lines = s.start();
    let (authorize, _, _) = request(&lines[2]);
    assert!(matches!(
        s.handle_line(
            &json!({"id": authorize, "result": false, "error": [24, "Unauthorized worker", null]})
                .to_string()
        ),
        Err(PoolError::Refused(_))
    ));
    assert_eq!(s.next_work(), None, "no work before the handshake");
}

proptest::proptest! {
    /// Whatever a pool sends, the session answers with events or an error.
    #[test]
    fn any_line_is_survived(line in ".{0,300}") {
        let mut s = ready();
        let _ = s.handle_line(&line);
        let _ = s.next_work();
    }

    #[test]
    fn any_json_shaped_line_is_survived(method in "[a-z._]{0,24}", params in proptest::collection::vec(".{0,20}", 0..10)) {
        let mut s = ready();
        let line = json!({"id": null, "method": method, "params": params}).to_string();
        let _ = s.handle_line(&line);
    }
}
