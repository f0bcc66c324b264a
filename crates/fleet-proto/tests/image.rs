//! Firmware image verification (issue #7): a good image passes and streams its payload; every
//! kind of bad one is refused with its reason — a flipped byte anywhere, a wrong or revoked key,
//! a truncated file, another board's image, an oversized manifest, a downgrade, trailing bytes.
//! The release key is RFC 8032's first test key, so the signature is checked against a public
//! key this code did not derive.

use fleet_proto::TrustedKeys;
use fleet_proto::command::KeyRefusal;
use fleet_proto::image::{self, ImageError, MAGIC, MAX_MANIFEST, Manifest, Policy, Version};

/// RFC 8032 §7.1, TEST 1.
const RFC_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const RFC_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const BOARD: &str = "bm1397-hashboard-12";

fn seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&RFC_SEED[2 * i..2 * i + 2], 16).expect("hex");
    }
    seed
}

fn keys() -> TrustedKeys {
    let mut keys = TrustedKeys::default();
    keys.trust_hex("release-2026a", RFC_PUBLIC)
        .expect("the RFC's key");
    keys
}

fn payload() -> Vec<u8> {
    (0..200u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn good() -> Vec<u8> {
    image::build(
        &payload(),
        Version(0, 3, 1),
        &[BOARD.to_string(), "bitaxe-max".to_string()],
        "release-2026a",
        &seed(),
        1_771_891_200,
    )
}

fn check(
    bytes: &[u8],
    keys: &TrustedKeys,
    min: Option<Version>,
) -> Result<(Manifest, Vec<u8>), ImageError> {
    let policy = Policy {
        keys,
        board: Some(BOARD),
        min_version: min,
        max_size: image::DEFAULT_MAX_PAYLOAD,
    };
    let mut out = Vec::new();
    image::verify(bytes, &policy, &mut out).map(|m| (m, out))
}

#[test]
fn a_good_image_verifies_and_streams_its_payload() {
    let image = good();
    assert_eq!(&image[..8], MAGIC);
    let (manifest, out) = check(&image, &keys(), Some(Version(0, 3, 0))).expect("verifies");
    assert_eq!(out, payload());
    assert_eq!(manifest.version, Version(0, 3, 1));
    assert_eq!(manifest.size, 200);
    assert_eq!(manifest.key_id, "release-2026a");
}

#[test]
fn a_flipped_bit_anywhere_is_refused() {
    let image = good();
    for at in 0..image.len() {
        for bit in [0x01, 0x80] {
            let mut bad = image.clone();
            bad[at] ^= bit;
            assert!(
                check(&bad, &keys(), None).is_err(),
                "a flip at byte {at} (bit {bit:#x}) passed"
            );
        }
    }
    // And each region fails for its own reason.
    let manifest_len = u32::from_le_bytes([image[8], image[9], image[10], image[11]]) as usize;
    let payload_at = 12 + manifest_len + 64;
    let flip = |at: usize| {
        let mut bad = image.clone();
        bad[at] ^= 0x01;
        check(&bad, &keys(), None).expect_err("refused")
    };
    assert!(matches!(flip(0), ImageError::BadMagic));
    assert!(matches!(
        flip(12 + manifest_len + 3),
        ImageError::Signature(KeyRefusal::BadSignature)
    ));
    assert!(matches!(
        flip(payload_at + 17),
        ImageError::HashMismatch { .. }
    ));
}

#[test]
fn a_truncated_image_is_refused_at_every_length() {
    let image = good();
    for len in 0..image.len() {
        assert!(
            check(&image[..len], &keys(), None).is_err(),
            "{len} of {} bytes passed",
            image.len()
        );
    }
    assert!(matches!(
        check(&image[..image.len() - 1], &keys(), None),
        Err(ImageError::SizeMismatch {
            declared: 200,
            actual: 199
        })
    ));
    assert!(matches!(
        check(&image[..10], &keys(), None),
        Err(ImageError::Truncated(_))
    ));
}

#[test]
fn wrong_unknown_and_revoked_keys_are_refused() {
    // Same key id, another key: a forgery.
    let forged = image::build(
        &payload(),
        Version(0, 3, 1),
        &[BOARD.into()],
        "release-2026a",
        &[7; 32],
        0,
    );
    assert!(matches!(
        check(&forged, &keys(), None),
        Err(ImageError::Signature(KeyRefusal::BadSignature))
    ));
    let stranger = image::build(
        &payload(),
        Version(0, 3, 1),
        &[BOARD.into()],
        "someone",
        &[7; 32],
        0,
    );
    assert!(matches!(
        check(&stranger, &keys(), None),
        Err(ImageError::Signature(KeyRefusal::Unknown(_)))
    ));
    let mut revoked = keys();
    revoked.revoke("release-2026a");
    assert!(matches!(
        check(&good(), &revoked, None),
        Err(ImageError::Signature(KeyRefusal::Revoked(_)))
    ));
}

#[test]
fn another_boards_image_a_downgrade_and_an_oversize_are_refused() {
    let other = image::build(
        &payload(),
        Version(0, 3, 1),
        &["s19-control".into()],
        "release-2026a",
        &seed(),
        0,
    );
    assert!(matches!(
        check(&other, &keys(), None),
        Err(ImageError::WrongBoard { .. })
    ));
    assert!(matches!(
        check(&good(), &keys(), Some(Version(0, 4, 0))),
        Err(ImageError::Downgrade { .. })
    ));
    check(&good(), &keys(), Some(Version(0, 3, 1))).expect("the minimum itself is fine");
    let policy = Policy {
        keys: &keys(),
        board: Some(BOARD),
        min_version: None,
        max_size: 100,
    };
    assert!(matches!(
        image::verify(good().as_slice(), &policy, &mut std::io::sink()),
        Err(ImageError::TooLarge {
            size: 200,
            max: 100
        })
    ));
}

#[test]
fn an_oversized_manifest_is_refused_before_it_is_read() {
    // A length field claiming 4 GiB: refused on the length alone, nothing allocated for it.
    let mut huge = MAGIC.to_vec();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        check(&huge, &keys(), None),
        Err(ImageError::ManifestTooLarge(_))
    ));
    // A properly signed manifest just over the limit (a board list nobody needs).
    let boards: Vec<String> = (0..2_000).map(|i| format!("board-{i:04}")).collect();
    let signed = image::build(
        &payload(),
        Version(0, 3, 1),
        &boards,
        "release-2026a",
        &seed(),
        0,
    );
    let manifest_len = u32::from_le_bytes([signed[8], signed[9], signed[10], signed[11]]) as usize;
    assert!(manifest_len > MAX_MANIFEST);
    assert!(matches!(
        check(&signed, &keys(), None),
        Err(ImageError::ManifestTooLarge(_))
    ));
}

#[test]
fn trailing_bytes_are_refused() {
    let mut image = good();
    image.push(0);
    assert!(matches!(
        check(&image, &keys(), None),
        Err(ImageError::TrailingBytes)
    ));
}

#[test]
fn versions_parse_strictly_and_order_numerically() {
    assert!(Version(0, 10, 0) > "0.9.12".parse().expect("parses"));
    for bad in [
        "",
        "1",
        "1.2",
        "1.2.3.4",
        "1.2.x",
        "1..3",
        "-1.2.3",
        "1.2.3-rc1",
        " 1.2.3",
    ] {
        assert!(bad.parse::<Version>().is_err(), "{bad:?}");
    }
}

proptest::proptest! {
    /// Whatever the bytes, verification is an answer, never a panic or an allocation the size
    /// of a lying length field.
    #[test]
    fn any_bytes_are_verified_or_refused(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
        let _ = check(&bytes, &keys(), None);
        let mut framed = MAGIC.to_vec();
        framed.extend_from_slice(&bytes);
        let _ = check(&framed, &keys(), None);
    }
}
