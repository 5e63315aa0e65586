//! The whole key lifecycle with every party in this process: DKG, hardened
//! derivation and addresses per chain, signing by different signer sets,
//! refresh, signing again. `simulate` prints its report.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{ensure, Context, Result};
use indicatif::ProgressBar;
use shardvault_chains::{Chain, KeyType};
use shardvault_mpc::{
    derive_hardened, dkg, extended_public_key, local, refresh, sign, DerivationPath, HardenedTweak, KeyId, KeyShare,
    OsRng, PartyId, Scheme, SessionId, SignRequest, Threshold,
};

use crate::report::{DerivationReport, KeyReport, RefreshReport, Report, SignatureReport, SCHEMA};

/// The keys the lifecycle creates: every scheme, 2-of-3 and MPCVault's 3-of-3.
pub const KEYS: [(Scheme, u8, u8); 5] = [
    (Scheme::EcdsaSecp256k1, 2, 3),
    (Scheme::EcdsaSecp256k1, 3, 3),
    (Scheme::EddsaEd25519, 2, 3),
    (Scheme::EddsaEd25519, 3, 3),
    (Scheme::SchnorrSecp256k1, 2, 3),
];

/// Protocol runs per key, for the progress bar.
pub const STEPS_PER_KEY: u64 = 5;

type Shares = BTreeMap<PartyId, KeyShare>;
type Tweaks = BTreeMap<DerivationPath, BTreeMap<PartyId, HardenedTweak>>;

/// Runs the lifecycle for every key in `keys`, signing `message`.
pub fn run(keys: &[(Scheme, u8, u8)], message: &str, progress: &ProgressBar) -> Result<Report> {
    let mut reports = Vec::new();
    for (scheme, t, n) in keys {
        reports.push(key_lifecycle(*scheme, Threshold::new(*t, *n)?, message.as_bytes(), progress)?);
    }
    Ok(Report { schema: SCHEMA.into(), transport: "in-process".into(), keys: reports, governance: None })
}

/// The two paths shown per chain: MPCVault's all-hardened shape, and a
/// hardened account with BIP32 non-hardened change/index below it.
pub fn paths(chain: Chain) -> Result<[DerivationPath; 2]> {
    let coin = chain.coin_type();
    Ok([format!("m/9'/0'/{coin}'/0'/0'/0'").parse()?, DerivationPath::mpcvault(0, coin, 0, 0, 1)?])
}

fn key_lifecycle(scheme: Scheme, threshold: Threshold, message: &[u8], progress: &ProgressBar) -> Result<KeyReport> {
    let label = format!("{scheme} {}-of-{}", threshold.threshold(), threshold.parties());
    progress.set_message(format!("{label}: distributed key generation"));
    let key_id = KeyId::random();
    let session = SessionId::random();
    let shares: Shares = local::run(
        threshold
            .party_ids()
            .map(|me| dkg(scheme, key_id, threshold, me, session, &mut OsRng))
            .collect::<Result<_, _>>()?,
    )?;
    progress.inc(1);
    let root = first(&shares)?.public_key().to_vec();
    ensure!(shares.values().all(|s| s.public_key() == root), "parties disagree on the public key");
    tracing::info!(%key_id, %scheme, t = threshold.threshold(), n = threshold.parties(), public_key = %hex::encode(&root), "key generated");

    progress.set_message(format!("{label}: hardened derivation"));
    let chains: Vec<Chain> = Chain::ALL.into_iter().filter(|c| c.accepts(KeyType::from(scheme))).collect();
    let mut tweaks = Tweaks::new();
    let mut derivations = Vec::new();
    for chain in &chains {
        for path in paths(*chain)? {
            let public_key = derived_key(&shares, &mut tweaks, &path)?;
            let address = chain.address(KeyType::from(scheme), &public_key)?;
            derivations.push(DerivationReport {
                path: path.to_string(),
                chain: chain.to_string(),
                public_key: hex::encode(&public_key),
                address,
            });
        }
    }
    progress.inc(1);

    // Two signer sets where t < n: the first t parties and the last t.
    let parties: Vec<PartyId> = threshold.party_ids().collect();
    let t = usize::from(threshold.threshold());
    let first_set: BTreeSet<PartyId> = parties.iter().take(t).copied().collect();
    let last_set: BTreeSet<PartyId> = parties.iter().rev().take(t).copied().collect();

    progress.set_message(format!("{label}: signing"));
    let mut signatures = Vec::new();
    for chain in &chains {
        let [hardened, normal] = paths(*chain)?;
        signatures.extend(sign_message(&shares, &tweaks, *chain, &hardened, &first_set, message)?);
        signatures.extend(sign_message(&shares, &tweaks, *chain, &normal, &last_set, message)?);
    }
    progress.inc(1);

    progress.set_message(format!("{label}: refresh"));
    let session = SessionId::random();
    let refreshed: Shares =
        local::run(shares.values().map(|s| refresh(s, session, &mut OsRng)).collect::<Result<_, _>>()?)?;
    let epoch_before = first(&shares)?.epoch().0;
    let epoch_after = first(&refreshed)?.epoch().0;
    ensure!(refreshed.values().all(|s| s.public_key() == root), "refresh changed the public key");
    tracing::info!(%key_id, epoch_before, epoch_after, "shares refreshed");
    progress.inc(1);

    progress.set_message(format!("{label}: signing after refresh"));
    for chain in &chains {
        let [hardened, _] = paths(*chain)?;
        signatures.extend(sign_message(&refreshed, &tweaks, *chain, &hardened, &last_set, message)?);
    }
    progress.inc(1);

    Ok(KeyReport {
        key_id: key_id.to_string(),
        scheme: scheme.to_string(),
        threshold: threshold.threshold(),
        parties: threshold.parties(),
        public_key: hex::encode(&root),
        derivations,
        signatures,
        refresh: RefreshReport { epoch_before, epoch_after },
        transactions: Vec::new(),
    })
}

