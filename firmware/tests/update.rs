//! A/B updates under the supervisor (issue #7), end to end: `hashwarden-fw supervise` runs the
//! factory build (this binary, on a simulated board), `hashwarden-fw install` puts a signed image
//! in the inactive slot on trial; a build that exits at start or hangs without reporting healthy
//! is rolled back by itself, a good one is committed. Then a power cut (SIGKILL to the install or
//! to the supervisor's whole process group) at every step of an update: each leaves a board that
//! starts a healthy build, with a consistent boot pointer.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BOARD: &str = "bm1397-hashboard-12";
const SEED: [u8; 32] = [21; 32];
const SOON: Duration = Duration::from_secs(30);

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_hashwarden-fw")
}

struct Board {
    dir: PathBuf,
    config: String,
}

impl Board {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("hw-update-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let public: String = fleet_proto::CommandSigner::from_seed("release", &SEED)
            .public_key()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let config = dir.join("fw.toml");
        std::fs::write(
            &config,
            format!(
                "[board]\nname = \"{BOARD}\"\n[daemon]\ndata_dir = \"{}\"\n\
                 [update]\nrelease_keys = [{{ id = \"release\", public_key = \"{public}\" }}]\n\
                 health_deadline_s = 3\nmax_attempts = 2\n",
                dir.join("data").display()
            ),
        )
        .expect("writes");
        Self {
            config: config.display().to_string(),
            dir,
        }
    }

    /// A signed image whose payload is `script` (a shell script stands in for a build).
    fn image(&self, name: &str, script: &str) -> String {
        let image = fleet_proto::image::build(
            script.as_bytes(),
            fleet_proto::image::Version(0, 9, 0),
            &[BOARD.to_string()],
            "release",
            &SEED,
            0,
        );
        let path = self.dir.join(format!("{name}.img"));
        std::fs::write(&path, image).expect("writes");
        path.display().to_string()
    }

    fn install(&self, image: &str, abort_at: Option<&str>) -> std::process::Output {
        let mut command = Command::new(bin());
        command.args(["install", image, "--config", &self.config]);
        if let Some(step) = abort_at {
            command.env("HASHWARDEN_UPDATE_ABORT_AT", step);
        }
        command.output().expect("runs")
    }

    /// The supervisor in its own process group, so a power cut can take it and its build.
    fn supervise(&self, log: &str, abort_at: Option<&str>) -> Supervisor {
        let log = self.dir.join(log);
        let mut command = Command::new(bin());
        command
            .args(["supervise", "--config", &self.config, "--"])
            .args(testbed::SIM_DAEMON_ARGS)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .process_group(0);
        if let Some(step) = abort_at {
            command.env("HASHWARDEN_UPDATE_ABORT_AT", step);
        }
        Supervisor {
            child: command.spawn().expect("starts"),
            log,
        }
    }

