//! Sealed blobs open only with the right KEK and for what they were sealed as.

use proptest::prelude::*;
use shardvault_types::{Epoch, KeyId};
use shardvault_vault::{open, seal, Error, KdfParams, Kek, SealContext};

fn context() -> SealContext {
    SealContext {
        node_id: "node-a".into(),
        key_id: KeyId::from_bytes([7; 16]),
        epoch: Epoch(3),
        kind: "key-share".into(),
    }
}

fn kek(passphrase: &str) -> Kek {
    Kek::from_passphrase(passphrase.as_bytes(), &[1; 16], KdfParams::INSECURE_FOR_TESTS).unwrap()
}

#[test]
fn round_trip() {
    let sealed = seal(&kek("correct horse"), &context(), b"share bytes").unwrap();
    assert_eq!(&open(&kek("correct horse"), &context(), &sealed).unwrap()[..], b"share bytes");
    assert!(!sealed.windows(11).any(|w| w == b"share bytes"), "plaintext must not appear in the blob");
}

#[test]
fn wrong_passphrase_is_reported_as_such() {
    let verifier = kek("correct horse").verifier().unwrap();
    kek("correct horse").verify(&verifier).unwrap();
    assert!(matches!(kek("battery staple").verify(&verifier), Err(Error::WrongKek)));
    let sealed = seal(&kek("correct horse"), &context(), b"share").unwrap();
    let error = open(&kek("battery staple"), &context(), &sealed).unwrap_err();
    assert!(error.to_string().contains("does not open"), "{error}");
}

#[test]
fn a_blob_does_not_open_as_something_else() {
    let k = kek("pw");
    let sealed = seal(&k, &context(), b"share").unwrap();
    for other in [
        SealContext { node_id: "node-b".into(), ..context() },
        SealContext { key_id: KeyId::from_bytes([8; 16]), ..context() },
        SealContext { epoch: Epoch(4), ..context() },
        SealContext { kind: "hardened-tweak".into(), ..context() },
    ] {
        assert!(matches!(open(&k, &other, &sealed), Err(Error::DoesNotOpen { .. })), "{other:?}");
    }
}

#[test]
fn key_files_raw_or_hex() {
    let raw = [9u8; 32];
    let hex_file = format!("{}\n", hex::encode(raw));
    let sealed = seal(&Kek::from_key_file(&raw).unwrap(), &context(), b"x").unwrap();
    assert!(open(&Kek::from_key_file(hex_file.as_bytes()).unwrap(), &context(), &sealed).is_ok());
    assert!(matches!(Kek::from_key_file(b"short"), Err(Error::KeyFile)));
    assert_eq!(format!("{:?}", Kek::from_key_file(&raw).unwrap()), "Kek(<redacted>)");
}

#[test]
fn kdf_parameters_round_trip_and_tampered_ones_are_bounded() {
    for params in [KdfParams::RECOMMENDED, KdfParams::LEGACY_V1, KdfParams::INSECURE_FOR_TESTS] {
        assert_eq!(KdfParams::from_bytes(&params.to_bytes()).unwrap(), params);
    }
    // The production default is the measured, strong one (docs/BENCHMARKS.md), not OWASP's minimum.
    const { assert!(KdfParams::RECOMMENDED.memory_kib >= 256 * 1024 && KdfParams::RECOMMENDED.iterations >= 3) };
    let huge = KdfParams { memory_kib: u32::MAX, ..KdfParams::RECOMMENDED };
    assert!(matches!(KdfParams::from_bytes(&huge.to_bytes()), Err(Error::KdfParams(_))));
    for bad in [&b""[..], &[2u8; 13][..], &[1u8; 12][..]] {
        assert!(matches!(KdfParams::from_bytes(bad), Err(Error::KdfParams(_))), "{bad:?}");
    }
    // The same passphrase and salt under other parameters is another KEK.
    let a = Kek::from_passphrase(b"pw", &[1; 16], KdfParams::INSECURE_FOR_TESTS).unwrap();
    let b =
        Kek::from_passphrase(b"pw", &[1; 16], KdfParams { iterations: 2, ..KdfParams::INSECURE_FOR_TESTS }).unwrap();
    assert!(matches!(b.verify(&a.verifier().unwrap()), Err(Error::WrongKek)));
}

proptest! {
    #[test]
    fn any_tampering_is_refused(position in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let k = Kek::from_key_file(&[3; 32]).unwrap();
        let mut sealed = seal(&k, &context(), b"a key share").unwrap();
        let i = position.index(sealed.len());
        sealed[i] ^= flip;
        prop_assert!(open(&k, &context(), &sealed).is_err());
        prop_assert!(open(&k, &context(), &sealed[..i]).is_err());
    }
}
