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
    /// Keys enrolled at first sight, written with the audit entries: a site coming up enrols
    /// thousands at once, one transaction per round rather than one per miner.
    enrolments: Vec<crate::enrol::NewEnrolment>,
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

    /// Queues a key enrolled at first sight for the store (nothing without one).
    pub fn enrolled(&mut self, new: crate::enrol::NewEnrolment) {
        if self.store.is_some() {
            self.enrolments.push(new);
        }
    }

    /// Writes the queued entries in one transaction; a store error is logged, since the fleet
    /// must not stop for a full disk.
    pub fn flush(&mut self) {
        if !self.enrolments.is_empty() {
            let enrolments = std::mem::take(&mut self.enrolments);
            if let Some(store) = &mut self.store
                && let Err(e) = store.save_enrolled(&enrolments)
            {
                warn!(error = %e, miners = enrolments.len(), "enrolments not stored: the next start enrols them again");
            }
        }
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
