//! Key-share encoding: round trips, binding, corruption, redaction, and the
//! fixtures that prove this release still reads shares written by v0.1.

mod common;

use std::path::PathBuf;

use common::*;
use proptest::prelude::*;
use shardvault_mpc::{Epoch, Error, KeyId, KeyShare, Scheme, ShareBinding};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../test-vectors/shares/v1")
}

#[test]
fn shares_round_trip_and_keep_their_binding() {
    for scheme in Scheme::ALL {
        let shares = run_dkg(scheme, 2, 3);
        for share in shares.values() {
            let bytes = share.to_bytes().unwrap();
            let back = KeyShare::from_bytes(&bytes, Some(share.binding())).unwrap();
            assert_eq!(back.to_bytes().unwrap(), bytes);
            let wrong_epoch = ShareBinding { epoch: Epoch(1), ..share.binding() };
            assert!(matches!(KeyShare::from_bytes(&bytes, Some(wrong_epoch)), Err(Error::Decode { .. })));
            let wrong_key = ShareBinding { key_id: KeyId::random(), ..share.binding() };
            assert!(KeyShare::from_bytes(&bytes, Some(wrong_key)).is_err());
            let wrong_party =
                ShareBinding { party: party(if share.party() == party(1) { 2 } else { 1 }), ..share.binding() };
            assert!(KeyShare::from_bytes(&bytes, Some(wrong_party)).is_err());
        }
    }
}

#[test]
fn debug_output_redacts_secrets() {
    let shares = run_dkg(Scheme::EddsaEd25519, 2, 2);
    let share = &shares[&party(1)];
    let printed = format!("{share:?}");
    assert!(printed.contains("<redacted>"));
    // Whatever of the encoded share shows up in Debug must be public data.
    let public: String = [hex::encode(share.public_key()), share.key_id().to_string()]
        .into_iter()
        .chain(share.verifying_shares().values().map(hex::encode))
        .collect::<Vec<_>>()
        .join(" ");
    let encoded = hex::encode(&share.to_bytes().unwrap()[..]);
    for start in (0..encoded.len() - 16).step_by(2) {
        let window = &encoded[start..start + 16];
        assert!(!printed.contains(window) || public.contains(window), "Debug leaks encoded bytes {window}");
    }
    let tweaks = run_derive(&shares, "m/1'");
    let printed = format!("{:?}", tweaks[&party(1)]);
    assert!(printed.contains("<redacted>") && !printed.contains(&hex::encode(tweaks[&party(1)].expose_tau())));
}

#[test]
fn spliced_or_foreign_bytes_are_refused() {
    let shares = run_dkg(Scheme::SchnorrSecp256k1, 2, 2);
    let bytes = shares[&party(1)].to_bytes().unwrap();
    assert!(KeyShare::from_bytes(b"", None).is_err());
    assert!(KeyShare::from_bytes(b"SVKS", None).is_err());
    assert!(KeyShare::from_bytes(&bytes[..bytes.len() / 2], None).is_err());
    let mut future = bytes.to_vec();
    future[5] = 99;
    let error = KeyShare::from_bytes(&future, None).unwrap_err();
    assert!(error.to_string().contains("unsupported format version 99"), "{error}");
    let mut trailing = bytes.to_vec();
    trailing.push(0);
    assert!(KeyShare::from_bytes(&trailing, None).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]
    /// Any single corrupted byte is refused or, where it lands in data the
    /// check cannot see (sealing adds integrity there), still decodes to a
    /// share that passes every check; it never panics.
    #[test]
    fn corrupted_shares_never_panic(position in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let shares = fixture_shares(Scheme::EddsaEd25519);
        let mut bytes = shares[0].to_bytes().unwrap().to_vec();
        let i = position.index(bytes.len());
        bytes[i] ^= flip;
        if let Ok(share) = KeyShare::from_bytes(&bytes, None) {
            prop_assert_eq!(share.public_key(), shares[0].public_key());
        }
    }
}

fn fixture_shares(scheme: Scheme) -> Vec<KeyShare> {
    (1..=3)
        .map(|p| {
            let path = fixture_dir().join(format!("{scheme}-party{p}.bin"));
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            KeyShare::from_bytes(&bytes, None).unwrap()
        })
        .collect()
}

/// Shares written by shardvault 0.1 (format v1) still load, derive and sign.
#[test]
fn v1_fixtures_still_sign() {
    for scheme in Scheme::ALL {
        let shares: Shares = fixture_shares(scheme).into_iter().map(|s| (s.party(), s)).collect();
        let expected = std::fs::read_to_string(fixture_dir().join(format!("{scheme}.public_key"))).unwrap();
        assert_eq!(hex::encode(shares[&party(1)].public_key()), expected.trim());
        let message = message_for(scheme, "fixture");
        let signature = run_sign(&shares, None, "m", &set(&[1, 3]), &message);
        assert_eq!(signature.public_key, expected_verifier_key(scheme, shares[&party(1)].public_key()));
        verify_independently(&signature, &message).unwrap();
    }
}

/// Writes the fixtures. Run once per format version:
/// `SHARDVAULT_WRITE_FIXTURES=1 cargo test -p shardvault-mpc --test shares write_fixtures -- --ignored`
#[test]
#[ignore = "writes test-vectors; run by hand when a new share format version is introduced"]
fn write_fixtures() {
    assert_eq!(std::env::var("SHARDVAULT_WRITE_FIXTURES").as_deref(), Ok("1"));
    std::fs::create_dir_all(fixture_dir()).unwrap();
    for scheme in Scheme::ALL {
        let shares = run_dkg(scheme, 2, 3);
        for share in shares.values() {
            std::fs::write(
                fixture_dir().join(format!("{scheme}-party{}.bin", share.party())),
                &share.to_bytes().unwrap()[..],
            )
            .unwrap();
        }
        std::fs::write(
            fixture_dir().join(format!("{scheme}.public_key")),
            hex::encode(shares[&party(1)].public_key()) + "\n",
        )
        .unwrap();
    }
}

#[test]
fn secret_equality_is_constant_time_and_still_correct() {
    use shardvault_mpc::Secret32;
    use subtle::ConstantTimeEq;
    // `==` goes through subtle's ct_eq (a bound, so this fails to build without it).
    fn constant_time<T: ConstantTimeEq + Eq>() {}
    constant_time::<Secret32>();
    let a = Secret32::new([7; 32]);
    let mut last = [7; 32];
    last[31] = 8;
    let mut first = [7; 32];
    first[0] = 8;
    assert!(a == Secret32::new([7; 32]) && bool::from(a.ct_eq(&Secret32::new([7; 32]))));
    assert!(a != Secret32::new(last) && a != Secret32::new(first));
}
