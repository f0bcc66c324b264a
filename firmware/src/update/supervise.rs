//! `hashwarden-fw supervise`: starts the committed build (or the factory one — this binary), and
//! a build on trial when the pointer has one. A trial build must report healthy within the
//! deadline to be committed; if it exits first it is started again, counted, up to
//! `max_attempts`; a hang past the deadline or the last failed attempt rolls back to what was
//! committed. The decisions are the pure functions at the top; the loop below only carries
//! them out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{info, warn};

use super::slots::{Boot, Slot, Slots, Trial};
use super::{UpdateSection, crash_point};

/// What to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Factory,
    Slot(Slot),
}

/// The next start: what to run, the pointer to persist first, and whether it runs on trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub start: Start,
    pub boot: Boot,
    pub on_trial: bool,
    /// A trial given up on this start (its attempts used, or its binary gone).
    pub rolled_back: Option<Slot>,
}

pub fn next_start(boot: Boot, max_attempts: u32, exists: impl Fn(Slot) -> bool) -> Plan {
    let committed = |active: Option<Slot>| match active {
        Some(slot) if exists(slot) => Start::Slot(slot),
        _ => Start::Factory,
    };
    match boot.trial {
        Some(trial) if trial.attempts < max_attempts && exists(trial.slot) => Plan {
            start: Start::Slot(trial.slot),
            boot: Boot {
                trial: Some(Trial {
                    attempts: trial.attempts + 1,
                    ..trial
                }),
                ..boot
            },
            on_trial: true,
            rolled_back: None,
        },
        Some(trial) => Plan {
            start: committed(boot.active),
            boot: give_up(boot),
            on_trial: false,
            rolled_back: Some(trial.slot),
        },
        None => Plan {
            start: committed(boot.active),
            boot,
            on_trial: false,
            rolled_back: None,
        },
    }
}

/// The trial build reported healthy: it is the committed one now.
pub fn commit(boot: Boot) -> Boot {
    match boot.trial {
        Some(trial) => Boot {
            active: Some(trial.slot),
            trial: None,
        },
        None => boot,
    }
}

pub fn give_up(boot: Boot) -> Boot {
    Boot {
        active: boot.active,
        trial: None,
    }
}

/// Where the supervisor tells a build to report health; set for every build it starts, so its
/// presence also says the daemon runs supervised.
pub const HEALTH_FILE_VAR: &str = "HASHWARDEN_HEALTH_FILE";
/// The running slot's version, from its manifest.
pub const VERSION_VAR: &str = "HASHWARDEN_FIRMWARE_VERSION";

/// The daemon's side: `HASHWARDEN_HEALTH_FILE` (set by the supervisor) is created once the
/// chains are up and, with a fleet link, the broker is connected.
#[derive(Debug, Default)]
pub struct HealthReport {
    path: Option<PathBuf>,
    reported: bool,
}

impl HealthReport {
    pub fn from_env() -> Self {
        Self {
            path: std::env::var_os(HEALTH_FILE_VAR).map(PathBuf::from),
            reported: false,
        }
    }

    pub fn observe(&mut self, chains_up: bool, connected: bool) {
        let Some(path) = &self.path else { return };
        if self.reported || !(chains_up && connected) {
            return;
        }
        match std::fs::write(path, b"healthy\n") {
            Ok(()) => info!("healthy: told the supervisor"),
            Err(e) => warn!(error = %e, path = %path.display(), "cannot report health"),
        }
        self.reported = true;
    }
}

/// How the supervisor runs: the data directory, the `[update]` limits, and the daemon's
/// arguments (passed to every build it starts).
#[derive(Debug, Clone)]
pub struct Supervision {
    pub data_dir: PathBuf,
    pub health_deadline: Duration,
    pub max_attempts: u32,
    pub daemon_args: Vec<String>,
}

impl Supervision {
    pub fn new(data_dir: &Path, update: &UpdateSection, daemon_args: Vec<String>) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            // Both range-checked at load (`config::check_numbers`).
            health_deadline: Duration::from_secs_f64(update.health_deadline_s),
            max_attempts: update.max_attempts,
            daemon_args,
        }
    }
}

const POLL: Duration = Duration::from_millis(100);
const STOP_GRACE: Duration = Duration::from_secs(30);
const RESTART_BACKOFF: Duration = Duration::from_secs(1);

