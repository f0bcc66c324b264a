//! The invariant the stratum fuzz target checks, shared with the corpus replay in
//! `tests/fuzz_corpus.rs` so it runs on stable in every test run.

use stratum::Session;

/// The pool's answers to the session's opening requests (ids 1 to 3: configure, subscribe,
/// authorize), so most inputs explore a session that is mining, not one still shaking hands.
pub const HANDSHAKE: [&str; 3] = [
    r#"{"id":1,"result":{"version-rolling":true,"version-rolling.mask":"1fffe000"},"error":null}"#,
    r#"{"id":2,"result":[[["mining.notify","ae6812eb4cd7735a302a8a9dd95cf71f"]],"08000002",4],"error":null}"#,
    r#"{"id":3,"result":true,"error":null}"#,
];

/// Whatever a pool sends, line by line: an error or events, never a panic; and whenever the
/// session hands out work, that work is well formed and a share on it can be submitted.
pub fn check_pool(data: &[u8]) {
    // The first byte chooses whether the pool skips the handshake; the rest is its lines.
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut session = Session::new("bc1qworker.rig1", "x");
    let _ = session.start();
    if mode & 1 == 0 {
        for line in HANDSHAKE {
            let _ = session.handle_line(line);
        }
    }
    let text = String::from_utf8_lossy(rest);
    for line in text.split('\n') {
        if session.handle_line(line).is_err() {
            // The firmware drops a pool that breaks the protocol; a new session starts afresh.
            continue;
        }
        let Some(work) = session.next_work() else {
            continue;
        };
        assert!(work.difficulty.is_finite() && work.difficulty > 0.0);
        let version = work.header.version;
        let line = session
            .submit(
                &work.job_id,
                &work.extranonce2,
                work.header.ntime,
                0,
                version,
            )
            .expect("a share on work just handed out has its job");
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("the submit is JSON");
        assert_eq!(parsed["method"], "mining.submit");
    }
}
