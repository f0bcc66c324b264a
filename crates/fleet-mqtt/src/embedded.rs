//! The embedded broker: rumqttd in the agent's process, MQTT v5 only (both ends speak v5: retained
//! presence, last wills, session expiry, shared subscriptions — each checked against this broker
//! in `tests/embedded.rs`). A plain listener that the agent itself uses (loopback by default), an
//! optional TLS listener for miners, optional user/password authentication.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tracing::{error, info};

use crate::endpoint::read_certificates;
use crate::{BrokerUrl, LinkError, Secret};

/// The largest message the broker takes from anyone. A state message with a 24-point curve is
/// ~2 KB. It must stay below what a miner accepts (16 KiB a packet): rumqttd does not honour a
/// client's declared Maximum Packet Size, so a bigger message on a miner's command topic would
/// reach the miner, break its connection, and, kept in its session, break it again on every
/// reconnect.
pub const MAX_PAYLOAD: usize = 12 * 1024;
/// QoS 1 messages in flight per connection: the agent takes a whole fleet's telemetry on one.
const MAX_INFLIGHT: usize = 1_000;
/// Packets queued towards one connection before the router waits for it to drain: the agent's
/// one connection takes a whole fleet's acks and telemetry in a burst.
const MAX_OUTGOING_PACKETS: u64 = 20_000;
/// The commit log kept per subscription filter: how far a slow subscriber may fall behind.
const SEGMENT_BYTES: usize = 16 << 20;
const SEGMENTS: usize = 8;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSettings {
    /// The plain listener; the agent connects through it. Loopback unless miners may reach it
    /// unencrypted.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// A TLS listener for miners.
    pub tls: Option<TlsListener>,
    /// user → password; when given, every client must log in (the agent with its own
    /// `username`/`password`).
    #[serde(default)]
    pub users: BTreeMap<String, Secret>,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListener {
    pub listen: SocketAddr,
    /// PEM certificate chain the broker presents.
    pub cert_file: PathBuf,
    /// PEM private key of that certificate.
    pub key_file: PathBuf,
}

fn default_listen() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), crate::endpoint::MQTT_PORT)
}

fn default_max_connections() -> usize {
    20_000
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            tls: None,
            users: BTreeMap::new(),
            max_connections: default_max_connections(),
        }
    }
}

impl BrokerSettings {
    /// Checks what can be checked before binding: the TLS files hold a certificate and a key.
    pub fn check(&self) -> Result<(), LinkError> {
        if let Some(tls) = &self.tls {
            read_certificates(&tls.cert_file)?;
            read_private_key(&tls.key_file)?;
        }
        Ok(())
    }

    /// How a client on this machine reaches the plain listener.
    pub fn local_url(&self) -> BrokerUrl {
        BrokerUrl {
            host: loopback_for(self.listen.ip()).to_string(),
            port: self.listen.port(),
            tls: false,
        }
    }

    fn listeners(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        std::iter::once(self.listen).chain(self.tls.as_ref().map(|tls| tls.listen))
    }

    fn rumqttd_config(&self) -> rumqttd::Config {
        let connections = rumqttd::ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: MAX_PAYLOAD,
            max_inflight_count: MAX_INFLIGHT,
            auth: (!self.users.is_empty()).then(|| {
                self.users
                    .iter()
                    .map(|(user, password)| (user.clone(), password.expose().to_string()))
                    .collect()
            }),
            external_auth: None,
            dynamic_filters: true,
        };
        let server = |name: &str, listen, tls| rumqttd::ServerSettings {
            name: name.to_string(),
            listen,
            tls,
            next_connection_delay_ms: 0,
            connections: connections.clone(),
        };
        let mut v5 = HashMap::new();
        v5.insert("plain".to_string(), server("mqtt", self.listen, None));
        if let Some(tls) = &self.tls {
            let files = rumqttd::TlsConfig::Rustls {
                capath: None,
                certpath: tls.cert_file.display().to_string(),
                keypath: tls.key_file.display().to_string(),
            };
            v5.insert("tls".to_string(), server("mqtts", tls.listen, Some(files)));
        }
        rumqttd::Config {
            id: 0,
            router: rumqttd::RouterConfig {
                max_connections: self.max_connections,
                max_outgoing_packet_count: MAX_OUTGOING_PACKETS,
                max_segment_size: SEGMENT_BYTES,
                max_segment_count: SEGMENTS,
                ..Default::default()
            },
            v5: Some(v5),
            ..Default::default()
        }
    }
}

/// A running embedded broker. Its threads live as long as the process: rumqttd has no
/// shutdown, and the agent's own exit is the only time it should stop.
#[derive(Debug)]
pub struct EmbeddedBroker {
    pub local_url: BrokerUrl,
    pub tls_listen: Option<SocketAddr>,
}

/// Starts the broker. A port already taken (another broker on 1883, say) is an error here
/// rather than a line in rumqttd's thread log.
pub fn start(settings: &BrokerSettings) -> Result<EmbeddedBroker, LinkError> {
    settings.check()?;
    for address in settings.listeners() {
        TcpListener::bind(address).map_err(|source| LinkError::Listen { address, source })?;
    }
    let config = settings.rumqttd_config();
    std::thread::Builder::new()
        .name("broker".into())
        .spawn(move || {
            if let Err(e) = rumqttd::Broker::new(config).start() {
                error!(error = %e, "embedded broker stopped");
            }
        })
        .map_err(|source| LinkError::Listen {
            address: settings.listen,
            source,
        })?;
    // No connection probe: rumqttd logs a client that connects and leaves without a CONNECT
    // as an error. The ports were free a moment ago and the clients retry, so the first
    // CONNACK is the proof it is up.
    info!(
        listen = %settings.listen,
        tls = ?settings.tls.as_ref().map(|tls| tls.listen),
        users = settings.users.len(),
        "embedded MQTT broker up"
    );
    Ok(EmbeddedBroker {
        local_url: settings.local_url(),
        tls_listen: settings.tls.as_ref().map(|tls| tls.listen),
    })
}

fn loopback_for(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    }
}

fn read_private_key(path: &Path) -> Result<(), LinkError> {
    let pem = std::fs::read(path).map_err(|source| LinkError::File {
        path: path.to_path_buf(),
        source,
    })?;
    match rustls_pemfile::private_key(&mut pem.as_slice()) {
        Ok(Some(_)) => Ok(()),
        _ => Err(LinkError::NoPrivateKey(path.to_path_buf())),
    }
}
