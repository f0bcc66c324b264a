//! The signatures on the miners' reports, checked on a thread of their own between the MQTT link
//! and the agent's loop. The loop shares one thread with the link (the runtime is single-
//! threaded): signature arithmetic there — twenty times the cost of taking a bare report
//! (`host/benches/intake.rs`) — would hold up the commands going out while a burst of acks comes
//! in. Here it runs beside the loop, many reports at once (one Ed25519 batch verification), and
//! the loop receives each report with its verdict (`Incoming::checked`); whose word a good
//! signature is stays the loop's decision (`enrol.rs`).

use fleet_proto::report::{KeyCache, check_many};
use fleet_proto::{MinerTopic, Name};
use tokio::sync::mpsc;

use super::link::Incoming;

/// Reports checked together at most: batch verification halves the cost per signature from a
/// few dozen on; more would only add latency.
const BATCH: usize = 256;
/// Miners' keys kept decompressed (a site's miners and some to spare).
const KEY_CACHE: usize = 200_000;

/// Starts the verifier on `raw` (what the link received); what it returns is what the loop
/// reads. The thread ends when the link's side closes or the loop's is dropped.
pub fn spawn(
    mut raw: mpsc::Receiver<Incoming>,
    site: Name,
    queue: usize,
) -> mpsc::Receiver<Incoming> {
    let (checked_tx, checked) = mpsc::channel(queue);
    let started = std::thread::Builder::new()
        .name("report-verifier".into())
        .spawn(move || {
            let mut keys = KeyCache::new(KEY_CACHE);
            while let Some(first) = raw.blocking_recv() {
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match raw.try_recv() {
                        Ok(message) => batch.push(message),
                        Err(_) => break,
                    }
                }
                check(&mut batch, &site, &mut keys);
                for message in batch {
                    if checked_tx.blocking_send(message).is_err() {
                        return;
                    }
                }
            }
        });
    if let Err(e) = started {
        // Without the thread the loop checks each report itself (`Enrolment::open`): slower,
        // never wrong.
        tracing::warn!(error = %e, "no verifier thread: reports are checked on the loop");
    }
    checked
}

/// Sets `checked` on every report of `site`'s miners in `batch`.
fn check(batch: &mut [Incoming], site: &Name, keys: &mut KeyCache) {
    let reports: Vec<usize> = batch
        .iter()
        .enumerate()
        .filter(|(_, message)| {
            MinerTopic::parse(&message.topic)
                .is_ok_and(|t| t.site == *site && t.kind.signed_by_miner())
        })
        .map(|(i, _)| i)
        .collect();
    let items: Vec<(&str, &[u8])> = reports
        .iter()
        .map(|&i| (batch[i].topic.as_str(), batch[i].payload.as_slice()))
        .collect();
    let verdicts = check_many(&items, keys);
    for (i, verdict) in reports.into_iter().zip(verdicts) {
        batch[i].checked = Some(verdict);
    }
}
