//! The gate on the site's inputs over MQTT (`…/market`, `…/power`, `…/grid`): a reading is
//! taken when a feed key the site trusts signed it (`fleet_proto::feed`), or — only where the
//! operator said so, behind a broker that restricts who may publish there — unsigned.

use fleet_proto::feed::{FeedKind, FeedRefusal, FeedVerifier};
use fleet_proto::{Name, TrustedKeys};

use crate::site::FeedsSection;

#[derive(Debug, Clone)]
pub struct FeedGate {
    verifier: FeedVerifier,
    accept_unsigned: bool,
}

impl FeedGate {
    /// The gate `section` describes; keys were checked when the config loaded.
    pub fn new(
        site: &Name,
        section: &FeedsSection,
    ) -> Result<Self, fleet_proto::command::InvalidKey> {
        let mut keys = TrustedKeys::default();
        for key in &section.trusted_keys {
            keys.trust_hex(&key.id, &key.public_key)?;
        }
        Ok(Self {
            verifier: FeedVerifier::new(site.clone(), keys),
            accept_unsigned: section.accept_unsigned,
        })
    }

    /// The reading in `payload`, which arrived on the `kind` topic at `now`; `Ok(None)` for one
    /// already taken (a retained message heard again).
    pub fn open(
        &mut self,
        kind: FeedKind,
        payload: &[u8],
        now: u64,
    ) -> Result<Option<serde_json::Value>, FeedRefusal> {
        match self.verifier.check(payload, kind, now) {
            Ok(feed) => Ok(feed.map(|f| f.reading)),
            Err(FeedRefusal::Unsigned) if self.accept_unsigned => serde_json::from_slice(payload)
                .map(Some)
                .map_err(|e| FeedRefusal::Malformed(e.to_string())),
            Err(refusal) => Err(refusal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::FeedKeySection;
    use fleet_proto::CommandSigner;
    use fleet_proto::feed::Feed;

    const NOW: u64 = 1_767_225_600;

    fn gate(accept_unsigned: bool) -> FeedGate {
        let signer = CommandSigner::from_seed("prices", &[5; 32]);
        let section = FeedsSection {
            trusted_keys: vec![FeedKeySection {
                id: "prices".into(),
                public_key: crate::keys::hex(&signer.public_key()),
            }],
            accept_unsigned,
        };
        FeedGate::new(&Name::new("tx-west").expect("valid"), &section).expect("valid keys")
    }

    #[test]
    fn unsigned_readings_pass_only_where_the_operator_said_so() {
        let bare = br#"{"v":1,"at":1767225600,"usd_per_kwh":9.99}"#;
        assert_eq!(
            gate(false).open(FeedKind::Power, bare, NOW),
            Err(FeedRefusal::Unsigned)
        );
        let taken = gate(true).open(FeedKind::Power, bare, NOW).expect("taken");
        assert_eq!(taken.map(|r| r["usd_per_kwh"].clone()), Some(9.99.into()));
        // Either way a signed one is checked as signed: a forgery is no unsigned reading.
        let forger = CommandSigner::from_seed("prices", &[6; 32]);
        let reading = serde_json::json!({"v": 1, "at": NOW, "usd_per_kwh": 9.99});
        let site = Name::new("tx-west").expect("valid");
        let forged = Feed::new(site, FeedKind::Power, NOW, 60, 1, reading)
            .sign(&forger)
            .expect("signs");
        let forged = serde_json::to_vec(&forged).expect("encodes");
        assert!(matches!(
            gate(true).open(FeedKind::Power, &forged, NOW),
            Err(FeedRefusal::Key(_))
        ));
    }
}
