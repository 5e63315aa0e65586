//! Protocol costs, each next to its baselines measured in the same run:
//! the bare library calls (messages handed over in memory, no envelopes,
//! encoding or echo) and single-key signing. All parties run on one core, so
//! the time is the cluster's total CPU time.
//!
//! `cargo bench -p shardvault-mpc --bench protocols`

use std::collections::{BTreeMap, BTreeSet};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use dkls23::protocols::signing::SignData;
use dkls23::protocols::{Parameters, PartyIndex};
use rand_core::OsRng;
use shardvault_mpc::{
    derive_hardened, dkg, local, refresh, sign, DerivationPath, KeyId, KeyShare, PartyId, Scheme, SessionId,
    SignRequest, Threshold,
};

const DIGEST: [u8; 32] = [7u8; 32];

fn shares(scheme: Scheme, t: u8, n: u8) -> BTreeMap<PartyId, KeyShare> {
    let threshold = Threshold::new(t, n).unwrap();
    let (key_id, session) = (KeyId::random(), SessionId::random());
    local::run(
        threshold.party_ids().map(|me| dkg(scheme, key_id, threshold, me, session, &mut OsRng).unwrap()).collect(),
    )
    .unwrap()
}

fn ours_sign(shares: &BTreeMap<PartyId, KeyShare>, signers: &BTreeSet<PartyId>) {
    let path = DerivationPath::root();
    let session = SessionId::random();
    let started = signers
        .iter()
        .map(|p| {
            sign(
                &SignRequest { share: &shares[p], hardened: None, path: &path, signers, message: &DIGEST },
                session,
                &mut OsRng,
            )
            .unwrap()
        })
        .collect();
    local::run(started).unwrap();
}

// ------------------------------------------------------- bare dkls23 calls

type DklsParty = dkls23::secp256k1::Party;

fn dkls_bare_sign(parties: &[&DklsParty]) {
    let ids: Vec<PartyIndex> = parties.iter().map(|p| p.party_index).collect();
    let sign_id = SessionId::random().as_bytes().to_vec();
    let data: Vec<SignData> = parties
        .iter()
        .map(|p| SignData {
            sign_id: sign_id.clone(),
            counterparties: ids.iter().copied().filter(|i| *i != p.party_index).collect(),
            message_hash: DIGEST,
        })
        .collect();
    let mut r1 = Vec::new();
    let mut out1 = Vec::new();
    for (p, d) in parties.iter().zip(&data) {
        let (u, k, t) = p.sign_phase1(d).unwrap();
        r1.push((u, k));
        out1.extend(t);
    }
    let mut r2 = Vec::new();
    let mut out2 = Vec::new();
    for ((p, d), (u, k)) in parties.iter().zip(&data).zip(r1) {
        let inbox: Vec<_> = out1.iter().filter(|m| m.parties.receiver == p.party_index).cloned().collect();
        let (u, k, t) = p.sign_phase2(d, u, k, &inbox).unwrap();
        r2.push((u, k));
        out2.extend(t);
    }
    let mut x = Vec::new();
    let mut broadcasts = Vec::new();
    for ((p, d), (u, k)) in parties.iter().zip(&data).zip(r2) {
        let inbox: Vec<_> = out2.iter().filter(|m| m.parties.receiver == p.party_index).cloned().collect();
        let (x_coord, b) = p.sign_phase3(d, u, k, &inbox).unwrap();
        x.push(x_coord);
        broadcasts.push(b);
    }
    for ((p, d), x) in parties.iter().zip(&data).zip(&x) {
        p.sign_phase4(d, x, &broadcasts, true).unwrap();
    }
}

