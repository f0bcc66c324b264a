//! A site's configuration (`site.toml`): its tariff, pool fee, power cap, planner policy and
//! where its hashprice comes from. Every error names the key to fix.

use std::path::Path;

use serde::Deserialize;

use crate::market::Network;
use crate::planner::Policy;
use crate::tariff::Tariff;
use crate::units::{UsdPerPhDay, Watts};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub site: SiteSection,
    pub tariff: Tariff,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub market: MarketSection,
    /// A real-time power price feed over the tariff.
    #[serde(default)]
    pub power: PowerSection,
    /// How the agent reaches the fleet (`hashwarden run`).
    pub agent: Option<AgentSection>,
    /// The embedded broker's listeners and users, when `agent.mqtt_url` names no external one.
    pub broker: Option<fleet_mqtt::embedded::BrokerSettings>,
    /// What the operator knows of particular machines: maintenance, costs besides power.
    #[serde(default)]
    pub machines: Vec<MachineSection>,
    /// Who may move the site's market, power price and grid cap over MQTT.
    #[serde(default)]
    pub feeds: FeedsSection,
}

/// `[feeds]`: the keys whose signed readings the agent takes on `…/market`, `…/power` and
/// `…/grid` (`hashwarden feed` signs them).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedsSection {
    #[serde(default)]
    pub trusted_keys: Vec<FeedKeySection>,
    /// Unsigned readings too, from anyone who can publish on those topics. Only behind a broker
    /// whose ACL says who may (docs/operations.md, "Threat model").
    #[serde(default)]
    pub accept_unsigned: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedKeySection {
    pub id: String,
    /// 64 hex digits, as `hashwarden keys init` prints.
    pub public_key: String,
}

/// The real-time power price: `hashwarden/v1/<site>/power` always, and a replay file if given.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerSection {
    /// How long a feed price stands before the tariff applies again, s.
    #[serde(default = "default_power_max_age")]
    pub max_age_s: u64,
    /// `at,usd_per_kwh` rows replayed as their time comes.
    pub csv: Option<std::path::PathBuf>,
}

fn default_power_max_age() -> u64 {
    3_600
}

