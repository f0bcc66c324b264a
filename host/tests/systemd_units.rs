//! The shipped systemd units (#16: "the shipped systemd units raise `LimitNOFILE`"): each raises
//! the descriptor limit far above the default 1,024, starts a binary with arguments it takes, and
//! is the unit `docs/operations.md` shows.

use std::path::PathBuf;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn setting<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn units_raise_the_descriptor_limit_and_match_the_docs() {
    let operations = std::fs::read_to_string(repo("docs/operations.md")).expect("docs");
    for (path, binary, args) in [
        (
            "firmware/systemd/hashwarden-fw.service",
            "hashwarden-fw",
            &["--config"][..],
        ),
        (
            "host/systemd/hashwarden.service",
            "hashwarden",
            &["run", "--config"][..],
        ),
    ] {
        let unit = std::fs::read_to_string(repo(path)).expect("the unit");
        let limit: u64 = setting(&unit, "LimitNOFILE")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{path}: no numeric LimitNOFILE"));
        assert!(limit >= 65_536, "{path}: LimitNOFILE={limit}");
        let exec = setting(&unit, "ExecStart").expect("ExecStart");
        let mut words = exec.split_whitespace();
        assert_eq!(
            words.next().and_then(|w| w.rsplit('/').next()),
            Some(binary),
            "{path}"
        );
        let given: Vec<&str> = words.filter(|w| !w.starts_with('/')).collect();
        assert_eq!(given, args, "{path}");
        assert!(setting(&unit, "StateDirectory").is_some(), "{path}");
        assert!(
            operations.contains(&unit),
            "docs/operations.md does not show {path} as shipped"
        );
    }
}