fn first(shares: &Shares) -> Result<&KeyShare> {
    shares.values().next().context("no shares")
}

/// The public key of `path`, running hardened derivation for its prefix once.
fn derived_key(shares: &Shares, tweaks: &mut Tweaks, path: &DerivationPath) -> Result<Vec<u8>> {
    let prefix = path.hardened_prefix();
    if !tweaks.contains_key(&prefix) {
        let session = SessionId::random();
        let run = local::run(
            shares.values().map(|s| derive_hardened(s, &prefix, session, &mut OsRng)).collect::<Result<_, _>>()?,
        )?;
        tweaks.insert(prefix.clone(), run);
    }
    let share = first(shares)?;
    let tweak = tweaks.get(&prefix).and_then(|t| t.get(&share.party()));
    Ok(extended_public_key(share, tweak, path)?.public_key)
}

/// The message as `chain`'s format takes it: Aptos signs the AIP-62 full message.
pub fn chain_message(chain: Chain, message: &[u8]) -> Vec<u8> {
    match chain {
        Chain::Aptos => {
            shardvault_chains::message::aptos_full_message(&String::from_utf8_lossy(message), APTOS_NONCE).into_bytes()
        }
        _ => message.to_vec(),
    }
}

/// The AIP-62 nonce of the lifecycle's Aptos messages.
pub const APTOS_NONCE: &str = "shardvault-lifecycle";

/// Signs `message` in `chain`'s message format; `None` where the chain has
/// none for this key type (Litecoin Taproot: BIP-322 is Bitcoin's).
fn sign_message(
    shares: &Shares,
    tweaks: &Tweaks,
    chain: Chain,
    path: &DerivationPath,
    signers: &BTreeSet<PartyId>,
    message: &[u8],
) -> Result<Option<SignatureReport>> {
    let share = first(shares)?;
    let key = KeyType::from(share.scheme());
    let Some(format) = chain.message_format(key) else { return Ok(None) };
    format.check(key, path)?;
    let message = chain_message(chain, message);
    let child =
        extended_public_key(share, tweaks.get(&path.hardened_prefix()).and_then(|t| t.get(&share.party())), path)?;
    let input = format.signing_input(&child.public_key, &message)?;
    let signed: &[u8] = &input;
    let tweaks_for_path = tweaks.get(&path.hardened_prefix());
    let session = SessionId::random();
    let mut started = Vec::new();
    for signer in signers {
        let share = shares.get(signer).context("signer has no share")?;
        let hardened = tweaks_for_path.and_then(|t| t.get(signer));
        started.push(sign(&SignRequest { share, hardened, path, signers, message: signed }, session, &mut OsRng)?);
    }
    let outputs = local::run(started)?;
    let signature = outputs.into_values().next().context("no signature")?;
    tracing::info!(key_id = %share.key_id(), %path, %chain, signers = ?signature.signers.iter().map(|p| p.get()).collect::<Vec<_>>(), epoch = share.epoch().0, "signed");
    Ok(Some(SignatureReport {
        path: path.to_string(),
        chain: chain.to_string(),
        public_key: hex::encode(&signature.public_key),
        message: hex::encode(&message),
        message_encoding: format.name().into(),
        digest: (input != message).then(|| hex::encode(&input)),
        signature: hex::encode(&signature.bytes),
        recovery_id: signature.recovery_id,
        signers: signature.signers.iter().map(|p| p.get()).collect(),
        epoch: share.epoch().0,
    }))
}
