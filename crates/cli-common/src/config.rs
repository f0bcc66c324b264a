//! Configuration files the same way in every binary: a TOML file that cannot be read, parsed or
//! used is one line that names the file and what to fix (the key, or the line and its text).

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Why a configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {reason}")]
    Invalid {
        path: PathBuf,
        key: String,
        reason: String,
    },
}

impl ConfigError {
    /// A value that parsed but cannot be used: `key` is its dotted path.
    pub fn invalid(path: &Path, key: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

/// `value` within `min..=max` (`unit` for the message, e.g. "s"), or an error naming `key`.
/// NaN is within nothing, so it is refused with the rest.
pub fn in_range(
    path: &Path,
    key: &str,
    value: f64,
    (min, max): (f64, f64),
    unit: &str,
) -> Result<(), ConfigError> {
    if value >= min && value <= max {
        return Ok(());
    }
    let unit = if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    };
    Err(ConfigError::invalid(
        path,
        key,
        format!("{value}{unit} is outside {min}..={max}{unit}"),
    ))
}

/// `value` as a TOML file spells it (`nan`, `inf` and `-inf` are words): for tests that write
/// any number into a configuration.
pub fn toml_float(value: f64) -> String {
    if value.is_nan() {
        "nan".into()
    } else if value.is_infinite() {
        if value > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else {
        format!("{value:?}")
    }
}

pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A file that holds secrets (`secrets` names the keys that are set) must not be readable by
/// everyone: a password or token there is as good as published. Group-readable is allowed (a
/// service group); world-readable is refused with the keys and the fix.
pub fn check_private(path: &Path, secrets: &[&str]) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    if secrets.is_empty() {
        return Ok(());
    }
    let mode = std::fs::metadata(path)
        .map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o004 != 0 {
        return Err(ConfigError::invalid(
            path,
            &secrets.join(", "),
            format!("a secret in a file everyone can read (mode {mode:o}): chmod 600 (or 640) it"),
        ));
    }
    Ok(())
}

/// Parses `text` (the contents of `path`). toml's own rendering spans several lines; the error
/// here is one, with the line number and the offending line's text where toml knows them.
pub fn parse_toml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let place = e.span().map(|span| {
            let line = text
                .get(..span.start)
                .unwrap_or(text)
                .lines()
                .count()
                .max(1);
            let source = text.lines().nth(line - 1).unwrap_or("").trim();
            format!("line {line} (`{source}`): ")
        });
        ConfigError::Parse {
            path: path.to_path_buf(),
            message: format!(
                "{}{}",
                place.unwrap_or_default(),
                e.message().replace('\n', " ")
            ),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code, reason = "only parsed")]
    struct Example {
        mode: Mode,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Fast,
    }

    #[test]
    fn a_parse_error_is_one_line_with_the_line_it_is_on() {
        let path = Path::new("site.toml");
        let e = parse_toml::<Example>(path, "# comment\nmode = \"slow\"\n").expect_err("bad");
        let text = e.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(
            text.starts_with("site.toml: line 2 (`mode = \"slow\"`)"),
            "{text}"
        );
        assert!(text.contains("unknown variant"), "{text}");
        let unknown = parse_toml::<Example>(path, "colour = 1\n").expect_err("bad");
        assert!(unknown.to_string().contains("colour"), "{unknown}");
        assert!(matches!(
            read(Path::new("/nonexistent/x.toml")),
            Err(ConfigError::Io { .. })
        ));
    }

    #[test]
    fn secrets_in_a_world_readable_file_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("hw-private-{}.toml", std::process::id()));
        std::fs::write(&path, "password = \"x\"\n").expect("writes");
        for (mode, refused) in [(0o644, true), (0o604, true), (0o640, false), (0o600, false)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let result = check_private(&path, &["mqtt.password"]);
            assert_eq!(result.is_err(), refused, "mode {mode:o}");
            if let Err(e) = result {
                let text = e.to_string();
                assert!(
                    text.contains("mqtt.password") && text.contains("chmod 600"),
                    "{text}"
                );
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        check_private(&path, &[]).expect("no secrets, no rule");
        let _ = std::fs::remove_file(path);
    }
}
