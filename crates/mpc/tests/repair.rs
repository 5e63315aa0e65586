//! Share repair (docs/DESIGN.md "Replacing a lost node"): a 2-of-3 key loses
//! party 2's share; parties 1 and 3 rebuild it at index 2 without the key
//! changing; after a complete refresh of all three, the repaired party
//! signs (checked by an independent verifier), hardened paths derive as
//! before, and the lost share no longer combines with the new ones.

mod common;

use std::collections::BTreeMap;

use common::*;
use shardvault_mpc::{
    repair_assemble, repair_sigma, repair_start, Error, OsRng, PartyId, Payload, RepairContext, Scheme,
};

/// Runs the repair of `target` by `helpers`, carrying each message to its
/// receiver only; the target's share, or the first error.
fn repair(shares: &Shares, helpers: &[u8], target: u8, tamper: bool) -> Result<shardvault_mpc::KeyShare, Error> {
    let (helpers, target) = (set(helpers), party(target));
    let lost = shares[&target].backup()?;
    let repair_id = [7u8; 32];
    let mut first: BTreeMap<PartyId, BTreeMap<PartyId, Payload>> = BTreeMap::new();
    for helper in &helpers {
        for (to, message) in repair_start(&shares[helper], &helpers, target, &repair_id, &mut OsRng)? {
            first.entry(to).or_default().insert(*helper, message);
        }
    }
    let mut last = match shares[&target].scheme() {
        Scheme::EcdsaSecp256k1 => first.remove(&target).unwrap_or_default(),
        _ => {
            let mut sigmas = BTreeMap::new();
            for helper in &helpers {
                let deltas = first.remove(helper).unwrap_or_default();
                sigmas.insert(*helper, repair_sigma(&shares[helper], &helpers, &deltas)?);
            }
            sigmas
        }
    };
    if tamper {
        // A helper sends a value it made up (well-formed: another helper's).
        let (a, b) = (*helpers.iter().next().unwrap(), *helpers.iter().last().unwrap());
        let other = Payload::new(last[&b].as_bytes().to_vec());
        last.insert(a, other);
    }
    // What the target is told about the key: the same by every helper.
    let context = RepairContext::of(&shares[helpers.iter().next().unwrap()]);
    repair_assemble(&context, target, &last, lost.chain_seed)
}

fn repaired_key_signs_again(scheme: Scheme) {
    let shares = run_dkg(scheme, 2, 3);
    let root = shares[&party(1)].public_key().to_vec();
    let path = "m/9'/0'/60'/0'/0'/0'";
    let tweaks = run_derive(&shares, path);

    let repaired = repair(&shares, &[1, 3], 2, false).unwrap();
    assert_eq!((repaired.party(), repaired.public_key()), (party(2), root.as_slice()));
    assert_eq!(repaired.verifying_shares(), shares[&party(2)].verifying_shares());

    // A made-up value from one helper is refused, whichever scheme.
    assert!(repair(&shares, &[1, 3], 2, true).is_err(), "{scheme}: a wrong helper value was accepted");
    // Too few helpers, or the target among them: refused before anything is sent.
    assert!(matches!(repair(&shares, &[1], 2, false), Err(Error::InvalidInput(_))));
    assert!(matches!(repair(&shares, &[1, 2], 2, false), Err(Error::InvalidInput(_))));

    // The complete refresh with the repaired share in party 2's place.
    let mut cluster = shares.clone();
    cluster.insert(party(2), repaired);
    let refreshed = run_refresh(&cluster);
    assert!(refreshed.values().all(|s| s.public_key() == root && s.epoch().0 == 1));
    for signers in [[1, 2], [2, 3]] {
        let message = message_for(scheme, "after repair");
        let signature = run_sign(&refreshed, Some(&tweaks), path, &set(&signers), &message);
        verify_independently(&signature, &message).unwrap_or_else(|e| panic!("{scheme} {signers:?}: {e}"));
    }
    // The same hardened key from the repaired party's chain seed.
    let again = run_derive(&refreshed, path);
    assert_eq!(again[&party(2)].public_key, tweaks[&party(2)].public_key);

    // The lost share (epoch 0) does not sign with a refreshed one.
    let mut mixed = refreshed.clone();
    mixed.insert(party(2), shares[&party(2)].clone());
    let message = message_for(scheme, "lost share");
    if let Ok(signature) = try_sign(&mixed, None, "m", &set(&[1, 2]), &message) {
        assert!(verify_independently(&signature, &message).is_err(), "{scheme}: the lost share still signs");
    }
}

#[test]
fn an_ecdsa_share_is_repaired_and_signs_after_a_complete_refresh() {
    repaired_key_signs_again(Scheme::EcdsaSecp256k1);
}

#[test]
fn an_ed25519_share_is_repaired_and_signs_after_a_refresh() {
    repaired_key_signs_again(Scheme::EddsaEd25519);
}

#[test]
fn a_taproot_share_is_repaired_and_signs_after_a_refresh() {
    repaired_key_signs_again(Scheme::SchnorrSecp256k1);
}

#[test]
fn a_hollow_ecdsa_share_does_not_sign_before_the_refresh() {
    let shares = run_dkg(Scheme::EcdsaSecp256k1, 2, 3);
    let mut cluster = shares.clone();
    cluster.insert(party(2), repair(&shares, &[1, 3], 2, false).unwrap());
    let message = message_for(Scheme::EcdsaSecp256k1, "hollow");
    match try_sign(&cluster, None, "m", &set(&[1, 2]), &message) {
        Err(_) => {}
        Ok(signature) => panic!("a hollow share signed: {signature:?}"),
    }
}
