//! A broker as a config names it — `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]`, a CA for TLS,
//! a user and password — checked once at load time so a typo is a config error with its key,
//! not a reconnect loop at run time.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rumqttc::v5::MqttOptions;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::LastWill;
use rumqttc::{TlsConfiguration, Transport};

use crate::{LinkError, Secret};

/// Where Debian (and most distributions) keep the system's trusted roots; used for `mqtts://`
/// when no `ca_file` is given, so a broker with a public certificate needs no extra setting.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
pub const MQTT_PORT: u16 = 1883;
pub const MQTTS_PORT: u16 = 8883;

/// A broker's address and whether the link is encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl FromStr for BrokerUrl {
    type Err = LinkError;

    fn from_str(url: &str) -> Result<Self, LinkError> {
        let bad = || LinkError::Url(url.to_string());
        let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtts://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("mqtt://") {
            (false, rest)
        } else {
            return Err(bad());
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let default_port = if tls { MQTTS_PORT } else { MQTT_PORT };
        // `[::1]:1883` keeps its brackets off the host; a bare IPv6 address needs them.
        let (host, port) = match rest.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or_else(bad)?;
                match after {
                    "" => (host, default_port),
                    port => (
                        host,
                        port.strip_prefix(':')
                            .ok_or_else(bad)?
                            .parse()
                            .map_err(|_| bad())?,
                    ),
                }
            }
            None => match rest.split_once(':') {
                Some((host, port)) => (host, port.parse().map_err(|_| bad())?),
                None => (rest, default_port),
            },
        };
        let plausible_host =
            !host.is_empty() && !host.contains(['/', '@', '?', '#', ' ']) && port != 0;
        if !plausible_host {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_string(),
            port,
            tls,
        })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Everything a client needs to reach its broker, as configured.
#[derive(Debug, Clone)]
pub struct Connection {
    pub url: BrokerUrl,
    /// PEM roots to trust for `mqtts://`; `None` = the system bundle.
    pub ca_file: Option<PathBuf>,
    pub credentials: Option<(String, Secret)>,
}

impl Connection {
    /// Checks a configured connection: the URL, a CA only with `mqtts://` (and readable, with at
    /// least one certificate), a user and a password together or not at all.
    pub fn new(
        url: &str,
        ca_file: Option<&Path>,
        username: Option<&str>,
        password: Option<&Secret>,
    ) -> Result<Self, LinkError> {
        let url: BrokerUrl = url.parse()?;
        if ca_file.is_some() && !url.tls {
            return Err(LinkError::CaWithoutTls);
        }
        if let Some(path) = ca_file {
            read_certificates(path)?;
        }
        let credentials = match (username, password) {
            (Some(user), Some(password)) => Some((user.to_string(), password.clone())),
            (None, None) => None,
            (Some(_), None) => return Err(LinkError::Credentials("a username needs a password")),
            (None, Some(_)) => return Err(LinkError::Credentials("a password needs a username")),
        };
        Ok(Self {
            url,
            ca_file: ca_file.map(Path::to_path_buf),
            credentials,
        })
    }

    /// Client options for this broker: transport (TLS with the configured roots), credentials
    /// and the presence will. Reads the CA file again so a rotated CA is picked up on restart.
    pub fn client_options(
        &self,
        client_id: impl Into<String>,
        presence: Option<&str>,
    ) -> Result<MqttOptions, LinkError> {
        let mut options = MqttOptions::new(client_id, self.url.host.clone(), self.url.port);
        if self.url.tls {
            let path = self
                .ca_file
                .clone()
                .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE));
            let ca = read_certificates(&path)?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth: None,
            }));
        }
        if let Some((user, password)) = &self.credentials {
            options.set_credentials(user.clone(), password.expose());
        }
        if let Some(topic) = presence {
            options.set_last_will(offline_will(topic));
        }
        Ok(options)
    }
}

/// The retained `offline` a broker publishes for a client that vanishes: what the agent reads a
/// miner's absence from, and what miners read a silent agent from.
pub fn offline_will(presence: &str) -> LastWill {
    LastWill::new(
        presence,
        fleet_proto::messages::OFFLINE,
        QoS::AtLeastOnce,
        true,
        None,
    )
}

/// Whether a failed connection is the operator's to fix — the broker refused the login, or TLS
/// does not trust its certificate — rather than a broker that is down or restarting. Those are
/// worth a warning; retrying will not mend them.
pub fn is_misconfiguration(error: &rumqttc::v5::ConnectionError) -> bool {
    use rumqttc::v5::ConnectionError;
    match error {
        ConnectionError::ConnectionRefused(_) | ConnectionError::Tls(_) => true,
        // tokio-rustls reports a certificate it does not trust as invalid data.
        ConnectionError::Io(e) => e.kind() == std::io::ErrorKind::InvalidData,
        _ => false,
    }
}

