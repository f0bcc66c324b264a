//! `hashwarden-fw image build|verify` end to end: an image built with a release key file verifies
//! against its public key, and the command refuses — with a reason, exit code 1 — an image for
//! another board, a downgrade, a tampered file, and a release key others can read.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

const BOARD: &str = "bm1397-hashboard-12";

fn firmware(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hashwarden-fw"))
        .args(args)
        .output()
        .expect("runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn an_image_is_built_verified_and_refused_for_the_right_reasons() {
    let dir = std::env::temp_dir().join(format!("hw-fw-image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let key = dir.join("release.key");
    let seed = [42u8; 32];
    let seed_hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&key, format!("{seed_hex}\n")).expect("writes");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let public: String = fleet_proto::CommandSigner::from_seed("release", &seed)
        .public_key()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let bin = dir.join("payload.bin");
    std::fs::write(&bin, vec![0x7f; 50_000]).expect("writes");
    let image = dir.join("fw.img");
    let path = |p: &std::path::Path| p.display().to_string();

    let built = firmware(&[
        "image",
        "build",
        "--bin",
        &path(&bin),
        "--board",
        BOARD,
        "--board",
        "bitaxe-max",
        "--key",
        &path(&key),
        "--version",
        "0.4.2",
        "-o",
        &path(&image),
    ]);
    assert!(built.status.success(), "{}", text(&built.stderr));

    let verified = firmware(&[
        "image",
        "verify",
        &path(&image),
        "--pubkey",
        &public,
        "--board",
        BOARD,
    ]);
    assert!(verified.status.success(), "{}", text(&verified.stderr));
    let manifest: serde_json::Value = serde_json::from_slice(&verified.stdout).expect("json");
    assert_eq!(manifest["version"], "0.4.2");
    assert_eq!(manifest["size"], 50_000);
    assert_eq!(manifest["boards"][1], "bitaxe-max");

    let refused = |args: &[&str], reason: &str| {
        let output = firmware(args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let message = text(&output.stderr);
        assert!(message.contains(reason), "{args:?}: {message}");
    };
    let img = path(&image);
    refused(
        &[
            "image",
            "verify",
            &img,
            "--pubkey",
            &public,
            "--board",
            "s19-control",
        ],
        "not for this board",
    );
    refused(
        &[
            "image",
            "verify",
            &img,
            "--pubkey",
            &public,
            "--min-version",
            "0.5.0",
        ],
        "below the minimum",
    );
    let other_key: String = "ab".repeat(32);
    let stranger = fleet_proto::CommandSigner::from_seed("x", &[1; 32]).public_key();
    let stranger: String = stranger.iter().map(|b| format!("{b:02x}")).collect();
    refused(
        &["image", "verify", &img, "--pubkey", &stranger],
        "bad signature",
    );
    refused(
        &["image", "verify", &img, "--pubkey", &other_key],
        "--pubkey",
    );

    let mut tampered = std::fs::read(&image).expect("reads");
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let tampered_path = dir.join("tampered.img");
    std::fs::write(&tampered_path, tampered).expect("writes");
    refused(
        &[
            "image",
            "verify",
            &path(&tampered_path),
            "--pubkey",
            &public,
        ],
        "payload hash",
    );

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    refused(
        &[
            "image",
            "build",
            "--bin",
            &path(&bin),
            "--board",
            BOARD,
            "--key",
            &path(&key),
            "-o",
            &path(&dir.join("x.img")),
        ],
        "readable by others",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
