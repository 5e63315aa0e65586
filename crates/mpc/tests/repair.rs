//! Share repair (docs/DESIGN.md "Replacing a lost node"): a 2-of-3 key loses
//! party 2's share; parties 1 and 3 rebuild it at index 2 without the key
//! changing; after a complete refresh of all three, the repaired party
//! signs (checked by an independent verifier), hardened paths derive as
//! before, and the lost share no longer combines with the new ones.

mod common;

use std::collections::BTreeMap;

use common::*;
use shardvault_mpc::{
    escrow_seed, local, repair_as_helper, repair_as_target, repair_assemble, repair_sigma, repair_start, Envelope,
    Error, EscrowedSeeds, Helping, OsRng, PartyId, Payload, RepairContext, RepairOutput, Scheme, SessionId,
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

/// Every party's escrow of its seed among the others.
fn run_escrow(shares: &Shares) -> BTreeMap<PartyId, EscrowedSeeds> {
    let session = SessionId::random();
    local::run(shares.values().map(|share| escrow_seed(share, session).unwrap()).collect()).unwrap()
}

/// Repairs `target` by `helpers` as the nodes do, in one session, each
/// helper bringing its escrowed piece of the target's seed; `network` sees
/// every delivery.
fn repair_in_session(
    shares: &Shares,
    escrow: &BTreeMap<PartyId, EscrowedSeeds>,
    helpers: &[u8],
    target: u8,
    network: impl FnMut(PartyId, Envelope) -> Vec<Envelope>,
) -> Result<shardvault_mpc::KeyShare, Error> {
    let (helpers, target) = (set(helpers), party(target));
    let session = SessionId::random();
    let key_id = shares[&target].key_id();
    let mut started = vec![repair_as_target(key_id, target, &helpers, session)?];
    for helper in &helpers {
        let (piece, commitment) = escrow[helper].piece_of(target).unwrap();
        let helping = Helping {
            share: &shares[helper],
            helpers: &helpers,
            target,
            seed_piece: piece,
            seed_commitment: commitment,
        };
        started.push(repair_as_helper(&helping, session, session.as_bytes(), &mut OsRng)?);
    }
    let mut run = local::run_with(started, network)?;
    match run.outputs.remove(&target) {
        Some(RepairOutput::Repaired(share)) => Ok(*share),
        other => panic!("the target ended with {other:?}"),
    }
}

fn repaired_in_a_session_with_its_seed(scheme: Scheme, t: u8, n: u8, helpers: &[u8], target: u8) {
    let shares = run_dkg(scheme, t, n);
    let path = "m/9'/0'/60'/0'/0'/0'";
    let tweaks = run_derive(&shares, path);
    let escrow = run_escrow(&shares);
    // Every holder has the same commitments and a piece of every peer's seed.
    assert!(escrow.values().all(|held| held.commitments == escrow[&party(1)].commitments));
    assert!(escrow.values().all(|held| held.pieces.len() == usize::from(n - 1)));

    let repaired = repair_in_session(&shares, &escrow, helpers, target, |_, e| vec![e]).unwrap();
    assert_eq!(repaired.verifying_shares(), shares[&party(target)].verifying_shares());
    let mut cluster = shares.clone();
    cluster.insert(party(target), repaired);
    let refreshed = run_refresh(&cluster);
    // The rebuilt seed gives the same hardened key, and the share signs.
    let again = run_derive(&refreshed, path);
    assert_eq!(again[&party(target)].public_key, tweaks[&party(target)].public_key);
    let signers: Vec<u8> = std::iter::once(target).chain(helpers.iter().copied()).take(usize::from(t)).collect();
    let message = message_for(scheme, "repaired in a session");
    let signature = run_sign(&refreshed, Some(&again), path, &set(&signers), &message);
    verify_independently(&signature, &message).unwrap_or_else(|e| panic!("{scheme}: {e}"));
}

#[test]
fn a_lost_ecdsa_party_is_repaired_in_a_session_with_its_seed() {
    repaired_in_a_session_with_its_seed(Scheme::EcdsaSecp256k1, 2, 3, &[1, 3], 2);
}

#[test]
fn a_lost_ed25519_party_of_a_3_of_5_key_is_repaired_in_a_session() {
    repaired_in_a_session_with_its_seed(Scheme::EddsaEd25519, 3, 5, &[2, 4, 5], 1);
}

#[test]
fn a_lost_taproot_party_is_repaired_in_a_session_with_its_seed() {
    repaired_in_a_session_with_its_seed(Scheme::SchnorrSecp256k1, 2, 3, &[2, 3], 1);
}

/// A hostile helper: its seed piece, or its description of the key, is not
/// what it holds. The target refuses; nothing is repaired.
#[test]
fn the_target_refuses_a_helper_that_lies_about_the_seed_or_the_key() {
    for scheme in [Scheme::EcdsaSecp256k1, Scheme::EddsaEd25519] {
        let shares = run_dkg(scheme, 2, 3);
        let escrow = run_escrow(&shares);
        // Helper 3's piece of party 2's seed is swapped for its piece of party 1's.
        let mut forged = escrow.clone();
        let other = forged.get(&party(3)).unwrap().pieces[&party(1)].clone();
        forged.get_mut(&party(3)).unwrap().pieces.insert(party(2), other);
        let refused = repair_in_session(&shares, &forged, &[1, 3], 2, |_, e| vec![e]).unwrap_err();
        assert!(refused.to_string().contains("do not rebuild"), "{scheme}: {refused}");

        // Helper 3 describes another key (another DKG's facts).
        let other_key = run_dkg(scheme, 2, 3);
        let mut mixed = shares.clone();
        mixed.insert(party(3), other_key[&party(3)].clone());
        let refused = repair_in_session(&mixed, &escrow, &[1, 3], 2, |_, e| vec![e]);
        assert!(refused.is_err(), "{scheme}: a helper of another key was heard");

        // A helper's message changed on the way: refused.
        let refused = repair_in_session(&shares, &escrow, &[1, 3], 2, |to, mut e| {
            if to == party(2) && e.from == party(1) && e.round == 0 {
                let mut bytes = e.payload.as_bytes().to_vec();
                if let Some(last) = bytes.last_mut() {
                    *last ^= 1;
                }
                e.payload = Payload::new(bytes);
            }
            vec![e]
        });
        assert!(refused.is_err(), "{scheme}: a changed helper message was accepted");
    }
}

#[test]
fn an_n_of_n_key_has_no_escrow_and_says_its_backups_are_the_way_back() {
    let shares = run_dkg(Scheme::EcdsaSecp256k1, 3, 3);
    let refused = escrow_seed(&shares[&party(1)], SessionId::random()).unwrap_err();
    assert!(refused.to_string().contains("backups are the only way back"), "{refused}");
}
