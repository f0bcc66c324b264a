//! An update by fleet command, end to end (issue #7): a miner under `hashwarden-fw supervise` on a
//! real broker is sent signed `update` commands; it fetches the image over HTTP from a local
//! server, refuses the ones that are not what the command pinned or cannot be fetched (mining on,
//! nothing switched), installs the right one on trial, and comes back on the broker as the new
//! version once the supervisor has committed it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use common::fleet::{Broker, Host, Process, config, scratch};
use fleet_proto::Action;
use fleet_proto::image::Version;
use testbed::release;

const SOON: Duration = Duration::from_secs(30);
const BOARD: &str = "bm1397-hashboard-12";

/// Serves `files` (path → bytes) over HTTP/1.0 on loopback, one connection at a time, for as
/// long as the test runs; anything else is a 404. Returns the base URL.
fn serve(files: Vec<(String, Vec<u8>)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = String::new();
            if BufReader::new(&stream).read_line(&mut request).is_err() {
                continue;
            }
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let _ = match files.iter().find(|(p, _)| p == path) {
                Some((_, body)) => stream
                    .write_all(
                        format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                            .as_bytes(),
                    )
                    .and_then(|()| stream.write_all(body)),
                None => stream.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            };
        }
    });
    base
}

/// A signed image whose payload runs this very daemon, and its payload's hash.
fn image(version: Version) -> (Vec<u8>, String) {
    let script = release::script_running(Path::new(env!("CARGO_BIN_EXE_hashwarden-fw")), version);
    let bytes = release::image(&script, version, BOARD);
    let manifest = fleet_proto::image::verify(
        bytes.as_slice(),
        &fleet_proto::image::Policy {
            keys: &release::trusted(),
            board: Some(BOARD),
            min_version: None,
            max_size: 1 << 20,
        },
        &mut std::io::sink(),
    )
    .expect("a good image");
    (bytes, manifest.sha256)
}

/// The `[update]` section of a board that trusts the release key.
fn update_section(extra: &str) -> String {
    format!(
        "[update]\nrelease_keys = [{{ id = \"{}\", public_key = \"{}\" }}]\n{extra}",
        release::KEY_ID,
        release::public_key()
    )
}

