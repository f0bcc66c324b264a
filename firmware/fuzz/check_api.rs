//! The invariants the API fuzz target checks, shared with the corpus replay in
//! `tests/fuzz_corpus.rs` so they run on stable in every test run: what anyone on the network
//! can send the miner's APIs — a cgminer (port 4028) request, or the body of an AxeOS
//! `PATCH /api/system`.

use hashwarden_fw::local::LocalAction;
use hashwarden_fw::snapshot::{ChainRow, PoolRow, Snapshot};
use serde_json::Value;

fn snapshot() -> Snapshot {
    Snapshot {
        board: "bm1397-hashboard-12",
        asic_model: "BM1397",
        elapsed_s: 120,
        pools: vec![PoolRow {
            url: "stratum+tcp://pool.example:3333".into(),
            user: "bc1qworker.rig1".into(),
            alive: true,
        }],
        chains: vec![ChainRow {
            chips: 12,
            chips_up: 12,
            model: "BM1397",
            ..ChainRow::default()
        }],
        ..Snapshot::default()
    }
}

/// The first byte picks the API; the rest is the request.
pub fn check_api(data: &[u8]) {
    let Some((&which, request)) = data.split_first() else {
        return;
    };
    if which & 1 == 0 {
        check_cgminer(request);
    } else {
        check_patch(request);
    }
}

/// A reply for anything, never a panic: NUL-terminated as clients read it, and JSON when asked
/// in JSON.
fn check_cgminer(request: &[u8]) {
    let reply = hashwarden_fw::cgminer::respond(request, &snapshot(), 1_771_891_200);
    let (&last, body) = reply.split_last().expect("a reply");
    assert_eq!(last, 0, "NUL-terminated");
    assert!(!body.contains(&0), "one NUL, at the end");
    let text = std::str::from_utf8(body).expect("UTF-8");
    let trimmed = String::from_utf8_lossy(request);
    if trimmed
        .trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .starts_with('{')
    {
        serde_json::from_str::<Value>(text).expect("a JSON request gets JSON");
    }
}

/// A body is refused or turned into changes, never a panic; each change is the one its field
/// asked for.
fn check_patch(body: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let Ok(actions) = hashwarden_fw::http::patch_actions(&value) else {
        return;
    };
    assert!(!actions.is_empty());
    for action in actions {
        match action {
            LocalAction::Command(fleet_proto::Action::SetVoltage { millivolts }) => {
                let asked = value["coreVoltage"].as_f64().expect("asked for");
                assert_eq!(f64::from(millivolts), asked.round());
            }
            LocalAction::Command(fleet_proto::Action::SetFrequency { mhz }) => {
                assert_eq!(Some(mhz), value["frequency"].as_f64());
            }
            LocalAction::Fan(Some(duty)) => {
                assert!(value["fanspeed"].is_number(), "{duty}");
            }
            LocalAction::Fan(None) => assert_eq!(value["autofanspeed"], 1),
            other => panic!("{other:?} from a PATCH"),
        }
    }
}
