//! A throwaway certificate authority for TLS tests: a CA, a broker certificate it signed for
//! `localhost` and 127.0.0.1, and a second CA that signed nothing (what a client trusting the
//! wrong roots holds).

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};

#[derive(Debug, Clone)]
pub struct TestPki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub unrelated_ca: PathBuf,
}

impl TestPki {
    pub fn generate(dir: &Path) -> Self {
        let authority = |name: &str| {
            let key = KeyPair::generate().expect("a key");
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.self_signed(&key).expect("self-signed");
            (cert, key)
        };
        let (ca, ca_key) = authority("hashwarden test CA");
        let (unrelated, _) = authority("someone else's CA");
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        params.distinguished_name.push(DnType::CommonName, "broker");
        let cert = params.signed_by(&key, &ca, &ca_key).expect("signed");
        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("writes");
            path
        };
        Self {
            ca: write("ca.pem", ca.pem()),
            cert: write("broker.pem", cert.pem()),
            key: write("broker.key", key.serialize_pem()),
            unrelated_ca: write("unrelated-ca.pem", unrelated.pem()),
        }
    }
}
