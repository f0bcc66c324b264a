//! How hashwarden's two ends reach a broker, in one place so the miner and the agent cannot
//! drift apart: the broker URL (`mqtt://` or `mqtts://`), the CA a TLS link trusts, credentials,
//! the retained presence will — and, for the agent, an embedded broker (rumqttd) so one command
//! runs a whole site without installing anything.

use std::path::PathBuf;

#[cfg(feature = "embedded")]
pub mod embedded;
pub mod endpoint;
mod secret;

pub use endpoint::{BrokerUrl, Connection, is_misconfiguration, log_failure, offline_will};
pub use secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{0:?} is not mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")]
    Url(String),
    #[error("a CA file is only for mqtts:// brokers")]
    CaWithoutTls,
    #[error("{0}")]
    Credentials(&'static str),
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: no PEM certificate in it")]
    NoCertificate(PathBuf),
    #[error("{0}: no PEM private key in it")]
    NoPrivateKey(PathBuf),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
}
