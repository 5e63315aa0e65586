//! Any t-of-n with 2 ≤ t ≤ n ≤ 16: the edges, checked end to end.

mod common;

use common::*;
use shardvault_mpc::{Scheme, Threshold};

fn sign_and_verify(scheme: Scheme, t: u8, n: u8, signer_sets: &[Vec<u8>]) {
    let shares = run_dkg(scheme, t, n);
    let tweaks = run_derive(&shares, "m/9'/0'/501'/0'");
    for signers in signer_sets {
        assert_eq!(signers.len(), usize::from(t));
        let message = message_for(scheme, "bounds");
        let signature = run_sign(&shares, Some(&tweaks), "m/9'/0'/501'/0'/0/0", &set(signers), &message);
        verify_independently(&signature, &message).unwrap();
    }
}

#[test]
fn ed25519_2_of_16_and_16_of_16() {
    sign_and_verify(Scheme::EddsaEd25519, 2, 16, &[vec![1, 16], vec![7, 9]]);
    sign_and_verify(Scheme::EddsaEd25519, 16, 16, &[(1..=16).collect()]);
}

#[test]
fn schnorr_9_of_16() {
    sign_and_verify(Scheme::SchnorrSecp256k1, 9, 16, &[(1..=9).collect(), (8..=16).collect()]);
}

#[test]
fn ecdsa_3_of_5() {
    sign_and_verify(Scheme::EcdsaSecp256k1, 3, 5, &[vec![1, 2, 3], vec![1, 4, 5], vec![2, 3, 5]]);
}

#[test]
fn thresholds_outside_the_range_are_refused() {
    for (t, n) in [(0, 3), (1, 3), (4, 3), (2, 17), (17, 17), (1, 1)] {
        assert!(Threshold::new(t, n).is_err(), "{t}-of-{n}");
    }
    for (t, n) in [(2, 2), (2, 3), (3, 3), (16, 16), (2, 16)] {
        assert!(Threshold::new(t, n).is_ok(), "{t}-of-{n}");
    }
}
