//! The daemon's TOML configuration: board, chains, pools, mining, daemon, mqtt. Every error
//! names the key.

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
    #[serde(default)]
    pub daemon: DaemonSection,
    pub mqtt: Option<MqttSection>,
    #[serde(default)]
    pub api: ApiSection,
    #[serde(default)]
    pub tuner: TunerSection,
    /// Firmware updates: the release keys and limits (`hashwarden-fw install|supervise`).
    pub update: Option<UpdateSection>,
}

/// How the autotuner measures (`set_mode efficiency|hashrate`).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunerSection {
    /// The ticket the chips filter at while tuning: low enough that every chip returns enough
    /// nonces per window to measure its error rate. Default: from the chips' hash rate.
    pub ticket_difficulty: Option<f64>,
    /// Seconds per measurement while raising clocks (default 30), and for each settled point
    /// (default 60). Shorter is faster and noisier.
    pub search_window_s: Option<u32>,
    pub settle_window_s: Option<u32>,
}

/// The local APIs. `--api-listen` and `--http-listen` override the addresses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// cgminer-compatible API (`off` to not serve it); default `0.0.0.0:4028`.
    pub listen: Option<String>,
    /// AxeOS-compatible HTTP API and `/metrics` (`off` to not serve it); default `0.0.0.0:80`.
    pub http_listen: Option<String>,
    /// Enables the HTTP API's writes (`Authorization: Bearer <token>`). A secret: never logged,
    /// never in a response.
    pub token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    /// Where the durable state (sleep, command sequence numbers) lives.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
}

/// Control boards drive at most this many hashboards.
const MAX_CHAINS: u32 = 8;

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/hashwarden-fw")
}

impl Default for DaemonSection {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
        }
    }
}

/// The fleet link: telemetry out, signed commands in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSection {
    /// `mqtt://HOST[:PORT]`, or `mqtts://HOST[:PORT]` for TLS.
    pub url: String,
    /// The roots a `mqtts://` broker's certificate is checked against (default: the system's).
    pub ca_file: Option<std::path::PathBuf>,
    pub site: fleet_proto::Name,
    pub miner: fleet_proto::Name,
    pub username: Option<String>,
    /// Sent only to the broker, never logged.
    pub password: Option<fleet_mqtt::Secret>,
    #[serde(default = "default_telemetry_interval")]
    pub telemetry_interval_s: f64,
    /// Host keys whose signed commands this miner obeys.
    #[serde(default)]
    pub trusted_keys: Vec<TrustedKeySection>,
    /// Key ids refused even while still listed (a key being rotated out after a leak).
    #[serde(default)]
    pub revoked_keys: Vec<String>,
    #[serde(default)]
    pub failsafe: FailsafeSection,
}

