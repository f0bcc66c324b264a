//! Signed commands: the primitive against RFC 8032, and every way a miner refuses a command.

use fleet_proto::command::{MAX_CLOCK_SKEW_S, sign_bytes};
use fleet_proto::examples::example_command;
use fleet_proto::{
    Action, CommandSigner, CommandVerifier, Name, Rejection, SignedCommand, TrustedKeys, Verdict,
};

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// RFC 8032 §7.1, test 1 (empty message) and test 2 (one byte 0x72).
#[test]
fn ed25519_matches_rfc_8032() {
    let seed: [u8; 32] = unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
        .try_into()
        .expect("32");
    let expected = unhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    );
    assert_eq!(sign_bytes(&seed, b"").to_vec(), expected);
    let signer = CommandSigner::from_seed("rfc", &seed);
    assert_eq!(
        signer.public_key().to_vec(),
        unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    );

    let seed2: [u8; 32] = unhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
        .try_into()
        .expect("32");
    let expected2 = unhex(
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    );
    assert_eq!(sign_bytes(&seed2, &[0x72]).to_vec(), expected2);
}

const NOW: u64 = 1_767_225_610;

fn host() -> CommandSigner {
    CommandSigner::from_seed("host-2026a", &[7; 32])
}

fn miner() -> CommandVerifier {
    let mut keys = TrustedKeys::default();
    keys.trust("host-2026a", &host().public_key())
        .expect("valid key");
    CommandVerifier::new(
        Name::new("tx-west").expect("valid"),
        Name::new("s19xp-r04-017").expect("valid"),
        keys,
    )
}

fn bytes(signed: &SignedCommand) -> Vec<u8> {
    serde_json::to_vec(signed).expect("serialises")
}

fn signed(action: Action, seq: u64) -> Vec<u8> {
    bytes(&host().sign(&example_command(action, seq)).expect("signs"))
}

