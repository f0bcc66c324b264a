//! What the agent keeps of its run: the store (switch history, overrides, the fleet table, the
//! audit log), the audit entries of the round not yet written, and the run's counters — one set,
//! which the end-of-run summary and `/metrics` both read.

use tracing::warn;

use crate::metrics::Counters;
use crate::store::{AuditEntry, Store};

#[derive(Debug, Default)]
pub(super) struct Records {
    /// `None` only in unit tests that plan without a store.
    store: Option<Store>,
    /// Written at the end of each round, in one transaction.
    queue: Vec<AuditEntry>,
    pub counters: Counters,
}

impl Records {
    pub fn attach(&mut self, store: Store) {
        self.store = Some(store);
    }

    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    pub fn store_mut(&mut self) -> Option<&mut Store> {
        self.store.as_mut()
    }

    /// Queues `entry` for the audit log (nothing without a store).
    pub fn audit(&mut self, entry: AuditEntry) {
        if self.store.is_some() {
            self.queue.push(entry);
        }
    }

    /// Writes the queued entries in one transaction; a store error is logged, since the fleet
    /// must not stop for a full disk.
    pub fn flush(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        let entries = std::mem::take(&mut self.queue);
        if let Some(store) = &mut self.store
            && let Err(e) = store.audit_all(&entries)
        {
            warn!(error = %e, entries = entries.len(), "audit log write failed");
        }
    }
}
