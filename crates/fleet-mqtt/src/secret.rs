//! A configured secret (a broker password): deserialised like a string, shown as `"***"` by
//! `Debug`, so a config struct can derive `Debug` without a password ever reaching a log line.

use std::fmt;

use serde::Deserialize;

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must send it (the broker's CONNECT).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Section {
        #[allow(dead_code)]
        user: String,
        password: Secret,
    }

    #[test]
    fn a_secret_reads_like_a_string_and_never_prints() {
        let section: Section =
            serde_json::from_str(r#"{"user":"miner-7","password":"hunter2"}"#).expect("parses");
        assert_eq!(section.password.expose(), "hunter2");
        let shown = format!("{section:?}");
        assert!(
            shown.contains("miner-7") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
