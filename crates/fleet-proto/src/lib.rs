//! The MQTT contract between hashwarden miners and the fleet agent: topic names, payloads (JSON,
//! versioned) and Ed25519-signed commands. Both sides depend on this crate; neither defines a
//! message of its own.
//!
//! ```
//! use fleet_proto::{Action, CommandSigner, CommandVerifier, Name, TrustedKeys, Verdict};
//! use fleet_proto::examples::example_command;
//!
//! // The agent signs; the miner trusts the agent's public key and checks.
//! let host = CommandSigner::from_seed("host-2026a", &[7; 32]);
//! let mut keys = TrustedKeys::default();
//! keys.trust("host-2026a", &host.public_key())?;
//! let mut miner = CommandVerifier::new(Name::new("tx-west")?, Name::new("s19xp-r04-017")?, keys);
//!
//! let wire = serde_json::to_vec(&host.sign(&example_command(Action::Sleep, 1))?)?;
//! assert!(matches!(miner.check(&wire, 1_767_225_610), Verdict::Accept(_)));
//! // The same bytes again change nothing.
//! assert!(matches!(miner.check(&wire, 1_767_225_611), Verdict::Duplicate { .. }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod command;
pub mod examples;
pub mod feed;
pub mod image;
pub mod messages;
pub mod report;
pub mod topic;

pub use command::{
    Action, Command, CommandSigner, CommandVerifier, Rejection, SignedCommand, TrustedKeys,
    TuneMode, Verdict,
};
pub use messages::{
    Ack, AckStatus, GridSignal, MaestroTarget, Market, Mode, PowerPrice, State, Telemetry,
};
pub use topic::{Kind, MinerTopic, Name};
