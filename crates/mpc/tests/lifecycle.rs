//! The whole key lifecycle per scheme, every signature checked by an
//! independent implementation.

mod common;

use common::*;
use shardvault_mpc::{extended_public_key, recover_key, DerivationPath, Scheme};

fn lifecycle(scheme: Scheme, t: u8, n: u8, signer_sets: &[&[u8]]) {
    let shares = run_dkg(scheme, t, n);
    let root = shares.values().next().unwrap().public_key().to_vec();
    assert!(shares.values().all(|s| s.public_key() == root && s.epoch().0 == 0));

    // Root key: several signer subsets, each checked independently.
    for signers in signer_sets {
        let message = message_for(scheme, &format!("root {signers:?}"));
        let signature = run_sign(&shares, None, "m", &set(signers), &message);
        assert_eq!(signature.signers, set(signers).into_iter().collect::<Vec<_>>());
        assert_eq!(signature.public_key, expected_verifier_key(scheme, &root));
        verify_independently(&signature, &message).unwrap();
    }

    // Hardened derivation, then a non-hardened level below it.
    let tweaks = run_derive(&shares, "m/9'/0'/60'/0'");
    let path = "m/9'/0'/60'/0'/0/5";
    let child = extended_public_key(&shares[&party(1)], Some(&tweaks[&party(1)]), &path.parse().unwrap()).unwrap();
    assert_ne!(child.public_key, root);
    for signers in signer_sets {
        let message = message_for(scheme, "child");
        let signature = run_sign(&shares, Some(&tweaks), path, &set(signers), &message);
        assert_eq!(signature.public_key, expected_verifier_key(scheme, &child.public_key));
        verify_independently(&signature, &message).unwrap();
    }

    // Refresh: same key, next epoch; the derived key survives.
    let refreshed = run_refresh(&shares);
    assert!(refreshed.values().all(|s| s.public_key() == root && s.epoch().0 == 1));
    assert_ne!(refreshed[&party(1)].to_bytes().unwrap(), shares[&party(1)].to_bytes().unwrap());
    let again = run_derive(&refreshed, "m/9'/0'/60'/0'");
    assert_eq!(again[&party(1)].public_key, tweaks[&party(1)].public_key);
    let message = message_for(scheme, "after refresh");
    let signature = run_sign(&refreshed, Some(&tweaks), path, &set(signer_sets[0]), &message);
    assert_eq!(signature.public_key, expected_verifier_key(scheme, &child.public_key));
    verify_independently(&signature, &message).unwrap();

    // An old-epoch share combined with new-epoch shares must not give a valid signature.
    let mut mixed = refreshed.clone();
    let first = *set(signer_sets[0]).iter().next().unwrap();
    mixed.insert(first, shares[&first].clone());
    match try_sign(&mixed, None, "m", &set(signer_sets[0]), &message) {
        Err(_) => {}
        Ok(signature) => {
            assert!(verify_independently(&signature, &message).is_err(), "mixed epochs produced a valid signature")
        }
    }

    // Offline recovery from every share reproduces the child key.
    let all: Vec<_> = shares.values().map(|share| share.backup().unwrap()).collect();
    let recovered = recover_key(&all, &path.parse::<DerivationPath>().unwrap()).unwrap();
    assert_eq!(recovered.public_key, child.public_key);
    if scheme != Scheme::EddsaEd25519 {
        assert_eq!(shardvault_testkit::secp256k1_public_key(recovered.expose_secret()).unwrap(), child.public_key);
    }
}

#[test]
fn ecdsa_2_of_3() {
    lifecycle(Scheme::EcdsaSecp256k1, 2, 3, &[&[1, 2], &[1, 3], &[2, 3]]);
}

#[test]
fn ecdsa_3_of_3() {
    lifecycle(Scheme::EcdsaSecp256k1, 3, 3, &[&[1, 2, 3]]);
}

#[test]
fn ed25519_2_of_3() {
    lifecycle(Scheme::EddsaEd25519, 2, 3, &[&[1, 2], &[2, 3], &[1, 3]]);
}

#[test]
fn ed25519_3_of_5() {
    lifecycle(Scheme::EddsaEd25519, 3, 5, &[&[1, 2, 3], &[2, 4, 5]]);
}

#[test]
fn schnorr_2_of_3() {
    lifecycle(Scheme::SchnorrSecp256k1, 2, 3, &[&[1, 2], &[1, 3], &[2, 3]]);
}

#[test]
fn schnorr_3_of_3() {
    lifecycle(Scheme::SchnorrSecp256k1, 3, 3, &[&[1, 2, 3]]);
}