fn dkls_bare_dkg(t: u8, n: u8) {
    use dkls23::DkgSession;
    let sid = SessionId::random().as_bytes().to_vec();
    let mut sessions: Vec<DkgSession<k256_dkls::Secp256k1>> = (1..=n)
        .map(|i| DkgSession::new(Parameters::new(t, n).unwrap(), PartyIndex::new(i).unwrap(), sid.clone()))
        .collect();
    let fragments: Vec<Vec<k256_dkls::Scalar>> = sessions.iter().map(|s| s.phase1()).collect();
    let mut proofs = Vec::new();
    let mut zero2 = Vec::new();
    let mut bip2 = BTreeMap::new();
    for (i, s) in sessions.iter_mut().enumerate() {
        let mine: Vec<_> = fragments.iter().map(|f| f[i]).collect();
        let (p, z, b) = s.phase2(&mine).unwrap();
        proofs.push(p);
        zero2.extend(z);
        bip2.insert(PartyIndex::new(i as u8 + 1).unwrap(), b);
    }
    let mut zero3 = Vec::new();
    let mut mul3 = Vec::new();
    let mut bip3 = BTreeMap::new();
    for (i, s) in sessions.iter_mut().enumerate() {
        let (z, m, b) = s.phase3().unwrap();
        zero3.extend(z);
        mul3.extend(m);
        bip3.insert(PartyIndex::new(i as u8 + 1).unwrap(), b);
    }
    for (i, s) in sessions.into_iter().enumerate() {
        let me = PartyIndex::new(i as u8 + 1).unwrap();
        let z2: Vec<_> = zero2.iter().filter(|m| m.parties.receiver == me).cloned().collect();
        let z3: Vec<_> = zero3.iter().filter(|m| m.parties.receiver == me).cloned().collect();
        let m3: Vec<_> = mul3.iter().filter(|m| m.parties.receiver == me).cloned().collect();
        s.phase4(&proofs, &z2, &z3, &m3, &bip2, &bip3, |_| String::new()).unwrap();
    }
}

// ------------------------------------------------------- bare frost calls

fn frost_bare_keys<C: frost_core::Ciphersuite>(
    t: u16,
    n: u16,
) -> (BTreeMap<frost_core::Identifier<C>, frost_core::keys::KeyPackage<C>>, frost_core::keys::PublicKeyPackage<C>) {
    use frost_core::keys::dkg;
    let ids: Vec<frost_core::Identifier<C>> = (1..=n).map(|i| i.try_into().unwrap()).collect();
    let mut r1s = BTreeMap::new();
    let mut r1p = BTreeMap::new();
    for id in &ids {
        let (s, p) = dkg::part1::<C, _>(*id, n, t, OsRng).unwrap();
        r1s.insert(*id, s);
        r1p.insert(*id, p);
    }
    let mut r2s = BTreeMap::new();
    let mut r2p: BTreeMap<_, BTreeMap<_, _>> = BTreeMap::new();
    for (id, s) in r1s {
        let others: BTreeMap<_, _> = r1p.iter().filter(|(k, _)| **k != id).map(|(k, v)| (*k, v.clone())).collect();
        let (s2, packages) = dkg::part2(s, &others).unwrap();
        r2s.insert(id, s2);
        for (to, p) in packages {
            r2p.entry(to).or_default().insert(id, p);
        }
    }
    let mut keys = BTreeMap::new();
    let mut public = None;
    for (id, s) in &r2s {
        let others: BTreeMap<_, _> = r1p.iter().filter(|(k, _)| *k != id).map(|(k, v)| (*k, v.clone())).collect();
        let (k, p) = dkg::part3(s, &others, &r2p[id]).unwrap();
        keys.insert(*id, k);
        public = Some(p);
    }
    (keys, public.unwrap())
}

fn frost_bare_sign<C: frost_core::Ciphersuite>(
    keys: &[&frost_core::keys::KeyPackage<C>],
    public: &frost_core::keys::PublicKeyPackage<C>,
    message: &[u8],
) {
    let mut nonces = BTreeMap::new();
    let mut commitments = BTreeMap::new();
    for k in keys {
        let (n, c) = frost_core::round1::commit(k.signing_share(), &mut OsRng);
        nonces.insert(*k.identifier(), n);
        commitments.insert(*k.identifier(), c);
    }
    let package = frost_core::SigningPackage::new(commitments, message);
    let shares: BTreeMap<_, _> = keys
        .iter()
        .map(|k| (*k.identifier(), frost_core::round2::sign(&package, &nonces[k.identifier()], k).unwrap()))
        .collect();
    // Every signer aggregates, as in shardvault.
    for _ in keys {
        frost_core::aggregate(&package, &shares, public).unwrap();
    }
}

// ------------------------------------------------------- benches