fn default_telemetry_interval() -> f64 {
    5.0
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKeySection {
    pub id: String,
    /// Ed25519 public key, 64 hex digits (what `hashwarden keys init` prints).
    pub public_key: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailsafeSection {
    /// How long the host may be silent (agent offline, or no broker) before `action`.
    #[serde(default = "default_failsafe_after")]
    pub after_s: f64,
    #[serde(default = "default_failsafe_action")]
    pub action: crate::control::FailsafeAction,
}

fn default_failsafe_after() -> f64 {
    300.0
}

fn default_failsafe_action() -> crate::control::FailsafeAction {
    crate::control::FailsafeAction::Keep
}

impl Default for FailsafeSection {
    fn default() -> Self {
        Self {
            after_s: default_failsafe_after(),
            action: default_failsafe_action(),
        }
    }
}

impl MqttSection {
    /// The broker as configured, checked: URL, CA file, credentials.
    pub fn connection(&self) -> Result<fleet_mqtt::Connection, fleet_mqtt::LinkError> {
        fleet_mqtt::Connection::new(
            &self.url,
            self.ca_file.as_deref(),
            self.username.as_deref(),
            self.password.as_ref(),
        )
    }

    /// The configured keys, checked.
    pub fn trusted_keys(&self) -> Result<fleet_proto::TrustedKeys, (usize, String)> {
        let mut keys = fleet_proto::TrustedKeys::default();
        for (i, key) in self.trusted_keys.iter().enumerate() {
            keys.trust_hex(&key.id, &key.public_key)
                .map_err(|e| (i, e.to_string()))?;
        }
        for revoked in &self.revoked_keys {
            keys.revoke(revoked);
        }
        Ok(keys)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardSection {
    /// One of `hashboard::board::BOARDS`.
    pub name: String,
    /// Chips on the chain when this unit differs from the description (a variant, a test rig).
    pub chips_per_chain: Option<u32>,
    /// Chains, likewise.
    pub chains: Option<u32>,
    /// The I2C bus with the board's regulator and fan controller, e.g. `/dev/i2c-1`. Without it
    /// the daemon cannot read power or temperature, cut the supply or drive the fan.
    pub i2c_bus: Option<PathBuf>,
    /// The chain's reset line. Without it bring-up starts from the chips' power-on state.
    pub reset_gpio: Option<GpioSection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioSection {
    /// GPIO character device, e.g. `/dev/gpiochip0`.
    pub chip: PathBuf,
    pub line: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSection {
    /// Serial device of the chain, e.g. `/dev/ttyS1` or a PTY from `chipsim serve`.
    pub serial: PathBuf,
    /// Only for a simulated chain behind a PTY: its chips find nonces genuine at
    /// ticket × 2^-k (`chipsim serve --share-floor 2^-k`), and validation must know it.
    pub simulated_share_floor_log2: Option<u32>,
    /// This chain's own I2C bus and reset line (each hashboard of a multi-chain machine has
    /// its own); `[board]`'s apply to chain 0.
    pub i2c_bus: Option<PathBuf>,
    pub reset_gpio: Option<GpioSection>,
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
    pub tuner: TunerSettings,
}

/// The autotuner's measurement settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TunerSettings {
    pub ticket_difficulty: f64,
    pub search_window_s: u32,
    pub settle_window_s: u32,
}

/// Nonces per second each chip should return while tuning: a 30 s window then counts ~250, so a
/// 3 % error rate shows as ~7 errors rather than a coin toss.
const TUNING_NONCES_PER_CHIP_S: f64 = 8.0;

impl TunerSettings {
    fn new(board: &BoardDescription, mining_ticket: f64, section: TunerSection) -> Self {
        let defaults = hashboard::tuner::TunerConfig::DEFAULT;
        let per_chip =
            bm13xx::expected_hashrate(board.model, board.default_frequency, 1).terahashes() * 1e12;
        let automatic = per_chip / (TUNING_NONCES_PER_CHIP_S * 4_294_967_296.0);
        Self {
            ticket_difficulty: section
                .ticket_difficulty
                .unwrap_or(automatic)
                .clamp(1.0, mining_ticket.max(1.0)),
            search_window_s: section.search_window_s.unwrap_or(defaults.search_window_s),
            settle_window_s: section.settle_window_s.unwrap_or(defaults.settle_window_s),
        }
    }

    /// The tuner's method with these windows.
    pub fn config(&self) -> hashboard::tuner::TunerConfig {
        hashboard::tuner::TunerConfig {
            search_window_s: self.search_window_s,
            settle_window_s: self.settle_window_s,
            ..hashboard::tuner::TunerConfig::DEFAULT
        }
    }
}

impl MiningSettings {
    /// The board's own defaults, for runs without a configuration file.
    pub fn defaults_for(board: &BoardDescription) -> Self {
        Self {
            frequency: board.default_frequency,
            ticket_difficulty: default_ticket(),
            tuner: TunerSettings::new(board, default_ticket(), TunerSection::default()),
        }
    }
}

pub use cli_common::config::ConfigError;

impl Config {
    pub fn load(path: &Path) -> Result<(Self, &'static BoardDescription), ConfigError> {
        let text = cli_common::config::read(path)?;
        let parsed = Self::parse(path, &text)?;
        cli_common::config::check_private(path, &parsed.0.secrets())?;
        Ok(parsed)
    }

    /// The secrets this file holds (their keys): a broker password, the API token, a pool
    /// password other than the customary placeholder.
    pub fn secrets(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.mqtt.as_ref().is_some_and(|m| m.password.is_some()) {
            keys.push("mqtt.password");
        }
        if self.api.token.is_some() {
            keys.push("api.token");
        }
        if self
            .pools
            .iter()
            .any(|p| !matches!(p.password.as_str(), "" | "x"))
        {
            keys.push("pools.password");
        }
        keys
    }

    pub fn parse(
        path: &Path,
        text: &str,
    ) -> Result<(Self, &'static BoardDescription), ConfigError> {
        let config: Config = cli_common::config::parse_toml(path, text)?;
        let invalid = |key: &str, reason: String| ConfigError::invalid(path, key, reason);
        let described = board::by_name(&config.board.name).ok_or_else(|| {
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
        let max_chips = hashboard::mining::MAX_CHIPS as u32;
        if let Some(chips) = config
            .board
            .chips_per_chain
            .filter(|c| !(1..=max_chips).contains(c))
        {
            return Err(invalid(
                "board.chips_per_chain",
                format!("{chips} is not 1..={max_chips} chips"),
            ));
        }
        if let Some(chains) = config
            .board
            .chains
            .filter(|c| !(1..=MAX_CHAINS).contains(c))
        {
            return Err(invalid(
                "board.chains",
                format!("{chains} is not 1..={MAX_CHAINS} chains"),
            ));
        }
        let board = match (config.board.chips_per_chain, config.board.chains) {
            (None, None) => described,
            (chips, chains) => {
                // Once per process, at start: the board description lives as long as the daemon.
                Box::leak(Box::new(BoardDescription {
                    chips_per_chain: chips.unwrap_or(described.chips_per_chain),
                    chains: chains.unwrap_or(described.chains),
                    ..*described
                }))
            }
        };
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
        for (i, chain) in config.chains.iter().enumerate() {
            if chain.simulated_share_floor_log2.is_some_and(|k| k > 32) {
                return Err(invalid(
                    &format!("chains[{i}].simulated_share_floor_log2"),
                    "must be between 0 and 32".into(),
                ));
            }
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
        if let Some(mqtt) = &config.mqtt {
            check_mqtt(mqtt, &invalid)?;
        }
        if let Some(update) = &config.update {
            update
                .trusted_keys()
                .map_err(|e| invalid("update.release_keys", e))?;
            update
                .min_version()
                .map_err(|e| invalid("update.min_version", e))?;
            if update.release_keys.is_empty() {
                return Err(invalid(
                    "update.release_keys",
                    "no release key: nothing could ever be installed".into(),
                ));
            }
        }
        for (key, value) in [
            ("api.listen", &config.api.listen),
            ("api.http_listen", &config.api.http_listen),
        ] {
            if let Some(text) = value
                && let Err(reason) = listen_address(text)
            {
                return Err(invalid(key, reason));
            }
        }
        if config.api.token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(invalid(
                "api.token",
                "too short to be a secret: use at least 16 characters".into(),
            ));
        }
        check_numbers(&config, path)?;
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
            tuner: TunerSettings::new(board, self.mining.ticket_difficulty, self.tuner),
        }
    }
}

/// The largest ticket a chip's 32-bit mask can express (docs/protocol.md, the ticket mask): a
/// larger one would be clamped by the chips but counted as configured, and nothing would mine.
const MAX_TICKET_DIFFICULTY: f64 = 4_294_967_296.0;

/// Every number the file may hold and the range it must be in, checked in one place so none is
/// forgotten: a value out of range names its key (exit 2), never panics later or is silently
/// clamped.
fn check_numbers(config: &Config, path: &Path) -> Result<(), ConfigError> {
    use cli_common::config::in_range;
    let mut checks: Vec<(&str, f64, (f64, f64), &str)> = vec![(
        "mining.ticket_difficulty",
        config.mining.ticket_difficulty,
        (1.0, MAX_TICKET_DIFFICULTY),
        "",
    )];
    if let Some(ticket) = config.tuner.ticket_difficulty {
        checks.push((
            "tuner.ticket_difficulty",
            ticket,
            (1.0, MAX_TICKET_DIFFICULTY),
            "",
        ));
    }
    for (key, window) in [
        ("tuner.search_window_s", config.tuner.search_window_s),
        ("tuner.settle_window_s", config.tuner.settle_window_s),
    ] {
        if let Some(seconds) = window {
            checks.push((key, f64::from(seconds), (1.0, 3_600.0), "s"));
        }
    }
    if let Some(mqtt) = &config.mqtt {
        checks.push((
            "mqtt.telemetry_interval_s",
            mqtt.telemetry_interval_s,
            (0.1, 3_600.0),
            "s",
        ));
        // A failsafe that waits longer than a day is no failsafe.
        checks.push((
            "mqtt.failsafe.after_s",
            mqtt.failsafe.after_s,
            (1.0, 86_400.0),
            "s",
        ));
    }
    if let Some(update) = &config.update {
        checks.extend([
            (
                "update.health_deadline_s",
                update.health_deadline_s,
                (1.0, 86_400.0),
                "s",
            ),
            (
                "update.max_attempts",
                f64::from(update.max_attempts),
                (1.0, 100.0),
                "",
            ),
            // An image is a daemon binary: kilobytes at least, never gigabytes.
            (
                "update.max_size",
                update.max_size as f64,
                (1_024.0, 1_073_741_824.0),
                "bytes",
            ),
        ]);
    }
    for (key, value, range, unit) in checks {
        in_range(path, key, value, range, unit)?;
    }
    Ok(())
}

/// `ADDRESS:PORT`, or `off` (`None`).
pub fn listen_address(text: &str) -> Result<Option<std::net::SocketAddr>, String> {
    match text {
        "off" => Ok(None),
        text => text
            .parse()
            .map(Some)
            .map_err(|_| format!("{text:?} is not ADDRESS:PORT or off")),
    }
}

fn check_mqtt(
    mqtt: &MqttSection,
    invalid: &impl Fn(&str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    if let Err(e) = mqtt.connection() {
        let key = match e {
            fleet_mqtt::LinkError::Url(_) => "mqtt.url",
            fleet_mqtt::LinkError::Credentials(_) => "mqtt.username",
            _ => "mqtt.ca_file",
        };
        return Err(invalid(key, e.to_string()));
    }
    if let Err((i, reason)) = mqtt.trusted_keys() {
        return Err(invalid(
            &format!("mqtt.trusted_keys[{i}].public_key"),
            reason,
        ));
    }
    if mqtt.trusted_keys.is_empty() {
        return Err(invalid(
            "mqtt.trusted_keys",
            "no host key is trusted, so no command could ever be obeyed".into(),
        ));
    }
    Ok(())
}

/// `[update]`: what this board accepts and how long a new build gets to prove itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSection {
    /// Release keys whose images this board installs.
    pub release_keys: Vec<TrustedKeySection>,
    /// Key ids refused even while listed (a release key that leaked).
    #[serde(default)]
    pub revoked_keys: Vec<String>,
    /// No image older than this (MAJOR.MINOR.PATCH).
    pub min_version: Option<String>,
    #[serde(default = "default_max_size")]
    pub max_size: u64,
    /// How long a new build has to report healthy (chains up, broker connected), s.
    #[serde(default = "default_health_deadline")]
    pub health_deadline_s: f64,
    /// Starts of a new build (crashes included) before it is given up.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

fn default_max_size() -> u64 {
    fleet_proto::image::DEFAULT_MAX_PAYLOAD
}

fn default_health_deadline() -> f64 {
    180.0
}

fn default_max_attempts() -> u32 {
    3
}

impl UpdateSection {
    pub fn trusted_keys(&self) -> Result<fleet_proto::TrustedKeys, String> {
        let mut keys = fleet_proto::TrustedKeys::default();
        for (i, key) in self.release_keys.iter().enumerate() {
            keys.trust_hex(&key.id, &key.public_key)
                .map_err(|e| format!("update.release_keys[{i}]: {e}"))?;
        }
        for id in &self.revoked_keys {
            keys.revoke(id);
        }
        Ok(keys)
    }

    pub fn min_version(&self) -> Result<Option<fleet_proto::image::Version>, String> {
        self.min_version
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| format!("update.min_version: {e}"))
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
    fn the_tuning_ticket_gives_each_chip_enough_nonces_to_measure() {
        let (config, board) = parse("[board]\nname = \"bitaxe-max\"\n").expect("valid");
        let tuner = config.mining_settings(board).tuner;
        let per_chip_hps =
            bm13xx::expected_hashrate(board.model, board.default_frequency, 1).terahashes() * 1e12;
        let nonces_per_s = per_chip_hps / (tuner.ticket_difficulty * 4_294_967_296.0);
        assert!(
            (TUNING_NONCES_PER_CHIP_S * 0.99..64.0).contains(&nonces_per_s),
            "{nonces_per_s} nonces/s per chip at ticket {}",
            tuner.ticket_difficulty
        );
        assert!(tuner.ticket_difficulty < config.mining.ticket_difficulty);
        let text =
            "[board]\nname = \"bitaxe-max\"\n[tuner]\nticket_difficulty = 2\nsearch_window_s = 5\n";
        let (config, board) = parse(text).expect("valid");
        let tuner = config.mining_settings(board).tuner;
        assert_eq!(
            (tuner.ticket_difficulty, tuner.config().search_window_s),
            (2.0, 5)
        );
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
        assert!(
            message("[board]\nname = \"bitaxe-max\"\n[tuner]\nsettle_window_s = 0\n")
                .contains("tuner.settle_window_s")
        );
        assert!(
            message("[board]\nname = \"bitaxe-max\"\n[tuner]\nticket_difficulty = -1\n")
                .contains("tuner.ticket_difficulty")
        );
        let unknown = message("[board]\nname = \"bitaxe-max\"\ncolour = \"red\"\n");
        assert!(unknown.contains("colour"), "{unknown}");
        assert!(!unknown.contains('\n'));
        assert!(message("this is not toml").contains("hw.toml"));
    }

    const KEY: &str = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c";

    fn with_mqtt(mqtt: &str) -> String {
        format!("[board]\nname = \"bitaxe-max\"\n[mqtt]\n{mqtt}")
    }

    #[test]
    fn the_mqtt_section_is_checked_key_by_key() {
        let good = format!(
            "url = \"mqtt://127.0.0.1:1883\"\nsite = \"tx-west\"\nminer = \"m1\"\n[[mqtt.trusted_keys]]\nid = \"host\"\npublic_key = \"{KEY}\"\n"
        );
        let (config, _) = parse(&with_mqtt(&good)).expect("valid");
        let mqtt = config.mqtt.expect("present");
        let url = mqtt.connection().expect("connects").url;
        assert_eq!(
            (url.host.as_str(), url.port, url.tls),
            ("127.0.0.1", 1883, false)
        );
        assert_eq!(mqtt.failsafe.action, crate::control::FailsafeAction::Keep);
        assert_eq!(mqtt.telemetry_interval_s, 5.0);

        let message = |text: String| parse(&with_mqtt(&text)).expect_err("invalid").to_string();
        assert!(message(good.replace("mqtt://127.0.0.1:1883", "tcp://x:1")).contains("mqtt.url"));
        let ca_on_plain = good.replace("site =", "ca_file = \"ca.pem\"\nsite =");
        assert!(message(ca_on_plain).contains("mqtt.ca_file"));
        let missing_ca = good
            .replace("mqtt://", "mqtts://")
            .replace("site =", "ca_file = \"/nonexistent/ca.pem\"\nsite =");
        assert!(message(missing_ca).contains("mqtt.ca_file"));
        let no_password = good.replace("site =", "username = \"m1\"\nsite =");
        assert!(message(no_password).contains("mqtt.username"));
        assert!(message(good.replace(KEY, "abcd")).contains("mqtt.trusted_keys[0].public_key"));
        assert!(message(good.replace("\"tx-west\"", "\"tx/west\"")).contains("tx/west"));
        let no_keys = "url = \"mqtt://h:1\"\nsite = \"s\"\nminer = \"m\"\n".to_string();
        assert!(message(no_keys).contains("mqtt.trusted_keys: no host key"));
        assert!(message(format!("{good}[mqtt.failsafe]\naction = \"panic\"\n")).contains("panic"));
        assert!(
            message(format!("{good}[mqtt.failsafe]\nafter_s = 0\n"))
                .contains("mqtt.failsafe.after_s")
        );
    }

    /// A file with every section that holds a number, each number replaceable by `{key}`.
    fn every_number(key: &str, value: &str) -> String {
        let numbers = [
            ("mining.ticket_difficulty", "256"),
            ("mining.frequency_mhz", "400"),
            ("tuner.ticket_difficulty", "2"),
            ("tuner.search_window_s", "5"),
            ("tuner.settle_window_s", "5"),
            ("mqtt.telemetry_interval_s", "5"),
            ("mqtt.failsafe.after_s", "60"),
            ("update.health_deadline_s", "180"),
            ("update.max_attempts", "3"),
            ("update.max_size", "1048576"),
        ];
        let n = |name: &str| {
            let (_, default) = numbers
                .iter()
                .find(|(k, _)| *k == name)
                .expect("a listed key");
            if name == key {
                value.to_string()
            } else {
                default.to_string()
            }
        };
        format!(
            "[board]\nname = \"bitaxe-max\"\n\
             [mining]\nticket_difficulty = {}\nfrequency_mhz = {}\n\
             [tuner]\nticket_difficulty = {}\nsearch_window_s = {}\nsettle_window_s = {}\n\
             [mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\nsite = \"s\"\nminer = \"m\"\ntelemetry_interval_s = {}\n\
             [[mqtt.trusted_keys]]\nid = \"host\"\npublic_key = \"{KEY}\"\n\
             [mqtt.failsafe]\nafter_s = {}\n\
             [update]\nhealth_deadline_s = {}\nmax_attempts = {}\nmax_size = {}\n\
             [[update.release_keys]]\nid = \"rel\"\npublic_key = \"{KEY}\"\n",
            n("mining.ticket_difficulty"),
            n("mining.frequency_mhz"),
            n("tuner.ticket_difficulty"),
            n("tuner.search_window_s"),
            n("tuner.settle_window_s"),
            n("mqtt.telemetry_interval_s"),
            n("mqtt.failsafe.after_s"),
            n("update.health_deadline_s"),
            n("update.max_attempts"),
            n("update.max_size"),
        )
    }

    const FLOAT_KEYS: [&str; 6] = [
        "mining.ticket_difficulty",
        "mining.frequency_mhz",
        "tuner.ticket_difficulty",
        "mqtt.telemetry_interval_s",
        "mqtt.failsafe.after_s",
        "update.health_deadline_s",
    ];
    const INTEGER_KEYS: [&str; 4] = [
        "tuner.search_window_s",
        "tuner.settle_window_s",
        "update.max_attempts",
        "update.max_size",
    ];

    #[test]
    fn every_number_in_range_loads() {
        parse(&every_number("", "")).expect("the defaults are valid");
    }

    #[test]
    fn nan_infinities_negatives_and_huge_values_are_refused_naming_the_key() {
        // The values that once panicked ("cannot convert float seconds to Duration") or were
        // silently clamped (−5 s became 0.1 s; a ticket of 1e308 mined nothing).
        for key in FLOAT_KEYS {
            for bad in ["nan", "inf", "-inf", "-5.0", "0.0", "1e20", "1e308"] {
                match parse(&every_number(key, bad)) {
                    Err(ConfigError::Invalid { key: named, .. }) => {
                        assert_eq!(named, key, "{key} = {bad}")
                    }
                    other => panic!("{key} = {bad}: {other:?}"),
                }
            }
        }
        for key in INTEGER_KEYS {
            for bad in ["0", "4294967295"] {
                match parse(&every_number(key, bad)) {
                    Err(ConfigError::Invalid { key: named, .. }) => {
                        assert_eq!(named, key, "{key} = {bad}")
                    }
                    other => panic!("{key} = {bad}: {other:?}"),
                }
            }
            // Out of the type's range: refused by the parser, naming the key.
            let message = parse(&every_number(key, "-1"))
                .expect_err("refused")
                .to_string();
            let leaf = key.rsplit('.').next().unwrap_or(key);
            assert!(message.contains(leaf), "{key}: {message}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_float_for_any_key_loads_or_names_the_key(
            which in 0..FLOAT_KEYS.len(),
            value in proptest::num::f64::ANY,
        ) {
            let key = FLOAT_KEYS[which];
            let text = cli_common::config::toml_float(value);
            match parse(&every_number(key, &text)) {
                Ok(_) => proptest::prop_assert!(value.is_finite() && value > 0.0),
                Err(ConfigError::Invalid { key: named, .. }) => proptest::prop_assert_eq!(named, key),
                Err(other) => proptest::prop_assert!(false, "{key} = {text}: {other}"),
            }
        }
    }
}