#[track_caller]
fn rejected(verdict: Verdict) -> Rejection {
    match verdict {
        Verdict::Reject { reason, .. } => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn a_good_command_is_accepted_once() {
    let mut verifier = miner();
    let command = signed(Action::Sleep, 42);
    assert!(
        matches!(verifier.check(&command, NOW), Verdict::Accept(c) if c.action == Action::Sleep && c.seq == 42)
    );
    // The same bytes again (an MQTT redelivery): acknowledged, nothing new.
    assert_eq!(
        verifier.check(&command, NOW),
        Verdict::Duplicate {
            id: "cmd-000042".into()
        }
    );
    assert!(
        matches!(verifier.check(&signed(Action::Wake, 43), NOW), Verdict::Accept(c) if c.action == Action::Wake)
    );
    assert_eq!(verifier.last_seq("host-2026a"), Some(43));
}

#[test]
fn replays_and_reordering_are_refused() {
    let mut verifier = miner();
    let old = signed(Action::Sleep, 42);
    let older = signed(Action::Wake, 41);
    assert!(matches!(verifier.check(&old, NOW), Verdict::Accept(_)));
    assert!(matches!(
        verifier.check(&signed(Action::Wake, 43), NOW),
        Verdict::Accept(_)
    ));
    // An attacker replays the sleep command after the wake.
    assert_eq!(
        rejected(verifier.check(&old, NOW)),
        Rejection::Replayed { seq: 42 }
    );
    // A command that was never seen but is older than the last one.
    assert_eq!(
        rejected(verifier.check(&older, NOW)),
        Rejection::OutOfOrder { seq: 41, last: 43 }
    );
    // Rejections changed nothing.
    assert_eq!(verifier.last_seq("host-2026a"), Some(43));
}

#[test]
fn unsigned_forged_and_foreign_commands_are_refused() {
    let mut verifier = miner();
    // A bare command with no envelope.
    let bare = serde_json::to_vec(&example_command(Action::Sleep, 1)).expect("serialises");
    assert_eq!(rejected(verifier.check(&bare, NOW)), Rejection::Unsigned);
    // Unverified, its id is not echoed: an ack naming the agent's real command id would let
    // whoever can publish on `…/cmd` fail that command at the agent.
    assert!(matches!(
        verifier.check(&bare, NOW),
        Verdict::Reject { id: None, .. }
    ));
    // Payload changed after signing (sleep → reboot).
    let mut forged = host()
        .sign(&example_command(Action::Sleep, 2))
        .expect("signs");
    forged.payload = forged.payload.replace("\"sleep\"", "\"reboot\"");
    assert_eq!(
        verifier.check(&bytes(&forged), NOW),
        Verdict::Reject {
            id: None,
            reason: Rejection::BadSignature
        }
    );
    // Signed by a key the miner does not trust.
    let stranger = CommandSigner::from_seed("host-2026a", &[9; 32]);
    let foreign = bytes(
        &stranger
            .sign(&example_command(Action::Sleep, 3))
            .expect("signs"),
    );
    assert_eq!(
        rejected(verifier.check(&foreign, NOW)),
        Rejection::BadSignature
    );
    let unknown = CommandSigner::from_seed("someone", &[9; 32]);
    let unknown = bytes(
        &unknown
            .sign(&example_command(Action::Sleep, 3))
            .expect("signs"),
    );
    assert_eq!(
        rejected(verifier.check(&unknown, NOW)),
        Rejection::UnknownKey("someone".into())
    );
    // For another miner.
    let mut other = example_command(Action::Sleep, 4);
    other.miner = Name::new("s19xp-r04-018").expect("valid");
    let other = bytes(&host().sign(&other).expect("signs"));
    assert!(matches!(
        rejected(verifier.check(&other, NOW)),
        Rejection::OtherMiner { .. }
    ));
    // Garbage.
    assert!(matches!(
        rejected(verifier.check(b"{\"payload\": 1", NOW)),
        Rejection::Malformed(_)
    ));
    assert!(matches!(
        rejected(verifier.check(b"\xff\xfe", NOW)),
        Rejection::Malformed(_)
    ));
    assert_eq!(
        verifier.last_seq("host-2026a"),
        None,
        "nothing was accepted"
    );
}

#[test]
fn time_limits() {
    let mut verifier = miner();
    let command = example_command(Action::Sleep, 5);
    let expired = signed(Action::Sleep, 5);
    assert_eq!(
        rejected(verifier.check(&expired, command.expires_at)),
        Rejection::Expired {
            expires_at: command.expires_at,
            now: command.expires_at
        }
    );
    let early = command.issued_at - MAX_CLOCK_SKEW_S - 1;
    assert_eq!(
        rejected(verifier.check(&expired, early)),
        Rejection::FromTheFuture {
            issued_at: command.issued_at,
            now: early
        }
    );
    // Within the allowed skew it is fine.
    assert!(matches!(
        verifier.check(&expired, command.issued_at - MAX_CLOCK_SKEW_S),
        Verdict::Accept(_)
    ));
}

#[test]
fn key_rotation_and_revocation() {
    let next = CommandSigner::from_seed("host-2026b", &[8; 32]);
    let mut keys = TrustedKeys::default();
    keys.trust("host-2026a", &host().public_key())
        .expect("valid");
    keys.trust_hex(
        "host-2026b",
        &next
            .public_key()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    )
    .expect("valid");
    keys.revoke("host-2026a");
    let mut verifier = CommandVerifier::new(
        Name::new("tx-west").expect("valid"),
        Name::new("s19xp-r04-017").expect("valid"),
        keys,
    );
    assert_eq!(
        rejected(verifier.check(&signed(Action::Sleep, 50), NOW)),
        Rejection::RevokedKey("host-2026a".into())
    );
    let rotated = bytes(
        &next
            .sign(&example_command(Action::Sleep, 1))
            .expect("signs"),
    );
    assert!(
        matches!(verifier.check(&rotated, NOW), Verdict::Accept(_)),
        "each key has its own sequence"
    );
    assert!(TrustedKeys::default().trust_hex("bad", "zz").is_err());
}

#[test]
fn unknown_actions_and_fields_are_malformed_even_when_signed() {
    let mut verifier = miner();
    let payload = r#"{"v":1,"id":"x","site":"tx-west","miner":"s19xp-r04-017","issued_at":1767225600,"expires_at":1767225660,"seq":9,"action":"self_destruct"}"#;
    let signer = host();
    let sig: String = fleet_proto::command::sign_bytes(&[7; 32], payload.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let envelope = SignedCommand {
        v: 1,
        key_id: signer.key_id().into(),
        payload: payload.into(),
        sig,
    };
    assert!(matches!(
        rejected(verifier.check(&bytes(&envelope), NOW)),
        Rejection::Malformed(_)
    ));
}

proptest::proptest! {
    /// Whatever arrives on `…/cmd`, the verifier answers without panicking and, unless it is a
    /// correctly signed command, accepts nothing.
    #[test]
    fn arbitrary_bytes_are_never_accepted(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
        let mut verifier = miner();
        let verdict = verifier.check(&bytes, NOW);
        proptest::prop_assert!(!matches!(verdict, Verdict::Accept(_)));
        proptest::prop_assert_eq!(verifier.last_seq("host-2026a"), None);
    }

    /// A signed command with any single byte of its wire form changed is never accepted.
    #[test]
    fn tampering_is_never_accepted(position in 0usize..10_000, xor in 1u8..=255) {
        let mut wire = signed(Action::Sleep, 77);
        let at = position % wire.len();
        wire[at] ^= xor;
        let verdict = miner().check(&wire, NOW);
        // Everything that matters is inside the signed payload; a change outside it (say, JSON
        // whitespace) may still verify, but then it must be the very same command.
        if let Verdict::Accept(command) = verdict {
            proptest::prop_assert_eq!(command, example_command(Action::Sleep, 77));
        }
    }
}

/// What a miner persists and restores after a reboot keeps every guarantee: the last command is
/// still a duplicate (not re-applied), older ones are still refused, newer ones pass.
#[test]
fn restored_sequence_numbers_survive_a_reboot() {
    let mut before = miner();
    let last = signed(Action::Sleep, 42);
    assert!(matches!(before.check(&last, NOW), Verdict::Accept(_)));
    let persisted: Vec<(String, u64, String)> = before
        .accepted()
        .map(|(key, seq, id)| (key.to_string(), seq, id.to_string()))
        .collect();
    assert_eq!(
        persisted,
        [("host-2026a".to_string(), 42, "cmd-000042".to_string())]
    );

    let mut after = miner();
    for (key, seq, id) in &persisted {
        after.restore(key, *seq, id);
    }
    assert_eq!(
        after.check(&last, NOW),
        Verdict::Duplicate {
            id: "cmd-000042".into()
        }
    );
    assert_eq!(
        rejected(after.check(&signed(Action::Wake, 41), NOW)),
        Rejection::OutOfOrder { seq: 41, last: 42 }
    );
    assert!(matches!(
        after.check(&signed(Action::Wake, 43), NOW),
        Verdict::Accept(_)
    ));
    // The restored command is a replay once a newer one was accepted.
    assert_eq!(
        rejected(after.check(&last, NOW)),
        Rejection::Replayed { seq: 42 }
    );
}