/// Logs a connection failure: a misconfiguration as a warning once per distinct cause, a broker
/// that is away at debug level (the reconnect loop would otherwise fill the log every second).
/// `last` is the caller's memory of the previous warning, cleared on a good connection.
pub fn log_failure(
    error: &rumqttc::v5::ConnectionError,
    was_connected: bool,
    last: &mut Option<String>,
) {
    if is_misconfiguration(error) {
        let cause = error.to_string();
        if last.as_deref() != Some(cause.as_str()) {
            tracing::warn!(error = %cause, "the MQTT broker refuses this client (url, ca_file, username and password?)");
            *last = Some(cause);
        }
    } else if was_connected {
        tracing::warn!(error = %error, "MQTT connection lost; reconnecting");
    } else {
        tracing::debug!(error = %error, "MQTT broker unreachable; retrying");
    }
}

/// The PEM file's bytes, once it is known to hold at least one certificate.
pub(crate) fn read_certificates(path: &Path) -> Result<Vec<u8>, LinkError> {
    let pem = std::fs::read(path).map_err(|source| LinkError::File {
        path: path.to_path_buf(),
        source,
    })?;
    let found = rustls_pemfile::certs(&mut pem.as_slice())
        .filter(Result::is_ok)
        .count();
    if found == 0 {
        return Err(LinkError::NoCertificate(path.to_path_buf()));
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_default_ports_and_brackets() {
        let parsed = |url: &str| url.parse::<BrokerUrl>().expect(url);
        assert_eq!(
            parsed("mqtt://127.0.0.1:1884"),
            BrokerUrl {
                host: "127.0.0.1".into(),
                port: 1884,
                tls: false
            }
        );
        assert_eq!(
            parsed("mqtts://broker.site/"),
            BrokerUrl {
                host: "broker.site".into(),
                port: MQTTS_PORT,
                tls: true
            }
        );
        assert_eq!(parsed("mqtt://broker").port, MQTT_PORT);
        assert_eq!(parsed("mqtts://[::1]:9883").host, "::1");
        assert_eq!(
            parsed("mqtts://[::1]:9883").to_string(),
            "mqtts://[::1]:9883"
        );
        assert_eq!(parsed("mqtt://h:7").to_string(), "mqtt://h:7");
        for bad in [
            "",
            "mqtt://",
            "mqtt://:1883",
            "mqtt://h:99999",
            "mqtt://h:0",
            "tcp://h:1",
            "mqtts://[::1",
            "mqtt://user@h:1",
            "mqtt://h:1/path",
            "mqtt://h:x",
            "http://h",
        ] {
            assert!(bad.parse::<BrokerUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn connections_are_checked_before_use() {
        assert!(matches!(
            Connection::new("mqtt://h:1", Some(Path::new("/nonexistent")), None, None),
            Err(LinkError::CaWithoutTls)
        ));
        assert!(matches!(
            Connection::new(
                "mqtts://h:1",
                Some(Path::new("/nonexistent/ca.pem")),
                None,
                None
            ),
            Err(LinkError::File { .. })
        ));
        assert!(matches!(
            Connection::new("mqtt://h:1", None, Some("miner"), None),
            Err(LinkError::Credentials(_))
        ));
        assert!(matches!(
            Connection::new("mqtt://h:1", None, None, Some(&Secret::new("secret"))),
            Err(LinkError::Credentials(_))
        ));
        let not_pem =
            std::env::temp_dir().join(format!("fleet-mqtt-not-pem-{}", std::process::id()));
        std::fs::write(&not_pem, "hello").expect("writes");
        assert!(matches!(
            Connection::new("mqtts://h:1", Some(&not_pem), None, None),
            Err(LinkError::NoCertificate(_))
        ));
        let _ = std::fs::remove_file(not_pem);
    }

    #[test]
    fn the_password_stays_out_of_debug_output() {
        let connection = Connection::new(
            "mqtt://h:1",
            None,
            Some("miner-7"),
            Some(&Secret::new("hunter2")),
        )
        .expect("valid");
        let shown = format!("{connection:?}");
        assert!(shown.contains("miner-7"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn client_options_carry_credentials_and_the_will() {
        let connection = Connection::new("mqtt://h:1999", None, Some("u"), Some(&Secret::new("p")))
            .expect("valid");
        let options = connection
            .client_options("client-1", Some("hashwarden/v1/s/m/status"))
            .expect("plain options");
        assert_eq!(options.broker_address(), ("h".to_string(), 1999));
        assert_eq!(
            options.credentials(),
            Some(("u".to_string(), "p".to_string()))
        );
        let will = options.last_will().expect("a will");
        assert_eq!(&will.topic[..], b"hashwarden/v1/s/m/status");
        assert_eq!(&will.message[..], b"offline");
        assert!(will.retain);
    }
}