    fn boot(&self) -> serde_json::Value {
        std::fs::read(self.dir.join("data/firmware/boot.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::json!({"active": null, "trial": null}))
    }

    fn healthy(&self) -> bool {
        self.dir.join("data/firmware/healthy").exists()
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

struct Supervisor {
    child: Child,
    log: PathBuf,
}

impl Supervisor {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for_log(&self, needle: &str) {
        wait_until(
            || self.log_text().contains(needle),
            &format!("{needle:?} in\n{}", self.log_text()),
        );
    }

    /// Power cut: SIGKILL to the whole group, the build with it.
    fn cut_power(mut self) {
        let group = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }

    fn stop(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + SOON;
        loop {
            if let Some(status) = self.child.try_wait().expect("waits") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "supervisor did not stop:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn wait_until(mut done: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + SOON;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const GOOD: &str = "#!/bin/sh\necho healthy > \"$HASHWARDEN_HEALTH_FILE\"\nexec sleep 600\n";
const EXITS: &str = "#!/bin/sh\nexit 3\n";
const HANGS: &str = "#!/bin/sh\nexec sleep 600\n";

#[test]
fn bad_builds_roll_back_by_themselves_and_a_good_one_is_committed() {
    let board = Board::new("rollback");
    let supervisor = board.supervise("supervisor.log", None);
    wait_until(|| board.healthy(), "the factory build healthy");

    // Exits at start: started twice (max_attempts), then rolled back to the factory build.
    let installed = board.install(&board.image("exits", EXITS), None);
    assert!(
        installed.status.success(),
        "{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    assert_eq!(board.boot()["trial"]["slot"], "a");
    supervisor.wait_for_log("rolled back");
    assert_eq!(supervisor.log_text().matches("the build exited").count(), 2);
    assert_eq!(
        board.boot(),
        serde_json::json!({"active": null, "trial": null})
    );
    wait_until(|| board.healthy(), "the factory build healthy again");

    // Hangs without reporting healthy: killed at the deadline, rolled back.
    assert!(
        board
            .install(&board.image("hangs", HANGS), None)
            .status
            .success()
    );
    supervisor.wait_for_log("no health report in time");
    wait_until(|| board.boot()["trial"].is_null(), "the trial given up");
    assert!(board.boot()["active"].is_null());
    wait_until(|| board.healthy(), "the factory build healthy again");

    // A good build reports healthy and is committed; a refused image changes nothing.
    let mut tampered = std::fs::read(board.image("good", GOOD)).expect("reads");
    let last = tampered.len() - 2;
    tampered[last] ^= 1;
    let tampered_path = board.dir.join("tampered.img");
    std::fs::write(&tampered_path, tampered).expect("writes");
    let refused = board.install(&tampered_path.display().to_string(), None);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("payload hash"));
    assert_eq!(board.boot()["trial"], serde_json::Value::Null);
    assert!(
        !board
            .dir
            .join("data/firmware/slot-a/hashwarden-fw.partial")
            .exists()
    );

    assert!(
        board
            .install(&board.image("good", GOOD), None)
            .status
            .success()
    );
    supervisor.wait_for_log("committed");
    assert_eq!(
        board.boot(),
        serde_json::json!({"active": "a", "trial": null})
    );
    let manifest = std::fs::read_to_string(board.dir.join("data/firmware/slot-a/manifest.json"))
        .expect("the slot's manifest");
    assert!(manifest.contains("0.9.0"));
    // The next update goes to the other slot.
    assert!(
        board
            .install(&board.image("good-2", GOOD), None)
            .status
            .success()
    );
    assert_eq!(board.boot()["trial"]["slot"], "b");
    supervisor.wait_for_log("restarting into it");
    wait_until(
        || board.boot() == serde_json::json!({"active": "b", "trial": null}),
        "slot b committed",
    );
    assert!(supervisor.stop().success());
}

#[test]
fn a_power_cut_at_any_step_of_an_update_leaves_a_board_that_starts() {
    let install_steps = [
        "payload-streaming",
        "payload-written",
        "slot-renamed",
        "manifest-written",
        "manifest-renamed",
        "pointer-written",
        "pointer-renamed",
    ];
    for step in install_steps {
        let board = Board::new(&format!("cut-{step}"));
        let cut = board.install(&board.image("good", GOOD), Some(step));
        assert!(!cut.status.success(), "{step}: the install was cut");
        let supervisor = board.supervise("after.log", None);
        wait_until(
            || board.healthy(),
            &format!("a healthy build after a cut at {step}"),
        );
        // Before the pointer names the trial, the board is as it was; after, the new build
        // commits. Either way nothing is half-done.
        let expected = if step == "pointer-renamed" {
            serde_json::json!({"active": "a", "trial": null})
        } else {
            serde_json::json!({"active": null, "trial": null})
        };
        wait_until(
            || board.boot() == expected,
            &format!("{expected} after {step}: {}", board.boot()),
        );
        supervisor.cut_power();
    }
    // And inside the supervisor: after counting a trial start, and right after committing.
    for step in ["trial-counted", "committed"] {
        let board = Board::new(&format!("cut-{step}"));
        assert!(
            board
                .install(&board.image("good", GOOD), None)
                .status
                .success()
        );
        let mut first = board.supervise("first.log", Some(step));
        wait_until(
            || first.child.try_wait().ok().flatten().is_some(),
            &format!("the supervisor cut at {step}"),
        );
        // Whatever it had started goes with the power.
        first.cut_power();
        let again = board.supervise("again.log", None);
        wait_until(
            || board.boot() == serde_json::json!({"active": "a", "trial": null}) && board.healthy(),
            &format!(
                "slot a committed and healthy after a cut at {step}: {}",
                board.boot()
            ),
        );
        again.cut_power();
    }
}

#[test]
fn an_install_refuses_another_boards_image_and_a_second_trial() {
    let board = Board::new("refusals");
    let other = fleet_proto::image::build(
        GOOD.as_bytes(),
        fleet_proto::image::Version(0, 9, 0),
        &["s19-control".to_string()],
        "release",
        &SEED,
        0,
    );
    let other_path = board.dir.join("other.img");
    std::fs::write(&other_path, other).expect("writes");
    let refused = board.install(&other_path.display().to_string(), None);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not for this board"));
    assert!(
        board
            .install(&board.image("good", GOOD), None)
            .status
            .success()
    );
    let second = board.install(&board.image("good", GOOD), None);
    assert!(String::from_utf8_lossy(&second.stderr).contains("already on trial"));
    let binary = Path::new(&board.dir).join("data/firmware/slot-a/hashwarden-fw");
    let mode = std::fs::metadata(&binary)
        .expect("installed")
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "executable");
}