/// Runs until SIGTERM or SIGINT, which it passes on to the build it runs.
pub async fn supervise(supervision: Supervision) -> Result<(), String> {
    let slots = Slots::new(&supervision.data_dir);
    // Where the health report goes, even before the first update.
    std::fs::create_dir_all(
        slots
            .health_file()
            .parent()
            .unwrap_or(&supervision.data_dir),
    )
    .map_err(|e| format!("{}: {e}", supervision.data_dir.display()))?;
    let factory = std::env::current_exe().map_err(|e| format!("own binary: {e}"))?;
    let mut stop = std::pin::pin!(cli_common::shutdown_signal());
    loop {
        let boot = slots.boot();
        let plan = next_start(boot, supervision.max_attempts, |s| slots.binary(s).exists());
        if let Some(slot) = plan.rolled_back {
            warn!(?slot, active = ?plan.boot.active, "the new build never came up healthy: rolled back");
        }
        if plan.boot != boot {
            slots
                .set_boot(&plan.boot)
                .map_err(|e| format!("boot pointer: {e}"))?;
        }
        if plan.on_trial {
            crash_point("trial-counted");
        }
        let health = slots.health_file();
        let _ = std::fs::remove_file(&health);
        let binary = match plan.start {
            Start::Factory => factory.clone(),
            Start::Slot(slot) => slots.binary(slot),
        };
        info!(start = ?plan.start, on_trial = plan.on_trial, attempt = plan.boot.trial.map(|t| t.attempts), "starting");
        let mut command = tokio::process::Command::new(&binary);
        command
            .args(&supervision.daemon_args)
            .env(HEALTH_FILE_VAR, &health)
            .kill_on_drop(true);
        // A slot's build reports the version its signed manifest names (what the fleet rolled
        // out), not whatever its own build metadata says; the factory build reports its own.
        match plan.start {
            Start::Slot(slot) => match slots.version(slot) {
                Some(version) => command.env(VERSION_VAR, version.to_string()),
                None => command.env_remove(VERSION_VAR),
            },
            Start::Factory => command.env_remove(VERSION_VAR),
        };
        let mut child = command
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let deadline = tokio::time::Instant::now() + supervision.health_deadline;
        let mut on_trial = plan.on_trial;
        let outcome = loop {
            tokio::select! {
                status = child.wait() => break Outcome::Exited(status.map_err(|e| e.to_string())?),
                () = &mut stop => break Outcome::Stop,
                () = tokio::time::sleep(POLL) => {}
            }
            if on_trial && health.exists() {
                slots
                    .set_boot(&commit(slots.boot()))
                    .map_err(|e| format!("boot pointer: {e}"))?;
                crash_point("committed");
                info!(start = ?plan.start, "the new build is healthy: committed");
                on_trial = false;
            } else if on_trial && tokio::time::Instant::now() >= deadline {
                break Outcome::Unhealthy;
            } else if !on_trial && slots.boot().trial.is_some() {
                break Outcome::NewTrial;
            }
        };
        match outcome {
            Outcome::Exited(status) => {
                warn!(%status, on_trial, "the build exited");
                tokio::time::sleep(RESTART_BACKOFF).await;
            }
            Outcome::Unhealthy => {
                warn!(
                    deadline_s = supervision.health_deadline.as_secs_f64(),
                    "no health report in time: rolling back"
                );
                let _ = child.kill().await;
                slots
                    .set_boot(&give_up(slots.boot()))
                    .map_err(|e| format!("boot pointer: {e}"))?;
            }
            Outcome::NewTrial => {
                info!("a new build is installed: restarting into it");
                terminate(&mut child).await;
            }
            Outcome::Stop => {
                terminate(&mut child).await;
                return Ok(());
            }
        }
    }
}

enum Outcome {
    Exited(std::process::ExitStatus),
    Unhealthy,
    NewTrial,
    Stop,
}

/// SIGTERM (the daemon ramps its chains down on it), then SIGKILL after the grace period.
async fn terminate(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u32 = 3;

    fn on_trial(slot: Slot, attempts: u32, active: Option<Slot>) -> Boot {
        Boot {
            active,
            trial: Some(Trial { slot, attempts }),
        }
    }

    #[test]
    fn a_trial_is_started_and_counted_until_its_attempts_run_out() {
        let mut boot = on_trial(Slot::B, 0, Some(Slot::A));
        for attempt in 1..=MAX {
            let plan = next_start(boot, MAX, |_| true);
            assert_eq!(plan.start, Start::Slot(Slot::B));
            assert!(plan.on_trial);
            assert_eq!(plan.boot.trial.map(|t| t.attempts), Some(attempt));
            boot = plan.boot;
        }
        let plan = next_start(boot, MAX, |_| true);
        assert_eq!(
            plan.start,
            Start::Slot(Slot::A),
            "back to the committed build"
        );
        assert_eq!(plan.rolled_back, Some(Slot::B));
        assert_eq!(
            plan.boot,
            Boot {
                active: Some(Slot::A),
                trial: None
            }
        );
    }

    #[test]
    fn with_nothing_committed_or_a_slot_missing_the_factory_build_runs() {
        assert_eq!(
            next_start(Boot::default(), MAX, |_| true).start,
            Start::Factory
        );
        let gone = Boot {
            active: Some(Slot::A),
            trial: None,
        };
        assert_eq!(next_start(gone, MAX, |_| false).start, Start::Factory);
        // A trial whose binary vanished is given up at once.
        let plan = next_start(on_trial(Slot::A, 0, None), MAX, |_| false);
        assert_eq!(
            (plan.start, plan.rolled_back),
            (Start::Factory, Some(Slot::A))
        );
    }

    #[test]
    fn commit_and_give_up_settle_the_trial() {
        let boot = on_trial(Slot::B, 2, Some(Slot::A));
        assert_eq!(
            commit(boot),
            Boot {
                active: Some(Slot::B),
                trial: None
            }
        );
        assert_eq!(
            give_up(boot),
            Boot {
                active: Some(Slot::A),
                trial: None
            }
        );
        let settled = Boot {
            active: Some(Slot::A),
            trial: None,
        };
        assert_eq!(commit(settled), settled);
    }
}
