//! A hostile network and hostile peers: every bad message is refused with a
//! clear reason or ends the session naming the culprit; nothing panics.

mod common;

use std::collections::{BTreeMap, VecDeque};

use common::*;
use k256_dkls::elliptic_curve::Group;
use proptest::prelude::*;
use shardvault_mpc::local::{run_with, Run};
use shardvault_mpc::OsRng;
use shardvault_mpc::{
    dkg, sign, DerivationPath, Envelope, Error, KeyId, Payload, Rejection, Scheme, SessionId, SignRequest, Threshold,
};

fn ed25519_dkg_through<F>(network: F) -> Result<Run<shardvault_mpc::KeyShare>, Error>
where
    F: FnMut(shardvault_mpc::PartyId, Envelope) -> Vec<Envelope>,
{
    let threshold = Threshold::new(2, 3).unwrap();
    let (key_id, session) = (KeyId::random(), SessionId::random());
    run_with(
        threshold
            .party_ids()
            .map(|me| dkg(Scheme::EddsaEd25519, key_id, threshold, me, session, &mut OsRng).unwrap())
            .collect(),
        network,
    )
}

fn assert_agree(run: &Run<shardvault_mpc::KeyShare>) {
    let keys: Vec<_> = run.outputs.values().map(|s| s.public_key().to_vec()).collect();
    assert_eq!(keys.len(), 3);
    assert!(keys.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn replayed_messages_are_refused_and_the_run_completes() {
    let run = ed25519_dkg_through(|_, envelope| vec![envelope.clone(), envelope]).unwrap();
    assert_agree(&run);
    assert!(!run.refused.is_empty());
    assert!(
        run.refused
            .iter()
            .all(|(_, why)| matches!(why, Rejection::Duplicate { .. } | Rejection::Stale { .. } | Rejection::Finished)),
        "{:?}",
        run.refused
    );
}

#[test]
fn old_round_replay_is_refused() {
    let mut first_round: Vec<Envelope> = Vec::new();
    let run = ed25519_dkg_through(|_, envelope| {
        if envelope.round == 0 {
            first_round.push(envelope.clone());
            vec![envelope]
        } else {
            // After every later message, replay a round-0 message to the same party.
            let replay = first_round.iter().find(|old| old.from != envelope.from).cloned();
            std::iter::once(envelope).chain(replay).collect()
        }
    })
    .unwrap();
    assert_agree(&run);
    assert!(run.refused.iter().any(|(_, why)| matches!(why, Rejection::Stale { round: 0, .. })), "{:?}", run.refused);
}

#[test]
fn cross_session_unknown_sender_and_misrouted_messages_are_refused() {
    let run = ed25519_dkg_through(|to, envelope| {
        let mut other_session = envelope.clone();
        other_session.session = SessionId::random();
        let mut stranger = envelope.clone();
        stranger.from = party(9);
        let mut misrouted = envelope.clone();
        misrouted.to = Some(if to == party(1) { party(2) } else { party(1) });
        vec![other_session, stranger, misrouted, envelope]
    })
    .unwrap();
    assert_agree(&run);
    let has = |f: fn(&Rejection) -> bool| run.refused.iter().any(|(_, why)| f(why));
    assert!(has(|w| matches!(w, Rejection::WrongSession)));
    assert!(has(|w| matches!(w, Rejection::UnknownSender(p) if p.get() == 9)));
    assert!(has(|w| matches!(w, Rejection::Misrouted { .. })));
}

#[test]
fn malformed_payload_names_the_sender() {
    let error = ed25519_dkg_through(|_, mut envelope| {
        if envelope.from == party(2) && envelope.round == 1 {
            envelope.payload = Payload::new(vec![0xff; 7]);
        }
        vec![envelope]
    })
    .unwrap_err();
    assert_eq!(error.culprit(), Some(party(2)), "{error}");
}

#[test]
fn a_bad_secret_share_names_its_dealer() {
    // Flip a bit of party 3's round-2 share to party 1: FROST's VSS check fails.
    let error = ed25519_dkg_through(|to, envelope| {
        let mut envelope = envelope;
        if envelope.from == party(3) && to == party(1) && envelope.round == 1 {
            let mut bytes = envelope.payload.as_bytes().to_vec();
            let last = bytes.len() - 2;
            bytes[last] ^= 1;
            envelope.payload = Payload::new(bytes);
        }
        vec![envelope]
    })
    .unwrap_err();
    assert_eq!(error.culprit(), Some(party(3)), "{error}");
}

/// Like `run_with`, but a party whose session fails is dropped and the
/// others go on: each party's own error, to see what each one concluded.
fn errors_per_party<M: shardvault_mpc::Machine>(
    started: Vec<(shardvault_mpc::Session<M>, Vec<Envelope>)>,
    mut network: impl FnMut(shardvault_mpc::PartyId, Envelope) -> Vec<Envelope>,
) -> BTreeMap<shardvault_mpc::PartyId, Error> {
    let mut sessions = BTreeMap::new();
    let mut queue = VecDeque::new();
    let fan_out = |session: &shardvault_mpc::Session<M>, out: Vec<Envelope>, queue: &mut VecDeque<_>| {
        for envelope in out {
            match envelope.to {
                Some(to) => queue.push_back((to, envelope)),
                None => queue.extend(session.peers().iter().map(|peer| (*peer, envelope.clone()))),
            }
        }
    };
    for (session, out) in started {
        fan_out(&session, out, &mut queue);
        sessions.insert(session.me(), session);
    }
    let mut errors = BTreeMap::new();
    while let Some((to, envelope)) = queue.pop_front() {
        for envelope in network(to, envelope) {
            let Some(session) = sessions.get_mut(&to) else { continue };
            match session.receive(envelope) {
                Ok(out) => fan_out(session, out, &mut queue),
                Err(Error::Rejected(_)) => {}
                Err(error) => {
                    sessions.remove(&to);
                    errors.insert(to, error);
                }
            }
        }
    }
    errors
}

#[test]
fn equivocation_is_proven_only_where_the_evidence_is_the_senders_own() {
    // Party 1 shows party 3 a different (valid) round-0 broadcast than party 2.
    let threshold = Threshold::new(2, 3).unwrap();
    let (key_id, session) = (KeyId::random(), SessionId::random());
    let (_, twin_out) = dkg(Scheme::EddsaEd25519, key_id, threshold, party(1), session, &mut OsRng).unwrap();
    let twin_broadcast = twin_out.into_iter().find(|e| e.to.is_none()).unwrap();
    let started = threshold
        .party_ids()
        .map(|me| dkg(Scheme::EddsaEd25519, key_id, threshold, me, session, &mut OsRng).unwrap())
        .collect();
    let errors = errors_per_party(started, |to, envelope| {
        if envelope.from == party(1) && envelope.round == 0 && envelope.to.is_none() && to == party(3) {
            vec![twin_broadcast.clone()]
        } else {
            vec![envelope]
        }
    });
    // Party 3 holds party 1's broadcast and party 1's own echo of another one:
    // proof, and party 1 is named.
    let at_3 = &errors[&party(3)];
    assert!(matches!(at_3, Error::Equivocation { sender, .. } if *sender == party(1)), "{at_3}");
    assert_eq!(at_3.culprit(), Some(party(1)));
    // Party 2 only sees party 3's echo differ from its own view: party 1
    // equivocated or party 3 lies. Both are suspects, neither is the culprit.
    let at_2 = &errors[&party(2)];
    assert!(
        matches!(at_2, Error::Disputed { sender, reporter, round: 0 } if *sender == party(1) && *reporter == party(3)),
        "{at_2}"
    );
    assert_eq!(at_2.culprit(), None, "{at_2}");
    assert_eq!(at_2.suspects(), Some([party(1), party(3)]));
    assert!(at_2.to_string().contains("one of them"), "{at_2}");
}

#[test]
fn a_lying_echo_does_not_frame_the_honest_sender() {
    // Party 3 tells party 2 it received another round-0 broadcast from party 1
    // than it did. Party 1 is honest and must not be named as the culprit.
    let threshold = Threshold::new(2, 3).unwrap();
    let (key_id, session) = (KeyId::random(), SessionId::random());
    let started = threshold
        .party_ids()
        .map(|me| dkg(Scheme::EddsaEd25519, key_id, threshold, me, session, &mut OsRng).unwrap())
        .collect();
    let errors = errors_per_party(started, |to, mut envelope| {
        if envelope.from == party(3) && to == party(2) && envelope.round == 1 {
            for (about, digest) in envelope.echo.iter_mut() {
                if *about == party(1) {
                    digest[0] ^= 1;
                }
            }
        }
        vec![envelope]
    });
    let at_2 = &errors[&party(2)];
    assert_eq!(at_2.culprit(), None, "{at_2}");
    assert_eq!(at_2.suspects(), Some([party(1), party(3)]), "{at_2}");

    // The same lie about party 2's own broadcast, told to party 2: party 2
    // knows what it sent, so this one is proof against party 3.
    let started = threshold
        .party_ids()
        .map(|me| dkg(Scheme::EddsaEd25519, key_id, threshold, me, session, &mut OsRng).unwrap())
        .collect();
    let errors = errors_per_party(started, |to, mut envelope| {
        if envelope.from == party(3) && to == party(2) && envelope.round == 1 {
            for (about, digest) in envelope.echo.iter_mut() {
                if *about == party(2) {
                    digest[0] ^= 1;
                }
            }
        }
        vec![envelope]
    });
    let at_2 = &errors[&party(2)];
    assert_eq!(at_2.culprit(), Some(party(3)), "{at_2}");
    assert!(at_2.to_string().contains("that we did not send"), "{at_2}");
}

#[test]
fn dkls_consistency_failure_is_a_ban() {
    // Tamper with party 1's round-2 multiplication message to party 2: DKLs23
    // reports a ban abort, which must surface as its own error kind.
    use dkls23::protocols::signing::TransmitPhase2to3;
    let shares = run_dkg(Scheme::EcdsaSecp256k1, 2, 3);
    let signers = set(&[1, 2]);
    let message = message_for(Scheme::EcdsaSecp256k1, "ban");
    let path = DerivationPath::root();
    let session = SessionId::random();
    let started = signers
        .iter()
        .map(|p| {
            sign(
                &SignRequest { share: &shares[p], hardened: None, path: &path, signers: &signers, message: &message },
                session,
                &mut OsRng,
            )
            .unwrap()
        })
        .collect();
    let error = run_with(started, |to, mut envelope| {
        if envelope.from == party(1) && to == party(2) && envelope.round == 1 {
            let mut m: TransmitPhase2to3<k256_dkls::Secp256k1> =
                postcard::from_bytes(envelope.payload.as_bytes()).unwrap();
            m.public_share = (k256_dkls::ProjectivePoint::from(m.public_share)
                + k256_dkls::ProjectivePoint::generator())
            .to_affine();
            envelope.payload = Payload::new(postcard::to_stdvec(&m).unwrap());
        }
        vec![envelope]
    })
    .unwrap_err();
    assert!(matches!(error, Error::Banned { culprit, .. } if culprit == party(1)), "{error}");
}

#[test]
fn a_signer_outside_the_key_or_a_wrong_count_is_refused() {
    let shares = run_dkg(Scheme::EddsaEd25519, 2, 3);
    let path = DerivationPath::root();
    for signers in [set(&[1]), set(&[1, 2, 3]), set(&[1, 4])] {
        let request =
            SignRequest { share: &shares[&party(1)], hardened: None, path: &path, signers: &signers, message: b"m" };
        assert!(matches!(sign(&request, SessionId::random(), &mut OsRng), Err(Error::InvalidInput(_))));
    }
    let ecdsa = run_dkg(Scheme::EcdsaSecp256k1, 2, 2);
    let signers = set(&[1, 2]);
    let request = SignRequest {
        share: &ecdsa[&party(1)],
        hardened: None,
        path: &path,
        signers: &signers,
        message: b"not a digest",
    };
    assert!(matches!(sign(&request, SessionId::random(), &mut OsRng), Err(Error::InvalidInput(_))));
}

proptest! {
    #[test]
    fn envelope_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Envelope::from_bytes(&bytes);
    }

    #[test]
    fn envelopes_round_trip(round in any::<u8>(), from in 1u8..=16, to in proptest::option::of(1u8..=16),
                            payload in proptest::collection::vec(any::<u8>(), 0..256), echo_len in 0usize..4) {
        let envelope = Envelope {
            session: SessionId::random(),
            round,
            from: party(from),
            to: to.map(party),
            echo: (0..echo_len).map(|i| (party(i as u8 + 1), [i as u8; 32])).collect(),
            payload: Payload::new(payload),
        };
        let bytes = envelope.to_bytes().unwrap();
        prop_assert_eq!(Envelope::from_bytes(&bytes).unwrap(), envelope);
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert!(Envelope::from_bytes(&longer).is_err());
        prop_assert!(Envelope::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }
}
