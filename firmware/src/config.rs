//! The daemon's TOML configuration: board, chains, pools, mining. Every error names the key.

use std::path::{Path, PathBuf};

use bm13xx::Frequency;
use hashboard::board::{self, BoardDescription};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub board: BoardSection,
    #[serde(default)]
    pub chains: Vec<ChainSection>,
    #[serde(default)]
    pub pools: Vec<PoolSection>,
    #[serde(default)]
    pub mining: MiningSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardSection {
    /// One of `hashboard::board::BOARDS`.
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSection {
    /// Serial device of the chain, e.g. `/dev/ttyS1` or a PTY from `chipsim serve`.
    pub serial: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    pub url: String,
    pub user: String,
    /// Sent only to the pool, never logged.
    #[serde(default = "default_password")]
    #[allow(
        dead_code,
        reason = "the Stratum client that sends it is the next step of issue #5"
    )]
    pub password: String,
}

impl PoolSection {
    /// `HOST:PORT` from `stratum+tcp://HOST:PORT[/]`; `None` for anything else.
    pub fn address(&self) -> Option<&str> {
        self.url
            .strip_prefix("stratum+tcp://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|hp| {
                hp.rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            })
    }
}

fn default_password() -> String {
    "x".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiningSection {
    /// Hash clock; the board's default when absent.
    pub frequency_mhz: Option<f64>,
    /// The difficulty the chips filter nonces at.
    #[serde(default = "default_ticket")]
    pub ticket_difficulty: f64,
}

fn default_ticket() -> f64 {
    256.0
}

impl Default for MiningSection {
    fn default() -> Self {
        Self {
            frequency_mhz: None,
            ticket_difficulty: default_ticket(),
        }
    }
}

/// What the chips are set up with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MiningSettings {
    pub frequency: Frequency,
    pub ticket_difficulty: f64,
}

impl MiningSettings {
    /// The board's own defaults, for runs without a configuration file.
    pub fn defaults_for(board: &BoardDescription) -> Self {
        Self {
            frequency: board.default_frequency,
            ticket_difficulty: default_ticket(),
        }
    }
}

/// Why the configuration cannot be used. Each names what to fix.
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