fn signing(c: &mut Criterion) {
    let signers: BTreeSet<PartyId> = [1, 2].into_iter().map(|i| PartyId::new(i).unwrap()).collect();

    let mut group = c.benchmark_group("sign ecdsa-secp256k1 2-of-3");
    let ecdsa = shares(Scheme::EcdsaSecp256k1, 2, 3);
    group.bench_function("shardvault", |b| b.iter(|| ours_sign(&ecdsa, &signers)));
    let bare: Vec<DklsParty> = bare_dkls_parties(2, 3);
    group.bench_function("dkls23 bare", |b| b.iter(|| dkls_bare_sign(&[&bare[0], &bare[1]])));
    let single = bitcoin::secp256k1::SecretKey::from_slice(&[0x11; 32]).unwrap();
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let message = bitcoin::secp256k1::Message::from_digest(DIGEST);
    group.bench_function("single-key libsecp256k1", |b| b.iter(|| secp.sign_ecdsa_recoverable(&message, &single)));
    group.finish();

    for (scheme, name) in [
        (Scheme::EddsaEd25519, "sign eddsa-ed25519 2-of-3"),
        (Scheme::SchnorrSecp256k1, "sign schnorr-secp256k1 2-of-3"),
    ] {
        let mut group = c.benchmark_group(name);
        let ours = shares(scheme, 2, 3);
        group.bench_function("shardvault", |b| b.iter(|| ours_sign(&ours, &signers)));
        match scheme {
            Scheme::EddsaEd25519 => {
                let (keys, public) = frost_bare_keys::<frost_ed25519::Ed25519Sha512>(2, 3);
                let two: Vec<_> = keys.values().take(2).collect();
                group.bench_function("frost bare", |b| b.iter(|| frost_bare_sign(&two, &public, &DIGEST)));
                let single = ed25519_dalek::SigningKey::from_bytes(&[0x22; 32]);
                group.bench_function("single-key ed25519-dalek", |b| {
                    b.iter(|| ed25519_dalek::Signer::sign(&single, &DIGEST))
                });
            }
            _ => {
                let (keys, public) = frost_bare_keys::<frost_secp256k1_tr::Secp256K1Sha256TR>(2, 3);
                let two: Vec<_> = keys.values().take(2).collect();
                group.bench_function("frost bare", |b| b.iter(|| frost_bare_sign(&two, &public, &DIGEST)));
                let keypair = bitcoin::secp256k1::Keypair::from_secret_key(&secp, &single);
                group.bench_function("single-key libsecp256k1", |b| {
                    b.iter(|| secp.sign_schnorr_no_aux_rand(&message, &keypair))
                });
            }
        }
        group.finish();
    }
}

fn bare_dkls_parties(t: u8, n: u8) -> Vec<DklsParty> {
    use dkls23::protocols::re_key::re_key;
    // The secret's value does not affect timing.
    let secret = k256_dkls::Scalar::from(0x1234_5678_9abc_def0u64);
    let (parties, _) = re_key::<k256_dkls::Secp256k1>(
        &Parameters::new(t, n).unwrap(),
        SessionId::random().as_bytes(),
        &secret,
        None,
        |_| String::new(),
    );
    parties
}

fn key_generation(c: &mut Criterion) {
    let mut group = c.benchmark_group("dkg 2-of-3");
    group.sample_size(10);
    for scheme in Scheme::ALL {
        group.bench_function(format!("{scheme} shardvault"), |b| b.iter(|| shares(scheme, 2, 3)));
    }
    group.bench_function("ecdsa-secp256k1 dkls23 bare", |b| b.iter(|| dkls_bare_dkg(2, 3)));
    group.bench_function("eddsa-ed25519 frost bare", |b| {
        b.iter(|| frost_bare_keys::<frost_ed25519::Ed25519Sha512>(2, 3))
    });
    group.bench_function("schnorr-secp256k1 frost bare", |b| {
        b.iter(|| frost_bare_keys::<frost_secp256k1_tr::Secp256K1Sha256TR>(2, 3))
    });
    group.finish();
}

fn refresh_and_derive(c: &mut Criterion) {
    let mut group = c.benchmark_group("refresh and derive 2-of-3");
    group.sample_size(10);
    let path: DerivationPath = "m/9'/0'/60'/0'".parse().unwrap();
    for scheme in Scheme::ALL {
        let key = shares(scheme, 2, 3);
        group.bench_function(format!("{scheme} refresh"), |b| {
            b.iter_batched(
                SessionId::random,
                |session| local::run(key.values().map(|s| refresh(s, session, &mut OsRng).unwrap()).collect()).unwrap(),
                BatchSize::SmallInput,
            )
        });
        group.bench_function(format!("{scheme} derive hardened"), |b| {
            b.iter_batched(
                SessionId::random,
                |session| {
                    local::run(key.values().map(|s| derive_hardened(s, &path, session, &mut OsRng).unwrap()).collect())
                        .unwrap()
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, signing, key_generation, refresh_and_derive);
criterion_main!(benches);
