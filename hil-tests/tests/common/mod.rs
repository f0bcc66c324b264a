//! The agent's audit log held against what the broker carried (suites that stop or kill the
//! agent read its store afterwards).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::Path;

use hashwarden::store::{AuditEntry, AuditKind, Store};

/// The audit log in the agent's store at `path`, oldest first.
pub fn audit_log(path: &Path) -> Vec<AuditEntry> {
    let store = Store::open(path).expect("the agent's store opens");
    let mut entries = store.history(None, usize::MAX >> 1).expect("reads");
    entries.reverse();
    entries
}

/// The first `words` words of each entry of `kind` (`sent`: the command's id; `ack`: its id and
/// status), lower case.
fn heads(audit: &[AuditEntry], kind: AuditKind, words: usize) -> BTreeSet<String> {
    audit
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| {
            let head: Vec<&str> = e.detail.split_whitespace().take(words).collect();
            head.join(" ").trim_end_matches(':').to_lowercase()
        })
        .collect()
}

/// Panics unless every command (its id) is in the log as sent.
pub fn assert_commands_audited(audit: &[AuditEntry], commands: &[String]) {
    let sent = heads(audit, AuditKind::Sent, 1);
    for id in commands {
        assert!(
            sent.contains(id),
            "{id} on the broker, not in the audit log"
        );
    }
}

/// Panics unless every command is in the log as sent and every ack (`id status`, as
/// `BrokerRecord::acks` gives them) as received.
pub fn assert_audited(audit: &[AuditEntry], commands: &[String], acks: &[String]) {
    assert_commands_audited(audit, commands);
    let acked = heads(audit, AuditKind::Ack, 2);
    for ack in acks {
        assert!(
            acked.contains(ack),
            "the ack {ack:?} on the broker, not in the audit log: {acked:?}"
        );
    }
}
