//! `docs/mqtt.md` shows exactly the messages the code produces. `BLESS=1 cargo test -p fleet-proto
//! --test docs` rewrites its examples section after an intended change.

use std::path::PathBuf;

const START: &str = "<!-- examples:start -->";
const END: &str = "<!-- examples:end -->";

#[test]
fn the_mqtt_document_shows_every_message() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/mqtt.md");
    let doc = std::fs::read_to_string(&path).expect("docs/mqtt.md exists");
    let (Some(start), Some(end)) = (doc.find(START), doc.find(END)) else {
        panic!("docs/mqtt.md lacks the examples markers");
    };
    let generated = fleet_proto::examples::markdown();
    let current = &doc[start + START.len()..end];
    if std::env::var_os("BLESS").is_some() && current.trim() != generated.trim() {
        let updated = format!(
            "{}{START}\n\n{}{END}{}",
            &doc[..start],
            generated,
            &doc[end + END.len()..]
        );
        std::fs::write(&path, updated).expect("writes");
        return;
    }
    assert_eq!(
        current.trim(),
        generated.trim(),
        "docs/mqtt.md is stale: rerun with BLESS=1"
    );
    // And every example parses back into its type.
    for example in fleet_proto::examples::all() {
        if example.topic.ends_with("/cmd") {
            serde_json::from_str::<fleet_proto::SignedCommand>(&example.json)
                .expect("signed command");
        } else if example.topic.ends_with("/ack") {
            serde_json::from_str::<fleet_proto::Ack>(&example.json).expect("ack");
        }
    }
}