impl Config {
    pub fn load(path: &Path) -> Result<(Self, &'static BoardDescription), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(
        path: &Path,
        text: &str,
    ) -> Result<(Self, &'static BoardDescription), ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            // toml's message spans several lines (it quotes the source); one line is enough.
            message: e.message().replace('\n', " "),
        })?;
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            reason,
        };
        let board = board::by_name(&config.board.name).ok_or_else(|| {
            let known: Vec<&str> = board::BOARDS.iter().map(|b| b.name).collect();
            invalid(
                "board.name",
                format!(
                    "unknown board {:?} (known: {})",
                    config.board.name,
                    known.join(", ")
                ),
            )
        })?;
        if !config.chains.is_empty() && config.chains.len() != board.chains as usize {
            return Err(invalid(
                "chains",
                format!(
                    "{} has {} chain(s), {} configured",
                    board.name,
                    board.chains,
                    config.chains.len()
                ),
            ));
        }
        for (i, pool) in config.pools.iter().enumerate() {
            if pool.address().is_none() {
                return Err(invalid(
                    &format!("pools[{i}].url"),
                    format!("{:?} is not stratum+tcp://HOST:PORT", pool.url),
                ));
            }
        }
        if let Some(mhz) = config.mining.frequency_mhz {
            let (min, max) = (board.min_frequency.mhz(), board.max_frequency.mhz());
            if !(min..=max).contains(&mhz) {
                return Err(invalid(
                    "mining.frequency_mhz",
                    format!("{mhz} is outside the board's {min}..={max} MHz"),
                ));
            }
        }
        let ticket = config.mining.ticket_difficulty;
        if !(ticket.is_finite() && ticket >= 1.0) {
            return Err(invalid(
                "mining.ticket_difficulty",
                format!("{ticket} must be at least 1"),
            ));
        }
        Ok((config, board))
    }

    /// Valid after [`Config::parse`]: it checked the frequency against the board.
    pub fn mining_settings(&self, board: &BoardDescription) -> MiningSettings {
        let frequency = self
            .mining
            .frequency_mhz
            .and_then(Frequency::from_mhz)
            .unwrap_or(board.default_frequency);
        MiningSettings {
            frequency,
            ticket_difficulty: self.mining.ticket_difficulty,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(Config, &'static BoardDescription), ConfigError> {
        Config::parse(Path::new("hw.toml"), text)
    }

    #[test]
    fn a_minimal_config_takes_the_defaults() {
        let (config, board) = parse("[board]\nname = \"bitaxe-max\"\n").expect("valid");
        assert_eq!(board.name, "bitaxe-max");
        assert!(config.chains.is_empty() && config.pools.is_empty());
        assert_eq!(
            config.mining_settings(board),
            MiningSettings::defaults_for(board)
        );
        assert_eq!(config.mining.ticket_difficulty, 256.0);
    }

    #[test]
    fn the_mining_section_overrides_the_board_defaults() {
        let text = "[board]\nname = \"bitaxe-max\"\n[mining]\nfrequency_mhz = 400\nticket_difficulty = 64\n";
        let (config, board) = parse(text).expect("valid");
        let settings = config.mining_settings(board);
        assert_eq!(settings.frequency.khz(), 400_000);
        assert_eq!(settings.ticket_difficulty, 64.0);
        assert_ne!(settings, MiningSettings::defaults_for(board));
    }

    #[test]
    fn pool_urls_need_a_host_and_a_port() {
        let pool = |url: &str| PoolSection {
            url: url.into(),
            user: "u".into(),
            password: "x".into(),
        };
        assert_eq!(
            pool("stratum+tcp://pool.example:3333").address(),
            Some("pool.example:3333")
        );
        assert_eq!(
            pool("stratum+tcp://10.0.0.1:3333/").address(),
            Some("10.0.0.1:3333")
        );
        for bad in [
            "stratum+tcp://pool.example",
            "stratum+tcp://:3333",
            "stratum+tcp://h:99999",
            "tcp://h:1",
        ] {
            assert_eq!(pool(bad).address(), None, "{bad}");
            let text = format!(
                "[board]\nname = \"bitaxe-max\"\n[[pools]]\nurl = \"{bad}\"\nuser = \"u\"\n"
            );
            let message = parse(&text).expect_err("rejected at load").to_string();
            assert!(message.contains("pools[0].url"), "{message}");
        }
    }

    #[test]
    fn every_error_names_the_key() {
        let message = |text: &str| parse(text).expect_err("invalid").to_string();
        assert!(message("[board]\nname = \"s9\"\n").contains("board.name: unknown board \"s9\""));
        assert!(
            message("[board]\nname = \"bitaxe-max\"\n[mining]\nfrequency_mhz = 5000\n")
                .contains("mining.frequency_mhz")
        );
        assert!(
            message(
                "[board]\nname = \"bitaxe-max\"\n[[pools]]\nurl = \"http://x\"\nuser = \"u\"\n"
            )
            .contains("pools[0].url")
        );
        assert!(message("[board]\nname = \"bitaxe-max\"\n[[chains]]\nserial = \"/a\"\n[[chains]]\nserial = \"/b\"\n").contains("chains:"));
        assert!(
            message("[board]\nname = \"bitaxe-max\"\n[mining]\nticket_difficulty = 0\n")
                .contains("mining.ticket_difficulty")
        );
        let unknown = message("[board]\nname = \"bitaxe-max\"\ncolour = \"red\"\n");
        assert!(unknown.contains("colour"), "{unknown}");
        assert!(!unknown.contains('\n'));
        assert!(message("this is not toml").contains("hw.toml"));
    }
}
