//! docs/HD-DERIVATION.md's required tests, plus BIP32 conformance of the
//! non-hardened levels against the published vectors and rust-bitcoin.

mod common;

use std::str::FromStr;

use bitcoin::bip32::{ChainCode, ChildNumber, Fingerprint, Xpub};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use common::*;
use proptest::prelude::*;
use shardvault_mpc::local::run_with;
use shardvault_mpc::OsRng;
use shardvault_mpc::{derive_hardened, derive_public, DerivationPath, ExtendedPublicKey, Payload, Scheme, SessionId};

#[test]
fn same_path_same_key_different_paths_unrelated_keys() {
    for scheme in Scheme::ALL {
        let shares = run_dkg(scheme, 2, 3);
        let a = run_derive(&shares, "m/9'/0'/60'/0'");
        let b = run_derive(&shares, "m/9'/0'/60'/0'");
        let c = run_derive(&shares, "m/9'/0'/60'/1'");
        let d = run_derive(&shares, "m/9'/1'/60'/0'");
        assert_eq!(a[&party(1)].public_key, b[&party(1)].public_key);
        assert_eq!(a[&party(2)].expose_tau(), b[&party(2)].expose_tau(), "tweak shares are deterministic");
        let keys = [&a, &c, &d].map(|t| t[&party(1)].public_key.clone());
        assert!(keys[0] != keys[1] && keys[1] != keys[2] && keys[0] != keys[2]);
        assert!(keys.iter().all(|k| k.as_slice() != shares[&party(1)].public_key()));
        // Every party ends with the same child key and chain code.
        for t in [&a, &c, &d] {
            assert!(t
                .values()
                .all(|x| x.public_key == t[&party(1)].public_key && x.chain_code == t[&party(1)].chain_code));
        }
    }
}

#[test]
fn an_inconsistent_tweak_share_names_its_dealer() {
    let shares = run_dkg(Scheme::SchnorrSecp256k1, 2, 3);
    let path: DerivationPath = "m/1'".parse().unwrap();
    let session = SessionId::random();
    let started = shares.values().map(|s| derive_hardened(s, &path, session, &mut OsRng).unwrap()).collect();
    let error = run_with(started, |to, mut envelope| {
        if envelope.from == party(2) && to == party(3) && envelope.to.is_some() {
            let mut bytes = envelope.payload.as_bytes().to_vec();
            bytes[31] ^= 0x01; // still a canonical scalar, but not g_2(3)
            envelope.payload = Payload::new(bytes);
        }
        vec![envelope]
    })
    .unwrap_err();
    assert_eq!(error.culprit(), Some(party(2)), "{error}");
    assert!(error.to_string().contains("does not match its commitments"), "{error}");
}

#[test]
fn an_inconsistent_commitment_names_its_dealer() {
    let shares = run_dkg(Scheme::EddsaEd25519, 3, 3);
    let path: DerivationPath = "m/2'".parse().unwrap();
    let session = SessionId::random();
    let started = shares.values().map(|s| derive_hardened(s, &path, session, &mut OsRng).unwrap()).collect();
    // Party 3 sends everyone commitments from a different seed (another run with another key's share).
    let other = run_dkg(Scheme::EddsaEd25519, 3, 3);
    let (_, forged) = derive_hardened(&other[&party(3)], &path, session, &mut OsRng).unwrap();
    let forged_broadcast = forged.into_iter().find(|e| e.to.is_none()).unwrap();
    let error = run_with(started, |_, envelope| {
        if envelope.from == party(3) && envelope.to.is_none() && envelope.round == 0 {
            vec![forged_broadcast.clone()]
        } else {
            vec![envelope]
        }
    })
    .unwrap_err();
    assert_eq!(error.culprit(), Some(party(3)), "{error}");
}

#[test]
fn derivation_needs_an_all_hardened_path() {
    let shares = run_dkg(Scheme::EddsaEd25519, 2, 2);
    for bad in ["m", "m/1'/2"] {
        assert!(derive_hardened(&shares[&party(1)], &bad.parse().unwrap(), SessionId::random(), &mut OsRng).is_err());
    }
}

fn xpub_parts(xpub: &Xpub) -> ExtendedPublicKey {
    ExtendedPublicKey { public_key: xpub.public_key.serialize().to_vec(), chain_code: xpub.chain_code.to_bytes() }
}

#[test]
fn non_hardened_levels_match_bip32_test_vectors() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../test-vectors/bip32-public.json")).unwrap();
    let vectors: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = vectors["cases"].as_array().unwrap();
    assert!(cases.len() >= 3);
    for case in cases {
        let parent = Xpub::from_str(case["parent_xpub"].as_str().unwrap()).unwrap();
        let child = Xpub::from_str(case["child_xpub"].as_str().unwrap()).unwrap();
        let index = u32::try_from(case["index"].as_u64().unwrap()).unwrap();
        let ours = derive_public(Scheme::EcdsaSecp256k1, &xpub_parts(&parent), &[index]).unwrap();
        assert_eq!(ours, xpub_parts(&child), "{}", case["parent"]);
    }
}

proptest! {
    /// Our CKDpub agrees with rust-bitcoin's for random keys, chain codes and paths.
    #[test]
    fn non_hardened_levels_match_rust_bitcoin(secret in any::<[u8; 32]>(), chain_code in any::<[u8; 32]>(),
                                              path in proptest::collection::vec(0u32..(1 << 31), 1..5)) {
        let Ok(secret) = SecretKey::from_slice(&secret) else { return Ok(()) };
        let secp = Secp256k1::new();
        let xpub = Xpub {
            network: bitcoin::NetworkKind::Main,
            depth: 0,
            parent_fingerprint: Fingerprint::default(),
            child_number: ChildNumber::from_normal_idx(0).unwrap(),
            public_key: PublicKey::from_secret_key(&secp, &secret),
            chain_code: ChainCode::from(chain_code),
        };
        let theirs = xpub.derive_pub(&secp, &path.iter().map(|i| ChildNumber::from_normal_idx(*i).unwrap()).collect::<Vec<_>>()).unwrap();
        let ours = derive_public(Scheme::EcdsaSecp256k1, &xpub_parts(&xpub), &path).unwrap();
        prop_assert_eq!(ours, xpub_parts(&theirs));
    }
}

#[test]
fn hardened_tweaks_round_trip_and_refuse_bad_points() {
    use shardvault_mpc::HardenedTweak;
    for scheme in Scheme::ALL {
        let shares = run_dkg(scheme, 2, 3);
        let tweaks = run_derive(&shares, "m/9'/0'/1'");
        let tweak = &tweaks[&party(2)];
        let bytes = tweak.to_bytes().unwrap();
        let back = HardenedTweak::from_bytes(&bytes).unwrap();
        assert_eq!(back.to_bytes().unwrap(), bytes);
        // A signature with the decoded tweak still verifies.
        let mut decoded = tweaks.clone();
        decoded.insert(party(2), back);
        let message = message_for(scheme, "cached tweak");
        let signature = run_sign(&shares, Some(&decoded), "m/9'/0'/1'/0", &set(&[1, 2]), &message);
        verify_independently(&signature, &message).unwrap();
        // Any corrupted byte is refused or still decodes to valid data; never a panic.
        for i in 0..bytes.len() {
            let mut corrupted = bytes.to_vec();
            corrupted[i] ^= 0x55;
            let _ = HardenedTweak::from_bytes(&corrupted);
        }
        assert!(HardenedTweak::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }
}