impl Default for PowerSection {
    fn default() -> Self {
        Self {
            max_age_s: default_power_max_age(),
            csv: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineSection {
    /// The miner's name, as it publishes.
    pub id: String,
    /// In maintenance: the planner leaves it as it is.
    #[serde(default)]
    pub exempt: bool,
    /// Hosting, maintenance and the like, $ per day, on top of its power.
    #[serde(default)]
    pub overhead_usd_per_day: f64,
    /// The miner's device key (64 hex digits; `hashwarden-fw device-key` prints it): only
    /// reports it signs are taken as the miner's word. It replaces a key enrolled at first sight.
    pub public_key: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// An external broker, `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]`; without it the agent
    /// runs the embedded one (`[broker]`).
    pub mqtt_url: Option<String>,
    /// The roots a `mqtts://` broker's certificate is checked against (default: the system's).
    pub ca_file: Option<std::path::PathBuf>,
    pub username: Option<String>,
    pub password: Option<fleet_mqtt::Secret>,
    /// The command-signing key (`hashwarden keys init`), mode 0600.
    pub key_file: std::path::PathBuf,
    /// The key's id, as the miners' `[[mqtt.trusted_keys]]` name it.
    pub key_id: String,
    /// How often the fleet is planned, s.
    #[serde(default = "default_plan_interval")]
    pub plan_interval_s: f64,
    /// The site follows `maestro/target` (silence for four minutes curtails).
    #[serde(default)]
    pub maestro: bool,
    /// The agent's store (SQLite): switch history, sequence numbers, overrides, audit log.
    #[serde(default = "default_store")]
    pub store: std::path::PathBuf,
    /// Where to serve Prometheus `/metrics` and the images of firmware rollouts (`ADDR:PORT`);
    /// not served when absent or `"off"`.
    #[serde(default, deserialize_with = "address_or_off")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// How the miners reach that listener (`http://10.20.0.5:9100`), when not by
    /// `metrics_listen` itself (a wildcard address, a proxy, NAT).
    pub public_url: Option<String>,
    /// One of several agents splitting the site (docs/operations.md).
    pub share: Option<ShareSection>,
    /// How long the agent waits for acks and telemetry, how often it tries, and when it tries
    /// again a change that failed or went unanswered.
    #[serde(default)]
    pub commands: crate::executor::ExecutorConfig,
    /// The most miners this agent holds (default 100,000): set it a little above the site's
    /// count, and a client inventing miners on the broker is refused past it.
    pub max_miners: Option<usize>,
    /// How miners' device keys are enrolled: `"config"` (only `[[machines]] public_key`) or
    /// `"first-seen"` (also a miner's key on its first signed report).
    #[serde(default)]
    pub enrol: crate::enrol::EnrolMode,
    /// Unknown miners held for the operator to see (default 16); more are ignored.
    pub max_unenrolled: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareSection {
    /// The shared subscription's group: the same on every agent of the site.
    pub group: fleet_proto::Name,
    /// This agent's name in the group: different on every agent.
    pub instance: fleet_proto::Name,
}

/// `ADDR:PORT`, or `"off"` for no listener — as the daemon's listeners take it.
fn address_or_off<'de, D>(deserializer: D) -> Result<Option<std::net::SocketAddr>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let text = String::deserialize(deserializer)?;
    match text.as_str() {
        "off" => Ok(None),
        text => text
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not ADDRESS:PORT or off"))),
    }
}

fn default_store() -> std::path::PathBuf {
    "hashwarden.db".into()
}

fn default_plan_interval() -> f64 {
    2.0
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSection {
    pub name: String,
    /// The pool's cut, a fraction (0.02 for 2 %).
    #[serde(default)]
    pub pool_fee: f64,
    /// The site's contract limit, W.
    pub cap_w: Option<f64>,
    /// How long before a grid cap announced ahead (`from`) the agent starts shedding for it, s:
    /// enough for its batches and the miners' ramps.
    #[serde(default = "default_grid_lead")]
    pub grid_lead_s: u64,
}

fn default_grid_lead() -> u64 {
    // Ten of the default policy's 30 s batches, with the miners' ramps and a verification.
    300
}

/// Where the site's hashprice comes from: a starting value (a hashprice or the network's
/// figures), a public endpoint to poll, a CSV file to replay — and always the `…/market` topic.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketSection {
    pub hashprice: Option<UsdPerPhDay>,
    pub network: Option<Network>,
    /// `{ kind = "mempool", url = "https://mempool.space" }` or
    /// `{ kind = "hashrate_index", url = "…", api_key_file = "…" }`, or a list of them polled together: the
    /// readings' quorum is taken (`market::quorum`).
    pub poll: Option<crate::sources::Sources>,
    /// With several sources: how far from their median (a fraction) a reading may lie and still
    /// agree (default 0.1).
    pub quorum_spread: Option<f64>,
    /// Seconds between polls (default 300).
    pub poll_interval_s: Option<f64>,
    /// Readings to replay (`at,hashprice` or `at,difficulty,height,fees_per_block_btc,btc_usd`):
    /// each is taken once the clock passes its `at`.
    pub csv: Option<std::path::PathBuf>,
}

pub use cli_common::config::ConfigError as SiteError;

/// A week: no dwell, cooldown or lead time of a curtailment policy is longer, and every time
/// added to a unix time stays far from overflowing.
const WEEK_S: f64 = 7.0 * 86_400.0;
/// No site draws more (W): the largest mining sites are a few hundred megawatts.
const MAX_SITE_W: f64 = 1e10;

/// The numbers not checked elsewhere in `parse`, each against its range, naming its key: times
/// that are later added to unix times (a `u64::MAX` dwell would overflow), counts, prices and
/// powers.
fn check_numbers(config: &SiteConfig, path: &Path) -> Result<(), SiteError> {
    use cli_common::config::in_range;
    let policy = &config.policy;
    let mut checks: Vec<(String, f64, (f64, f64), &str)> = vec![
        (
            "site.grid_lead_s".into(),
            config.site.grid_lead_s as f64,
            (0.0, 86_400.0),
            "s",
        ),
        (
            "policy.min_on_s".into(),
            policy.min_on_s as f64,
            (0.0, WEEK_S),
            "s",
        ),
        (
            "policy.min_off_s".into(),
            policy.min_off_s as f64,
            (0.0, WEEK_S),
            "s",
        ),
        (
            "policy.restore_cooldown_s".into(),
            policy.restore_cooldown_s as f64,
            (0.0, WEEK_S),
            "s",
        ),
        (
            "policy.batch_size".into(),
            policy.batch_size as f64,
            (1.0, 10_000_000.0),
            "",
        ),
        (
            "policy.batch_interval_s".into(),
            policy.batch_interval_s as f64,
            (0.0, 86_400.0),
            "s",
        ),
    ];
    if let Some(spread) = config.market.quorum_spread {
        checks.push(("market.quorum_spread".into(), spread, (0.001, 1.0), ""));
    }
    if let Some(sources) = &config.market.poll {
        checks.push((
            "market.poll".into(),
            sources.list().len() as f64,
            (1.0, 16.0),
            "sources",
        ));
    }
    if let Some(cap) = config.site.cap_w {
        checks.push(("site.cap_w".into(), cap, (0.0, MAX_SITE_W), "W"));
    }
    // Above 10 $/kWh is a unit slip (¢ or $/MWh), as the power feed's guard says too.
    match &config.tariff {
        Tariff::Fixed { price } => {
            checks.push(("tariff.price".into(), price.0, (0.0, 10.0), "$/kWh"));
        }
        Tariff::TimeOfUse {
            base,
            utc_offset_s,
            periods,
        } => {
            checks.push(("tariff.base".into(), base.0, (0.0, 10.0), "$/kWh"));
            checks.push((
                "tariff.utc_offset_s".into(),
                *utc_offset_s as f64,
                (-14.0 * 3_600.0, 14.0 * 3_600.0),
                "s",
            ));
            for (i, period) in periods.iter().enumerate() {
                checks.push((
                    format!("tariff.periods[{i}].price"),
                    period.price.0,
                    (0.0, 10.0),
                    "$/kWh",
                ));
            }
        }
    }
    for (i, machine) in config.machines.iter().enumerate() {
        checks.push((
            format!("machines[{i}].overhead_usd_per_day"),
            machine.overhead_usd_per_day,
            (0.0, 1e6),
            "$/day",
        ));
    }
    if let Some(max) = config.agent.as_ref().and_then(|a| a.max_unenrolled) {
        checks.push((
            "agent.max_unenrolled".into(),
            max as f64,
            (0.0, 100_000.0),
            "",
        ));
    }
    if let Some(max) = config.agent.as_ref().and_then(|a| a.max_miners) {
        checks.push((
            "agent.max_miners".into(),
            max as f64,
            (1.0, 1_000_000.0),
            "",
        ));
    }
    if let Some(broker) = &config.broker {
        checks.push((
            "broker.max_connections".into(),
            broker.max_connections as f64,
            (1.0, 1_000_000.0),
            "",
        ));
    }
    for (key, value, range, unit) in checks {
        in_range(path, &key, value, range, unit)?;
    }
    Ok(())
}

/// What a configured market may say, wide enough for any plausible future and narrow enough that
/// a slip of the unit is caught at load: hashprice has been between ~$28 (2026) and ~$1,000
/// (2017) per PH/s per day; network difficulty was ~1.5e14 in 2026; the block subsidy is 3.125
/// BTC and fees rarely add one more.
const HASHPRICE_USD_PER_PH_DAY: (f64, f64) = (0.01, 100_000.0);
const DIFFICULTY: (f64, f64) = (1.0, 1e18);
const BTC_USD: (f64, f64) = (1.0, 1e8);
const FEES_PER_BLOCK_BTC: (f64, f64) = (0.0, 100.0);

/// The agent's broker: an external one by URL, or the embedded one, never both; the embedded
/// one's TLS files readable; the agent able to log in to it when it has users.
fn check_broker(
    agent: &AgentSection,
    embedded: Option<&fleet_mqtt::embedded::BrokerSettings>,
    feeds: &FeedsSection,
) -> Result<(), (&'static str, String)> {
    if agent.share.is_some() && agent.mqtt_url.is_none() {
        return Err((
            "agent.share",
            "agents sharing a site need one broker they all reach: give agent.mqtt_url".into(),
        ));
    }
    if agent.mqtt_url.is_some() && embedded.is_some() {
        return Err((
            "agent.mqtt_url",
            "an external broker and [broker] (the embedded one) exclude each other".into(),
        ));
    }
    if let Some(url) = &agent.public_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err((
            "agent.public_url",
            format!("{url:?}: an http:// or https:// URL the miners can reach"),
        ));
    }
    let connection = agent.connection(embedded).map_err(|e| {
        let key = match e {
            fleet_mqtt::LinkError::Url(_) => "agent.mqtt_url",
            fleet_mqtt::LinkError::Credentials(_) => "agent.username",
            _ => "agent.ca_file",
        };
        (key, e.to_string())
    })?;
    if let Some(broker) = embedded {
        broker.check().map_err(|e| ("broker.tls", e.to_string()))?;
        // Without logins, whoever reaches a listener may publish anything on it (the embedded
        // broker has no ACLs): only this machine's own clients, then.
        let exposed = std::iter::once(("broker.listen", broker.listen))
            .chain(
                broker
                    .tls
                    .as_ref()
                    .map(|tls| ("broker.tls.listen", tls.listen)),
            )
            .find(|(_, address)| !address.ip().is_loopback());
        // Unsigned inputs are safe only where the broker says who may publish them, and the
        // embedded one cannot: every login may publish on every topic.
        let unsigned = [
            (
                feeds.accept_unsigned,
                "feeds.accept_unsigned",
                "…/market, …/power and …/grid",
            ),
            (agent.maestro, "agent.maestro", "maestro/target"),
        ];
        if let (Some((_, address)), Some((_, key, topics))) =
            (exposed, unsigned.iter().find(|(on, _, _)| *on))
        {
            return Err((
                key,
                format!(
                    "the embedded broker listens on {address}, and it cannot say who may publish                      unsigned {topics}: any login could move the site. Sign the readings                      (`hashwarden feed`), keep the broker on loopback, or run mosquitto with                      docs/mosquitto.acl"
                ),
            ));
        }
        if let Some((key, address)) = exposed
            && broker.users.is_empty()
        {
            return Err((
                key,
                format!(
                    "{address} is reachable from the network, and without [broker.users] anyone \
                     there could publish on the site's topics: give every client a login, or \
                     listen on loopback"
                ),
            ));
        }
        let admitted = match &connection.credentials {
            _ if broker.users.is_empty() => true,
            Some((user, password)) => broker.users.get(user) == Some(password),
            None => false,
        };
        if !admitted {
            return Err((
                "agent.username",
                "the embedded broker has [broker.users]: the agent needs one of them, with its password".into(),
            ));
        }
    }
    Ok(())
}

impl AgentSection {
    /// Where the miners fetch rollouts' images from: `public_url`, or the listener's own address
    /// when it is a definite one.
    pub fn images_base_url(&self) -> Option<String> {
        if let Some(url) = &self.public_url {
            return Some(url.clone());
        }
        let address = self.metrics_listen?;
        (!address.ip().is_unspecified()).then(|| format!("http://{address}"))
    }

    /// How the agent connects: to the external broker, or to the embedded one's plain listener.
    pub fn connection(
        &self,
        embedded: Option<&fleet_mqtt::embedded::BrokerSettings>,
    ) -> Result<fleet_mqtt::Connection, fleet_mqtt::LinkError> {
        let url = match (&self.mqtt_url, embedded) {
            (Some(url), _) => url.clone(),
            (None, Some(broker)) => broker.local_url().to_string(),
            (None, None) => fleet_mqtt::embedded::BrokerSettings::default()
                .local_url()
                .to_string(),
        };
        fleet_mqtt::Connection::new(
            &url,
            self.ca_file.as_deref(),
            self.username.as_deref(),
            self.password.as_ref(),
        )
    }

    /// The embedded broker to start, if the agent runs one.
    pub fn embedded_broker(
        &self,
        configured: Option<&fleet_mqtt::embedded::BrokerSettings>,
    ) -> Option<fleet_mqtt::embedded::BrokerSettings> {
        match &self.mqtt_url {
            Some(_) => None,
            None => Some(configured.cloned().unwrap_or_default()),
        }
    }
}

impl SiteConfig {
    pub fn load(path: &Path) -> Result<Self, SiteError> {
        let text = cli_common::config::read(path)?;
        let site = Self::parse(path, &text)?;
        let mut secrets = Vec::new();
        if site.agent.as_ref().is_some_and(|a| a.password.is_some()) {
            secrets.push("agent.password");
        }
        if site.broker.as_ref().is_some_and(|b| !b.users.is_empty()) {
            secrets.push("broker.users");
        }
        cli_common::config::check_private(path, &secrets)?;
        Ok(site)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, SiteError> {
        use cli_common::config::in_range;
        let config: SiteConfig = cli_common::config::parse_toml(path, text)?;
        let invalid = |key: &str, reason: String| SiteError::invalid(path, key, reason);
        if !(0.0..1.0).contains(&config.site.pool_fee) {
            return Err(invalid(
                "site.pool_fee",
                format!("{} is not a fraction in 0..1", config.site.pool_fee),
            ));
        }
        config
            .tariff
            .check()
            .map_err(|e| invalid("tariff", e.to_string()))?;
        let policy = &config.policy;
        if !(0.0..1.0).contains(&policy.band) {
            return Err(invalid(
                "policy.band",
                format!("{} is not a fraction in 0..1", policy.band),
            ));
        }
        if !(60..=7 * 86_400).contains(&config.power.max_age_s) {
            return Err(invalid(
                "power.max_age_s",
                format!("{} s is not within 60..=604800", config.power.max_age_s),
            ));
        }
        if !(0.0..1.0).contains(&policy.min_change) {
            return Err(invalid(
                "policy.min_change",
                format!("{} is not a fraction in 0..1", policy.min_change),
            ));
        }
        if let Some(interval) = config.market.poll_interval_s
            && !(interval.is_finite() && (10.0..=86_400.0).contains(&interval))
        {
            return Err(invalid(
                "market.poll_interval_s",
                format!("{interval} s is not within 10..=86400"),
            ));
        }
        check_numbers(&config, path)?;
        if let Some(agent) = &config.agent {
            check_broker(agent, config.broker.as_ref(), &config.feeds)
                .map_err(|(key, e)| invalid(key, e))?;
            if !(agent.plan_interval_s.is_finite()
                && (0.1..=3600.0).contains(&agent.plan_interval_s))
            {
                return Err(invalid(
                    "agent.plan_interval_s",
                    format!("{} s is not within 0.1..=3600", agent.plan_interval_s),
                ));
            }
            if agent.key_id.is_empty() {
                return Err(invalid("agent.key_id", "must not be empty".into()));
            }
            agent.commands.check().map_err(|(key, e)| invalid(key, e))?;
        }
        for (i, machine) in config.machines.iter().enumerate() {
            if fleet_proto::Name::new(&machine.id).is_err() {
                return Err(invalid(
                    "machines.id",
                    format!("machines[{i}]: {:?} is not a miner name", machine.id),
                ));
            }
            if let Some(key) = &machine.public_key
                && let Err(e) = fleet_proto::report::DeviceKey::from_hex(key)
            {
                return Err(invalid(&format!("machines[{i}].public_key"), e.to_string()));
            }
        }
        for (i, source) in config
            .market
            .poll
            .iter()
            .flat_map(|sources| sources.list())
            .enumerate()
        {
            if let Err(e) = source.check() {
                return Err(invalid(
                    &format!("market.poll[{i}].api_key_file"),
                    e.to_string(),
                ));
            }
        }
        for (i, key) in config.feeds.trusted_keys.iter().enumerate() {
            if let Err(e) = fleet_proto::TrustedKeys::default().trust_hex(&key.id, &key.public_key)
            {
                return Err(invalid(
                    &format!("feeds.trusted_keys[{i}].public_key"),
                    e.to_string(),
                ));
            }
        }
        if fleet_proto::Name::new(&config.site.name).is_err() {
            return Err(invalid(
                "site.name",
                format!("{:?} cannot be an MQTT topic level", config.site.name),
            ));
        }
        match (&config.market.hashprice, &config.market.network) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "market",
                    "give a hashprice or the network figures, not both".into(),
                ));
            }
            (Some(h), None) => {
                in_range(
                    path,
                    "market.hashprice",
                    h.0,
                    HASHPRICE_USD_PER_PH_DAY,
                    "$/PH/day",
                )?;
            }
            (None, Some(n)) => {
                in_range(
                    path,
                    "market.network.difficulty",
                    n.difficulty,
                    DIFFICULTY,
                    "",
                )?;
                in_range(path, "market.network.btc_usd", n.btc_usd, BTC_USD, "$")?;
                in_range(
                    path,
                    "market.network.fees_per_block_btc",
                    n.fees_per_block_btc,
                    FEES_PER_BLOCK_BTC,
                    "BTC",
                )?;
                // Each figure may be possible and their combination still not a market.
                in_range(
                    path,
                    "market.network",
                    n.hashprice().0,
                    HASHPRICE_USD_PER_PH_DAY,
                    "$/PH/day of hashprice",
                )?;
            }
            (None, None) => {}
        }
        Ok(config)
    }

    /// The hashprice the configuration gives, if any.
    pub fn hashprice(&self) -> Option<UsdPerPhDay> {
        self.market
            .hashprice
            .or_else(|| self.market.network.map(|n| n.hashprice()))
    }

    /// What the configuration says of particular machines (maintenance, overheads), onto them.
    pub fn apply_to(&self, machines: &mut [crate::planner::Machine]) {
        for machine in machines {
            if let Some(known) = self.machines.iter().find(|m| m.id == machine.id) {
                machine.exempt = known.exempt;
                machine.overhead = crate::units::UsdPerDay(known.overhead_usd_per_day);
            }
        }
    }

    pub fn cap(&self) -> Option<Watts> {
        self.site.cap_w.map(Watts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[site]
name = "tx-west"
pool_fee = 0.02
cap_w = 5_000_000

[tariff]
kind = "fixed"
price = 0.06

[policy]
mode = "optimise"
band = 0.05

[market.network]
difficulty = 144.5e12
height = 935000
fees_per_block_btc = 0.02
btc_usd = 63000
"#;

    fn parse(text: &str) -> Result<SiteConfig, SiteError> {
        SiteConfig::parse(Path::new("site.toml"), text)
    }

    #[test]
    fn a_site_reads_with_defaults_for_what_it_leaves_out() {
        let site = parse(GOOD).expect("valid");
        assert_eq!(site.cap(), Some(Watts(5e6)));
        assert!((site.hashprice().expect("given").0 - 27.58).abs() < 0.01);
        assert_eq!(site.policy.mode, crate::planner::Mode::Optimise);
        assert_eq!(site.policy.min_on_s, Policy::default().min_on_s);
    }

    proptest::proptest! {
        /// Whatever the file holds, loading it is a config or an error, never a panic.
        #[test]
        fn any_text_is_a_config_or_an_error(
            text in "\\PC{0,300}",
            line in 0usize..30,
            junk in "[a-z_]{1,8} = [-0-9.e\"a-z]{0,12}",
        ) {
            let _ = parse(&text);
            let mut lines: Vec<&str> = GOOD.lines().collect();
            let at = line.min(lines.len());
            lines.insert(at, &junk);
            let _ = parse(&lines.join("\n"));
        }
    }

    #[test]
    fn the_agent_uses_the_embedded_broker_unless_given_an_external_one() {
        let agent = "[agent]\nkey_file = \"k\"\nkey_id = \"host\"\n";
        let site = parse(&format!("{GOOD}{agent}")).expect("valid");
        let section = site.agent.as_ref().expect("agent");
        let embedded = section
            .embedded_broker(site.broker.as_ref())
            .expect("embedded");
        assert_eq!(embedded.listen.to_string(), "127.0.0.1:1883");
        assert_eq!(
            section.connection(None).expect("connects").url.to_string(),
            "mqtt://127.0.0.1:1883"
        );

        // On every interface only with logins, the agent's among them.
        let open = format!("{GOOD}{agent}[broker]\nlisten = \"0.0.0.0:1999\"\n");
        let refused = parse(&open).expect_err("no logins").to_string();
        assert!(
            refused.contains("broker.listen") && refused.contains("[broker.users]"),
            "{refused}"
        );
        let listening = format!(
            "{GOOD}{agent}username = \"agent\"\npassword = \"a-long-secret\"\n\
             [broker]\nlisten = \"0.0.0.0:1999\"\n[broker.users]\nagent = \"a-long-secret\"\n"
        );
        let site = parse(&listening).expect("valid");
        // Unsigned inputs there: any miner's login could publish them.
        for (extra, key) in [
            ("[feeds]\naccept_unsigned = true\n", "feeds.accept_unsigned"),
            ("", "agent.maestro"),
        ] {
            let text = if key == "agent.maestro" {
                listening.replace("[broker]\n", "maestro = true\n[broker]\n")
            } else {
                format!("{listening}{extra}")
            };
            let refused = parse(&text).expect_err("unsigned inputs").to_string();
            assert!(refused.contains(key), "{refused}");
        }
        let on_loopback = format!(
            "{GOOD}{agent}maestro = true\n[broker]\nlisten = \"127.0.0.1:1999\"\n\
             [feeds]\naccept_unsigned = true\n"
        );
        parse(&on_loopback).expect("loopback: only this machine's own clients");
        let section = site.agent.as_ref().expect("agent");
        assert_eq!(
            section
                .connection(site.broker.as_ref())
                .expect("connects")
                .url
                .to_string(),
            "mqtt://127.0.0.1:1999",
            "the agent reaches an all-interfaces listener on loopback"
        );

        let external = format!("{GOOD}{agent}mqtt_url = \"mqtts://broker.site\"\n");
        let site = parse(&external).expect("valid");
        let section = site.agent.as_ref().expect("agent");
        assert!(section.embedded_broker(site.broker.as_ref()).is_none());
        let url = section.connection(None).expect("connects").url;
        assert!(url.tls && url.port == 8883, "{url}");

        let error = |text: String| parse(&text).expect_err("invalid").to_string();
        // Where the miners fetch a rollout's image: the listener, unless it is a wildcard.
        let images = |extra: &str| {
            parse(&format!("{GOOD}{agent}{extra}"))
                .expect("valid")
                .agent
                .and_then(|a| a.images_base_url())
        };
        assert_eq!(images(""), None);
        assert_eq!(
            images("metrics_listen = \"10.20.0.5:9100\"\n").as_deref(),
            Some("http://10.20.0.5:9100")
        );
        assert_eq!(images("metrics_listen = \"0.0.0.0:9100\"\n"), None);
        // `off`, as the daemon's listeners take it (#21): no listener, no images.
        assert_eq!(images("metrics_listen = \"off\"\n"), None);
        let wrong = error(format!("{GOOD}{agent}metrics_listen = \"everywhere\"\n"));
        assert!(
            wrong.contains("metrics_listen") && wrong.contains("ADDRESS:PORT or off"),
            "{wrong}"
        );
        assert_eq!(
            images("metrics_listen = \"0.0.0.0:9100\"\npublic_url = \"http://agent.site:9100\"\n")
                .as_deref(),
            Some("http://agent.site:9100")
        );
        assert!(
            error(format!("{GOOD}{agent}public_url = \"agent.site:9100\"\n"))
                .contains("agent.public_url")
        );
        let both = format!("{external}[broker]\nlisten = \"127.0.0.1:1999\"\n");
        assert!(error(both).contains("agent.mqtt_url"));
        let users = format!("{GOOD}{agent}[broker.users]\nminer = \"pw\"\n");
        assert!(error(users.clone()).contains("agent.username"));
        let logged_in = users.replace(
            "key_id = \"host\"\n",
            "key_id = \"host\"\nusername = \"miner\"\npassword = \"pw\"\n",
        );
        parse(&logged_in).expect("the agent is one of the broker's users");
        let ca_on_plain = format!("{GOOD}{agent}mqtt_url = \"mqtt://h\"\nca_file = \"ca.pem\"\n");
        assert!(error(ca_on_plain).contains("agent.ca_file"));
        let tls_missing = format!(
            "{GOOD}{agent}[broker.tls]\nlisten = \"0.0.0.0:8883\"\ncert_file = \"/nonexistent.pem\"\nkey_file = \"/nonexistent.key\"\n"
        );
        assert!(error(tls_missing).contains("broker.tls"));
        let shared_alone =
            format!("{GOOD}{agent}[agent.share]\ngroup = \"agents\"\ninstance = \"a1\"\n");
        assert!(error(shared_alone.clone()).contains("agent.share"));
        let shared = shared_alone.replace(
            "[agent.share]",
            "mqtt_url = \"mqtt://broker\"\n[agent.share]",
        );
        parse(&shared).expect("a group behind an external broker");
        let wildcard = shared.replace("instance = \"a1\"", "instance = \"a/#\"");
        assert!(error(wildcard).contains("not a valid name"));
    }

    #[test]
    fn the_agents_patience_is_configurable_and_checked() {
        let agent = "[agent]\nkey_file = \"k\"\nkey_id = \"host\"\n";
        let site = parse(&format!("{GOOD}{agent}")).expect("valid");
        let defaults = crate::executor::ExecutorConfig::default();
        assert_eq!(site.agent.expect("agent").commands, defaults);
        let tuned =
            format!("{GOOD}{agent}[agent.commands]\nack_timeout_s = 2\nretry_after_s = 20\n");
        let commands = parse(&tuned).expect("valid").agent.expect("agent").commands;
        assert_eq!((commands.ack_timeout_s, commands.retry_after_s), (2, 20));
        assert_eq!(commands.max_attempts, defaults.max_attempts);
        let error = |extra: &str| {
            parse(&format!("{GOOD}{agent}[agent.commands]\n{extra}\n"))
                .expect_err("invalid")
                .to_string()
        };
        assert!(error("max_attempts = 0").contains("agent.commands.max_attempts"));
        assert!(error("ack_timeout_s = 90").contains("agent.commands.command_ttl_s"));
        assert!(error("asleep_share = 1.5").contains("agent.commands.asleep_share"));
        assert!(error("retry_afer_s = 5").contains("retry_afer_s"));
    }

    #[test]
    fn every_error_names_its_key() {
        for (change, key) in [
            (("pool_fee = 0.02", "pool_fee = 2"), "site.pool_fee"),
            (("cap_w = 5_000_000", "cap_w = -1"), "site.cap_w"),
            (
                (
                    "cap_w = 5_000_000",
                    "cap_w = 5_000_000\ngrid_lead_s = 100_000",
                ),
                "site.grid_lead_s",
            ),
            (("price = 0.06", "price = -0.06"), "tariff"),
            (("band = 0.05", "band = 5"), "policy.band"),
            (("btc_usd = 63000", "btc_usd = 0"), "market.network.btc_usd"),
            (
                ("btc_usd = 63000", "btc_usd = 1e308"),
                "market.network.btc_usd",
            ),
            (
                ("btc_usd = 63000", "btc_usd = nan"),
                "market.network.btc_usd",
            ),
            // Once "hashprice is inf" without a key.
            (
                ("difficulty = ", "difficulty = 1e-300\n# was: "),
                "market.network.difficulty",
            ),
            (
                ("band = 0.05", "band = 0.05\nbatch_size = 0"),
                "policy.batch_size",
            ),
            (("mode = \"optimise\"", "mode = \"yolo\""), "mode"),
            (("[site]", "[site]\ncolour = \"red\""), "colour"),
            (
                ("[tariff]", "[[machines]]\nid = \"a/b\"\n[tariff]"),
                "machines.id",
            ),
            (
                (
                    "[tariff]",
                    "[[machines]]\nid = \"m1\"\noverhead_usd_per_day = -2\n[tariff]",
                ),
                "machines[0].overhead_usd_per_day",
            ),
        ] {
            let text = GOOD.replace(change.0, change.1);
            let message = parse(&text).expect_err(key).to_string();
            assert!(message.contains(key), "{key}: {message}");
            assert!(message.starts_with("site.toml"), "{message}");
        }
        let without_network = &GOOD[..GOOD.find("[market.network]").expect("in GOOD")];
        for bad in ["inf", "nan", "-3", "1e9"] {
            let text = format!("{without_network}[market]\nhashprice = {bad}\n");
            let message = parse(&text).expect_err(bad).to_string();
            assert!(message.contains("market.hashprice"), "{bad}: {message}");
        }
    }

    /// Every numeric key of a site file with its default here, each replaceable.
    const NUMBERS: [(&str, &str); 24] = [
        ("site.pool_fee", "0.02"),
        ("site.cap_w", "5000000"),
        ("site.grid_lead_s", "300"),
        ("tariff.price", "0.06"),
        ("policy.band", "0.05"),
        ("policy.min_on_s", "600"),
        ("policy.min_off_s", "600"),
        ("policy.restore_cooldown_s", "600"),
        ("policy.batch_size", "50"),
        ("policy.batch_interval_s", "30"),
        ("policy.min_change", "0.05"),
        ("market.hashprice", "28.0"),
        ("market.poll_interval_s", "300"),
        ("power.max_age_s", "3600"),
        ("agent.plan_interval_s", "1.0"),
        ("agent.commands.ack_timeout_s", "10"),
        ("agent.commands.max_attempts", "3"),
        ("agent.commands.backoff_s", "5"),
        ("agent.commands.verify_within_s", "120"),
        ("agent.commands.asleep_share", "0.1"),
        ("agent.commands.command_ttl_s", "60"),
        ("agent.commands.retry_after_s", "300"),
        ("broker.max_connections", "20000"),
        ("machines[0].overhead_usd_per_day", "1.5"),
    ];
    const FLOAT_KEYS: [&str; 10] = [
        "site.pool_fee",
        "site.cap_w",
        "tariff.price",
        "policy.band",
        "policy.min_change",
        "market.hashprice",
        "market.poll_interval_s",
        "agent.plan_interval_s",
        "agent.commands.asleep_share",
        "machines[0].overhead_usd_per_day",
    ];

    fn every_number(key: &str, value: &str) -> String {
        let n = |name: &str| {
            let (_, default) = NUMBERS
                .iter()
                .find(|(k, _)| *k == name)
                .expect("a listed key");
            if name == key { value } else { default }
        };
        let mut text = String::new();
        for (section, keys) in [
            ("[site]\nname = \"s\"", &["site."][..]),
            ("[tariff]\nkind = \"fixed\"", &["tariff."]),
            ("[policy]", &["policy."]),
            ("[market]", &["market."]),
            ("[power]", &["power."]),
            ("[agent]\nkey_file = \"k\"\nkey_id = \"a\"", &["agent.plan"]),
            ("[agent.commands]", &["agent.commands."]),
            ("[broker]", &["broker."]),
            ("[[machines]]\nid = \"m1\"", &["machines[0]."]),
        ] {
            text += section;
            text += "\n";
            for (name, _) in NUMBERS
                .iter()
                .filter(|(k, _)| keys.iter().any(|p| k.starts_with(p)))
            {
                let leaf = name.rsplit('.').next().unwrap_or(name);
                text += &format!("{leaf} = {}\n", n(name));
            }
        }
        text
    }

    /// The error names `key` (a check over a whole section, like the tariff's, names the section).
    fn names(error: &SiteError, key: &str) -> bool {
        matches!(error, SiteError::Invalid { key: named, .. } if key.starts_with(named.as_str()))
    }

    #[test]
    fn every_number_at_its_default_loads() {
        parse(&every_number("", "")).expect("valid");
    }

    #[test]
    fn huge_integers_are_refused_naming_the_key_never_overflow_later() {
        for (key, _) in NUMBERS.iter().filter(|(k, _)| !FLOAT_KEYS.contains(k)) {
            for huge in ["4294967295", "18446744073709551615"] {
                match parse(&every_number(key, huge)) {
                    Err(e) => assert!(
                        names(&e, key) || matches!(e, SiteError::Parse { .. }),
                        "{key} = {huge}: {e}"
                    ),
                    Ok(_) => panic!("{key} = {huge} was taken"),
                }
            }
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
                Ok(_) => proptest::prop_assert!(value.is_finite(), "{key} = {text} taken"),
                Err(e) => proptest::prop_assert!(names(&e, key), "{key} = {text}: {e}"),
            }
        }
    }

    #[test]
    fn several_market_sources_and_their_spread() {
        let without_network = &GOOD[..GOOD.find("[market.network]").expect("in GOOD")];
        let sources = "[market]\npoll = [{ kind = \"mempool\", url = \"https://mempool.space\" }, \
                       { kind = \"hashrate_index\", url = \"https://example.invalid\" }]\n";
        let site = parse(&format!("{without_network}{sources}")).expect("valid");
        assert_eq!(site.market.poll.map(|p| p.list().len()), Some(2));
        let one = "[market]\npoll = { kind = \"mempool\", url = \"https://mempool.space\" }\n";
        let site = parse(&format!("{without_network}{one}")).expect("valid");
        assert_eq!(site.market.poll.map(|p| p.list().len()), Some(1));
        for (extra, key) in [
            ("quorum_spread = 5\n", "market.quorum_spread"),
            ("quorum_spread = nan\n", "market.quorum_spread"),
        ] {
            let message = parse(&format!("{without_network}{sources}{extra}"))
                .expect_err(extra)
                .to_string();
            assert!(message.contains(key), "{message}");
        }
        let none = parse(&format!("{without_network}[market]\npoll = []\n"))
            .expect_err("no source")
            .to_string();
        assert!(none.contains("market.poll"), "{none}");
    }
}
