//! Firmware updates on the board: two slots (A and B) beside the factory binary, a boot pointer
//! written atomically, an installer that verifies an image before anything is switched, and the
//! supervisor that boots a new slot on trial and rolls back by itself when it does not come up
//! healthy. `docs/flashing.md` has the whole story.

mod fetch;
mod install;
mod slots;
mod supervise;

pub use fetch::{Fetch, Updater};
pub use install::{Expected, install};
pub use supervise::{HEALTH_FILE_VAR, HealthReport, Supervision, VERSION_VAR, supervise};

pub use crate::config::UpdateSection;

/// A test hook: `HASHWARDEN_UPDATE_ABORT_AT=<step>` aborts the process at that step, as a power
/// cut would, so the tests can show every step leaves a board that starts. Only in builds with
/// the `test-hooks` feature (the tests'); a shipped daemon has no such switch.
#[cfg(feature = "test-hooks")]
pub(crate) fn crash_point(step: &str) {
    if std::env::var("HASHWARDEN_UPDATE_ABORT_AT").is_ok_and(|at| at == step) {
        std::process::abort();
    }
}

#[cfg(not(feature = "test-hooks"))]
pub(crate) fn crash_point(_step: &str) {}
