//! Topic names: `hashwarden/v1/<site>/<miner>/<kind>` per miner, `hashwarden/v1/<site>/<input>` per
//! site, and the widely used `maestro/target` demand-response topic.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

/// The root every hashwarden topic starts with; the version is part of the contract.
pub const ROOT: &str = "hashwarden/v1";
/// The demand-response contract many sites already run (`{"target":0|100,"timestamp":s}`).
pub const MAESTRO_TARGET: &str = "maestro/target";

/// A site or miner name: 1 to 64 of `A–Z a–z 0–9 - _ .`, so it can never be a wildcard, a level
/// separator or a `$` system topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

/// The text cannot be a site or miner name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid name: use 1 to 64 letters, digits, '-', '_' or '.'")]
pub struct InvalidName(pub String);

impl Name {
    pub fn new(text: &str) -> Result<Self, InvalidName> {
        let valid = (1..=64).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if valid {
            Ok(Self(text.to_string()))
        } else {
            Err(InvalidName(text.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = InvalidName;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::new(&text)
    }
}

impl From<Name> for String {
    fn from(name: Name) -> Self {
        name.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Name {
    type Err = InvalidName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// What a miner topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Retained `online`; the last will says `offline`.
    Status,
    /// Periodic measurements.
    Telemetry,
    /// Retained: mode, targets, nameplate, efficiency curve.
    State,
    /// Signed commands to the miner (QoS 1).
    Cmd,
    /// The miner's answer to each command.
    Ack,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Self::Status,
        Self::Telemetry,
        Self::State,
        Self::Cmd,
        Self::Ack,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Telemetry => "telemetry",
            Self::State => "state",
            Self::Cmd => "cmd",
            Self::Ack => "ack",
        }
    }

    /// Whether a miner signs what it publishes on this kind (`crate::report`): everything but
    /// `status`, whose last will the broker publishes, and `cmd`, which the agent signs.
    pub const fn signed_by_miner(self) -> bool {
        matches!(self, Self::State | Self::Telemetry | Self::Ack)
    }

    /// Whether the broker keeps the last message for new subscribers.
    pub const fn retained(self) -> bool {
        matches!(self, Self::Status | Self::State)
    }
}

/// One miner's topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MinerTopic {
    pub site: Name,
    pub miner: Name,
    pub kind: Kind,
}

/// A topic string that is not a hashwarden miner topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a hashwarden/v1/<site>/<miner>/<kind> topic")]
pub struct NotAMinerTopic(pub String);

impl MinerTopic {
    pub fn new(site: &Name, miner: &Name, kind: Kind) -> Self {
        Self {
            site: site.clone(),
            miner: miner.clone(),
            kind,
        }
    }

    pub fn parse(topic: &str) -> Result<Self, NotAMinerTopic> {
        let fail = || NotAMinerTopic(topic.to_string());
        let rest = topic
            .strip_prefix(ROOT)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(fail)?;
        let mut parts = rest.split('/');
        let (Some(site), Some(miner), Some(kind), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(fail());
        };
        let kind = Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind)
            .ok_or_else(fail)?;
        Ok(Self {
            site: Name::new(site).map_err(|_| fail())?,
            miner: Name::new(miner).map_err(|_| fail())?,
            kind,
        })
    }
}

impl fmt::Display for MinerTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{ROOT}/{}/{}/{}",
            self.site,
            self.miner,
            self.kind.as_str()
        )
    }
}

/// Site-wide inputs the agent listens to.
pub fn market(site: &Name) -> String {
    format!("{ROOT}/{site}/market")
}

/// The site's real-time power price.
pub fn power(site: &Name) -> String {
    format!("{ROOT}/{site}/power")
}

pub fn grid(site: &Name) -> String {
    format!("{ROOT}/{site}/grid")
}

/// The agent's presence on a site, retained `online` with the last will `offline`: what miners
/// watch to notice a silent host. One level shorter than a miner topic, so no miner name can
/// collide with it.
pub fn agent_status(site: &Name) -> String {
    format!("{ROOT}/{site}/agent")
}

/// One agent's presence when several share a site (`[agent.share]`): a level deeper than any
/// miner topic, so no miner name collides with it. Miners count the host as present while any
/// agent is online, here or on [`agent_status`].
pub fn agent_peer_status(site: &Name, instance: &Name) -> String {
    format!("{ROOT}/{site}/agent/peers/{instance}")
}

/// The agents' signed heartbeat on a site, retained: what miners' failsafe counts, since the
/// presence topic itself can be written by anyone the broker lets in. Five levels like a miner
/// topic, but `heartbeat` is no message kind, so no miner's topic is it.
pub fn agent_heartbeat(site: &Name) -> String {
    format!("{ROOT}/{site}/agent/heartbeat")
}

/// Every agent's presence on a site, when several share it.
pub fn every_agent_peer(site: &Name) -> String {
    format!("{ROOT}/{site}/agent/peers/+")
}

/// A filter for one kind of message from every miner of a site, optionally as an MQTT v5 shared
/// subscription so several agents split the load.
pub fn every_miner(site: &Name, kind: Kind, share_group: Option<&Name>) -> String {
    let filter = format!("{ROOT}/{site}/+/{}", kind.as_str());
    match share_group {
        Some(group) => format!("$share/{group}/{filter}"),
        None => filter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::new(s).expect("valid")
    }

    #[test]
    fn topics_round_trip() {
        for kind in Kind::ALL {
            let topic = MinerTopic::new(&name("site-a"), &name("s19.r2-17"), kind);
            let text = topic.to_string();
            assert_eq!(
                text,
                format!("hashwarden/v1/site-a/s19.r2-17/{}", kind.as_str())
            );
            assert_eq!(MinerTopic::parse(&text), Ok(topic));
        }
        assert_eq!(market(&name("tx1")), "hashwarden/v1/tx1/market");
        assert!(MinerTopic::parse(&agent_status(&name("tx1"))).is_err());
        let peer = agent_peer_status(&name("tx1"), &name("status"));
        assert_eq!(peer, "hashwarden/v1/tx1/agent/peers/status");
        assert!(
            MinerTopic::parse(&peer).is_err(),
            "an agent named like a kind is no miner's topic"
        );
        assert_eq!(
            every_miner(&name("tx1"), Kind::Telemetry, Some(&name("agents"))),
            "$share/agents/hashwarden/v1/tx1/+/telemetry"
        );
    }

    #[test]
    fn names_cannot_be_wildcards_or_levels() {
        for bad in ["", "a/b", "+", "#", "$SYS", "a b", &"x".repeat(65), "ü"] {
            assert!(Name::new(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "hashwarden/v1/site/miner",
            "hashwarden/v1/site/miner/cmd/extra",
            "hashwarden/v2/site/miner/cmd",
            "hashwarden/v1/site/+/cmd",
            "hashwarden/v1/site/miner/reboot",
        ] {
            assert!(MinerTopic::parse(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Name>("\"a/b\"").is_err());
    }
}