fn boot(data: &Path) -> serde_json::Value {
    std::fs::read(data.join("firmware/boot.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::json!({"active": null, "trial": null}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_command_is_fetched_checked_installed_and_comes_back_as_the_new_version() {
    let dir = scratch("fleet-update");
    let data = dir.join("data");
    let broker = Broker::start(&dir);
    let mut host = Host::connect(broker.port, "update-host").await;
    let update_section = update_section("health_deadline_s = 30\n");
    let new_version = Version(0, 9, 0);
    let (good, good_sha) = image(new_version);
    // Another build, validly signed: its payload (and version) differ from the one pinned.
    let (other, other_sha) = image(Version(0, 9, 1));
    assert_ne!(other_sha, good_sha);
    let mut tampered = good.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let base = serve(vec![
        ("/good.img".into(), good),
        ("/other.img".into(), other),
        ("/tampered.img".into(), tampered),
    ]);
    let config_path = dir.join("hw.toml");
    std::fs::write(&config_path, config(broker.port, &data, &update_section)).expect("writes");
    let supervisor = Process::supervised_sim_miner(
        &config_path.display().to_string(),
        dir.join("supervisor.log"),
    );
    let factory = env!("CARGO_PKG_VERSION");
    host.wait_for("state", SOON, |s| s.json()["firmware"] == factory)
        .await;

    let update = |path: &str, sha256: &str, version: Version| Action::Update {
        url: format!("{base}{path}"),
        sha256: sha256.to_string(),
        version,
    };
    // Each refused with its reason; nothing switched, the factory build mines on.
    let refusals: [(Action, String); 5] = [
        (
            update("/missing.img", &good_sha, new_version),
            "HTTP 404".into(),
        ),
        // Validly signed, but not the image the command pinned: by payload, and by version.
        (
            update("/other.img", &good_sha, new_version),
            format!("not the {good_sha} asked for"),
        ),
        (
            update("/good.img", &good_sha, Version(0, 9, 2)),
            "not the 0.9.2 asked for".into(),
        ),
        (
            update("/tampered.img", &good_sha, new_version),
            "refused: payload".into(),
        ),
        (
            Action::Update {
                url: "http://127.0.0.1:9/nothing-listens.img".into(),
                sha256: good_sha.clone(),
                version: new_version,
            },
            "127.0.0.1:9".into(),
        ),
    ];
    let refused = refusals.len() as u64;
    for (seq, (action, reason)) in (1u64..).zip(refusals) {
        host.send(host.sign(&host.command(action, seq))).await;
        let ack = host.final_ack(&format!("cmd-{seq:06}")).await;
        assert_eq!(ack["status"], "failed", "{ack}");
        assert!(
            ack["reason"]
                .as_str()
                .unwrap_or("")
                .contains(reason.as_str()),
            "{reason:?} in {ack}"
        );
        assert_eq!(
            boot(&data),
            serde_json::json!({"active": null, "trial": null})
        );
    }
    assert!(!data.join("firmware/slot-a/hashwarden-fw.partial").exists());
    assert!(!data.join("firmware/slot-a/hashwarden-fw").exists());
    host.wait_for("telemetry", SOON, |s| s.json()["mode"] == "mining")
        .await;

    // The right one: installed on trial, the supervisor restarts into it, it reports healthy
    // and is committed, and the fleet sees the new version.
    host.send(host.sign(&host.command(update("/good.img", &good_sha, new_version), refused + 1)))
        .await;
    let ack = host.final_ack(&format!("cmd-{:06}", refused + 1)).await;
    assert_eq!(ack["status"], "applied", "{ack}");
    assert!(
        ack["reason"]
            .as_str()
            .unwrap_or("")
            .contains("installed 0.9.0 into slot A"),
        "{ack}"
    );
    let state = host
        .wait_for("state", SOON, |s| s.json()["firmware"] == "0.9.0")
        .await
        .json();
    assert_eq!(state["mode"], "mining", "{state}");
    host.wait_for("telemetry", SOON, |s| {
        let t = s.json();
        t["firmware"] == "0.9.0" && t["mode"] == "mining"
    })
    .await;
    let deadline = std::time::Instant::now() + SOON;
    while boot(&data) != serde_json::json!({"active": "a", "trial": null}) {
        assert!(
            std::time::Instant::now() < deadline,
            "not committed: {}\n{}",
            boot(&data),
            supervisor.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The sequence numbers outlived the restart into the new build: the old command again is a
    // duplicate, not a second install.
    host.send(host.sign(&host.command(update("/good.img", &good_sha, new_version), refused + 1)))
        .await;
    let again = host
        .wait_for("ack", SOON, |s| {
            s.json()["id"] == format!("cmd-{:06}", refused + 1)
        })
        .await
        .json();
    assert_eq!(again["status"], "duplicate", "{again}");
}

/// A daemon no supervisor started would install an image nothing ever boots, and one without
/// `[update]` trusts no release key: both say so instead of fetching.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_is_refused_where_it_could_never_run() {
    let dir = scratch("fleet-update-unsupervised");
    let broker = Broker::start(&dir);
    let mut host = Host::connect(broker.port, "update-host-2").await;
    let (_, sha256) = image(Version(0, 9, 0));
    let update = Action::Update {
        url: "http://127.0.0.1:9/never-fetched.img".into(),
        sha256,
        version: Version(0, 9, 0),
    };
    let cases = [
        (
            update_section(""),
            "not running under `hashwarden-fw supervise`",
        ),
        (String::new(), "no [update] section"),
    ];
    for (seq, (section, reason)) in (1u64..).zip(cases) {
        let run = format!("unsupervised-{seq}");
        let daemon = common::fleet::Daemon::start(
            &dir,
            &config(broker.port, &dir.join(&run), &section),
            &run,
        );
        host.wait_for("telemetry", SOON, |s| s.json()["mode"] == "mining")
            .await;
        host.send(host.sign(&host.command(update.clone(), seq)))
            .await;
        let ack = host.final_ack(&format!("cmd-{seq:06}")).await;
        assert_eq!(ack["status"], "failed", "{ack}");
        assert!(
            ack["reason"].as_str().unwrap_or("").contains(reason),
            "{reason:?} in {ack}"
        );
        let (status, _) = daemon.terminate();
        assert!(status.success());
        // Everything this daemon published is behind its goodbye: the next one's telemetry is
        // its own.
        host.wait_for("status", SOON, |s| s.text() == "offline")
            .await;
    }
}
