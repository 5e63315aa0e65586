//! `shardvault recover`, run as a binary on backup packages made here the
//! way nodes make them: shares from a DKG (`shardvault_mpc::local`), each
//! sealed with `shardvault_backup::seal` to a key `ssh-keygen -t ed25519`
//! made (one passphrase-protected), assembled with correct checksums and
//! the addresses the shares derive (the nodes' hardened derivation and
//! address code). What it prints is checked by other code: libsecp256k1
//! and rust-bitcoin for keys, WIF and addresses, ed25519-dalek and Bitcoin
//! Core's interpreter for signatures; the `#[ignore]`d tests at the end hand
//! them to the chains' own software (embit, eth_account, litesvm). Party p's
//! files are signed as node p of a test cluster, whose file `write` puts
//! beside every package; `recover` passes it with --cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};
use shardvault_api::{
    Attestation, BackupAddress, BackupPackage, EncryptedSeedShare, ExportedKeyShare, HardenedKey, ShareAttestation,
    BACKUP_FORMAT, BACKUP_VERSION,
};
use shardvault_backup::BackupPlaintext;
use shardvault_chains::{Chain, KeyType};
use shardvault_mpc::{
    derive_hardened, dkg, extended_public_key, local, refresh, DerivationPath, Epoch, KeyId, KeyShare, OsRng, PartyId,
    Scheme, SessionId, ShareBackup, Threshold,
};
use shardvault_wire::{generate_keypair, AddressStatement, BackupStatement, Cluster, NodeId, NodeIdentity};

mod common;
use common::EXE;

const ORGANISATION: &str = "5e1f00000000000000000000000000000000000000000000000000000000cafe";
const REQUEST: &str = "b4c4";
const PASSPHRASE: &str = "correct horse battery staple";

type Shares = BTreeMap<PartyId, KeyShare>;

/// The test cluster: three nodes, node p holding party p of every key.
struct Nodes {
    identities: BTreeMap<u16, NodeIdentity>,
    file: String,
}

fn nodes() -> &'static Nodes {
    static NODES: OnceLock<Nodes> = OnceLock::new();
    NODES.get_or_init(|| {
        let (_, coordinator) = generate_keypair().unwrap();
        let (mut keys, mut identities) = (BTreeMap::new(), BTreeMap::new());
        for node in 1..=3u16 {
            let (secret, public) = generate_keypair().unwrap();
            keys.insert(NodeId(node), public);
            identities.insert(node, NodeIdentity::derive(&secret));
        }
        let pinned = identities.iter().map(|(n, i)| (NodeId(*n), i.public())).collect();
        let cluster = Cluster { coordinator, nodes: keys, identities: pinned };
        Nodes { identities, file: serde_json::to_string_pretty(&cluster).unwrap() }
    })
}

/// The hardened paths the test cluster "derived" for a key: indices 0 to 3
/// of every chain the key signs for, with the child keys `backups` (all n,
/// so every chain seed) give — none where they do not make one key (the
/// mixed and spliced packages of the refusal tests).
fn signed_paths(backups: &[ShareBackup]) -> Vec<HardenedKey> {
    let key_type = KeyType::from(backups[0].scheme);
    let mut paths = BTreeMap::new();
    for chain in Chain::ALL.iter().filter(|c| c.accepts(key_type)) {
        for index in 0..=3 {
            let path: DerivationPath = index_path(*chain, index).parse().unwrap();
            let Ok(key) = shardvault_mpc::recover_key(backups, &path) else { return Vec::new() };
            paths.insert(path, hex::encode(&key.public_key));
        }
    }
    paths.into_iter().map(|(path, public_key)| HardenedKey { path: path.to_string(), public_key }).collect()
}

/// Node `node`'s signature over its statement for `entry`'s party `party`,
/// as the node makes it: over the files as they are in the entry, and the
/// `hardened` paths it derived.
fn sign_party(entry: &ExportedKeyShare, party: u8, node: u16, hardened: &[HardenedKey]) -> ShareAttestation {
    let digest = |text: &str| -> [u8; 32] {
        Sha256::digest(base64::engine::general_purpose::STANDARD.decode(text).unwrap()).into()
    };
    let statement = BackupStatement {
        organisation: ORGANISATION.into(),
        request_id: REQUEST.into(),
        node: NodeId(node),
        key_id: entry.key_id.parse().unwrap(),
        scheme: entry.scheme.parse().unwrap(),
        threshold: Threshold::new(entry.threshold, entry.party_ids.len() as u8).unwrap(),
        epoch: Epoch(entry.epoch as u32),
        party: PartyId::new(party).unwrap(),
        nodes: entry
            .party_ids
            .iter()
            .map(|p| {
                let node = entry.share_attestations.iter().find(|a| a.party == *p).map_or(u16::from(*p), |a| a.node);
                (PartyId::new(*p).unwrap(), NodeId(node))
            })
            .collect(),
        root_public_key: hex::decode(&entry.root_public_key).unwrap(),
        recipients: entry.encryption_pubkeys.clone(),
        sealed_sha256: digest(&entry.encrypted_shares[usize::from(party) - 1]),
        seed_shares_sha256: entry
            .encrypted_seed_shares
            .iter()
            .filter(|s| s.from_party == party)
            .map(|s| (PartyId::new(s.to_party).unwrap(), digest(&s.encrypted_share)))
            .collect(),
        hardened: hardened.iter().map(|h| (h.path.parse().unwrap(), hex::decode(&h.public_key).unwrap())).collect(),
    };
    let signature = statement.sign(&nodes().identities[&node]);
    ShareAttestation { party, node, signature: hex::encode(signature), hardened: hardened.to_vec() }
}

/// Every party's files signed by its node (with the `hardened` paths it
/// derived), every address attested by all three nodes, and the checksum
/// recomputed: what the cluster would write.
fn sign(mut entry: ExportedKeyShare, hardened: &[HardenedKey]) -> ExportedKeyShare {
    entry.share_attestations =
        entry.party_ids.iter().map(|p| sign_party(&entry, *p, u16::from(*p), hardened)).collect();
    for address in &mut entry.addresses {
        let statement = AddressStatement {
            key_id: entry.key_id.parse().unwrap(),
            scheme: entry.scheme.parse().unwrap(),
            threshold: Threshold::new(entry.threshold, entry.party_ids.len() as u8).unwrap(),
            path: address.path.parse().unwrap(),
            chain: address.chain.parse().unwrap(),
            bech32_prefix: address.bech32_prefix.clone(),
            public_key: hex::decode(&address.public_key).unwrap(),
            address: address.address.clone(),
        };
        address.attestations = nodes()
            .identities
            .iter()
            .map(|(node, identity)| Attestation { node: *node, signature: hex::encode(statement.sign(identity)) })
            .collect();
    }
    entry.checksum = entry.compute_checksum();
    entry
}

/// A recipient: an OpenSSH key pair made by ssh-keygen.
struct Officer {
    key: PathBuf,
    public: String,
}

fn officer(dir: &Path, name: &str, passphrase: &str) -> Officer {
    let key = dir.join(name);
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen (Debian package openssh-client; .ci/run installs it) must be on PATH");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap().trim().to_string();
    Officer { key, public }
}

/// Three officers, the second's key passphrase-protected.
fn officers(dir: &Path) -> Vec<Officer> {
    vec![officer(dir, "alice", ""), officer(dir, "bob", PASSPHRASE), officer(dir, "carol", "")]
}

fn run_dkg(scheme: Scheme, t: u8, n: u8) -> Shares {
    let threshold = Threshold::new(t, n).unwrap();
    let (key_id, session) = (KeyId::random(), SessionId::random());
    local::run(
        threshold.party_ids().map(|me| dkg(scheme, key_id, threshold, me, session, &mut OsRng).unwrap()).collect(),
    )
    .unwrap()
}

fn run_refresh(shares: &Shares) -> Shares {
    let session = SessionId::random();
    local::run(shares.values().map(|s| refresh(s, session, &mut OsRng).unwrap()).collect()).unwrap()
}

/// The child public key at `path` as the cluster derives it: the hardened
/// prefix by the nodes' MPC protocol, then CKDpub.
fn cluster_public_key(shares: &Shares, path: &str) -> Vec<u8> {
    let path: DerivationPath = path.parse().unwrap();
    let session = SessionId::random();
    let tweaks = local::run(
        shares.values().map(|s| derive_hardened(s, &path.hardened_prefix(), session, &mut OsRng).unwrap()).collect(),
    )
    .unwrap();
    let first = shares.keys().next().unwrap();
    extended_public_key(&shares[first], Some(&tweaks[first]), &path).unwrap().public_key
}

/// The cluster's path for `--chain C --index I`.
fn index_path(chain: Chain, index: u32) -> String {
    format!("m/9'/0'/{}'/0'/0'/{index}'", chain.coin_type())
}

/// The address the cluster gives `chain`'s index `index`.
fn cluster_address(shares: &Shares, chain: Chain, index: u32) -> BackupAddress {
    let path = index_path(chain, index);
    let scheme = shares.values().next().unwrap().scheme();
    let public_key = cluster_public_key(shares, &path);
    let address = chain.address(KeyType::from(scheme), &public_key).unwrap();
    BackupAddress {
        chain: chain.name().into(),
        path,
        address,
        bech32_prefix: None,
        public_key: hex::encode(public_key),
        attestations: Vec::new(),
    }
}

/// A package entry as the coordinator assembles it from the nodes' blobs:
/// `backups[i]` sealed to `recipients[i]`, signed by the test cluster.
fn entry(backups: &[ShareBackup], recipients: &[&str], addresses: Vec<BackupAddress>) -> ExportedKeyShare {
    let first = &backups[0];
    let root = hex::encode(&first.root_public_key);
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let lines: Vec<String> = recipients.iter().map(|r| r.to_string()).collect();
    let mut seeds = Vec::new();
    let sealed = backups.iter().zip(recipients).map(|(backup, recipient)| {
        let plaintext = BackupPlaintext::new(ORGANISATION.into(), REQUEST.into(), 1_700_000_000, backup.clone());
        for (to_party, file) in shardvault_backup::seal_seed_shares(&plaintext, &lines).unwrap() {
            seeds.push(EncryptedSeedShare { from_party: backup.party.get(), to_party, encrypted_share: b64(&file) });
        }
        b64(&shardvault_backup::seal(&plaintext, &[recipient.to_string()]).unwrap())
    });
    let sealed: Vec<String> = sealed.collect();
    let entry = ExportedKeyShare {
        key_id: first.key_id.to_string(),
        key_type: if first.scheme == Scheme::EddsaEd25519 { "ed25519" } else { "secp256k1" }.into(),
        scheme: first.scheme.to_string(),
        threshold: first.threshold,
        party_ids: backups.iter().map(|b| b.party.get()).collect(),
        epoch: u64::from(first.epoch.0),
        chaincode: hex::encode(shardvault_mpc::child_chain_code(&first.root_public_key, &DerivationPath::root())),
        root_public_key: root,
        encryption_pubkeys: recipients.iter().map(|r| r.to_string()).collect(),
        encrypted_shares: sealed,
        encrypted_seed_shares: seeds,
        share_attestations: Vec::new(),
        addresses,
        checksum: String::new(),
    };
    sign(entry, &signed_paths(backups))
}

fn backups(shares: &Shares) -> Vec<ShareBackup> {
    shares.values().map(|s| s.backup().unwrap()).collect()
}

fn package(entries: Vec<ExportedKeyShare>) -> BackupPackage {
    BackupPackage {
        format: BACKUP_FORMAT.into(),
        version: BACKUP_VERSION,
        organisation: ORGANISATION.into(),
        request_id: REQUEST.into(),
        timestamp: 1_700_000_000,
        exported_key_shares: entries,
    }
}

/// One key's package, sealed to `officers` in party order, written to `dir`.
fn backup_of(dir: &Path, officers: &[Officer], shares: &Shares, addresses: Vec<BackupAddress>) -> PathBuf {
    let recipients: Vec<&str> = officers.iter().map(|o| o.public.as_str()).collect();
    write(dir, &package(vec![entry(&backups(shares), &recipients, addresses)]))
}

/// Writes the package, and the test cluster's file beside it.
fn write(dir: &Path, package: &BackupPackage) -> PathBuf {
    let file = dir.join(format!("backup-{}.json", SessionId::random()));
    std::fs::write(&file, serde_json::to_vec_pretty(package).unwrap()).unwrap();
    std::fs::write(cluster_file(&file), &nodes().file).unwrap();
    file
}

fn cluster_file(backup: &Path) -> PathBuf {
    backup.with_file_name("cluster.json")
}

/// `shardvault recover --backup FILE --identity … --cluster …` with
/// `args`; the passphrase file is given whenever bob's key is.
fn recover(backup: &Path, identities: &[&Officer], args: &[&str]) -> Output {
    recover_with(backup, identities, args, &["--cluster", cluster_file(backup).to_str().unwrap()])
}

/// The same, without checking the nodes' signatures.
fn recover_unverified(backup: &Path, identities: &[&Officer], args: &[&str]) -> Output {
    recover_with(backup, identities, args, &["--unverified"])
}

fn recover_with(backup: &Path, identities: &[&Officer], args: &[&str], check: &[&str]) -> Output {
    let dir = backup.parent().unwrap();
    let passphrase = dir.join("passphrase");
    std::fs::write(&passphrase, format!("{PASSPHRASE}\n")).unwrap();
    let mut command = Command::new(EXE);
    command.arg("recover").arg("--backup").arg(backup).args(check);
    command.env_remove("SHARDVAULT_BACKUP_PASSPHRASE").env_remove("SHARDVAULT_CLUSTER");
    for identity in identities {
        command.arg("--identity").arg(&identity.key);
    }
    command.arg("--identity-passphrase-file").arg(&passphrase);
    command.args(args).output().unwrap()
}

fn succeeded(output: &Output) -> Value {
    assert!(output.status.success(), "recover failed: {}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("BREAK-GLASS") && stderr.contains("wipe"), "the warning: {stderr}");
    serde_json::from_slice(&output.stdout).unwrap()
}

fn refused(output: &Output, expected: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(
        !output.status.success(),
        "recover should have refused; printed {}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(output.stdout.is_empty(), "a refusal prints no key");
    for text in expected {
        assert!(stderr.contains(text), "expected {text:?} in: {stderr}");
    }
    stderr
}

/// ECDSA 2-of-3: with every officer's key, the Bitcoin and Ethereum keys at
/// the cluster's paths are the cluster's addresses; the WIF and the hex key
/// give those addresses in rust-bitcoin and libsecp256k1; every address the
/// backup lists is rechecked.
#[test]
fn ecdsa_keys_recover_with_the_cluster_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let officers = officers(dir.path());
    let shares = run_dkg(Scheme::EcdsaSecp256k1, 2, 3);
    let bitcoin = cluster_address(&shares, Chain::Bitcoin, 0);
    let ethereum = cluster_address(&shares, Chain::Ethereum, 3);
    let recipients: Vec<&str> = officers.iter().map(|o| o.public.as_str()).collect();
    let backup = write(
        dir.path(),
        &package(vec![entry(&backups(&shares), &recipients, vec![bitcoin.clone(), ethereum.clone()])]),
    );
    let all: Vec<&Officer> = officers.iter().collect();

    let answer =
        succeeded(&recover(&backup, &all, &["--json", "--chain", "bitcoin", "--index", "0", "--verify-addresses"]));
    let key = &answer["keys"][0];
    assert_eq!(answer["scheme"], "ecdsa-secp256k1");
    assert_eq!(answer["root_public_key"], hex::encode(shares.values().next().unwrap().public_key()));
    assert_eq!(answer["parties_opened"], serde_json::json!([1, 2, 3]));
    assert_eq!((key["chain"].as_str(), key["path"].as_str()), (Some("bitcoin"), Some(bitcoin.path.as_str())));
    assert_eq!(key["address"], bitcoin.address);
    assert_eq!(key["private_key_format"], "wif");
    let wif = bitcoin::PrivateKey::from_wif(key["private_key"].as_str().unwrap()).unwrap();
    assert!(wif.compressed && wif.network == bitcoin::NetworkKind::Main);
    let public = wif.public_key(&bitcoin::secp256k1::Secp256k1::new());
    assert_eq!(hex::encode(public.to_bytes()), key["public_key"].as_str().unwrap());
    let p2wpkh = bitcoin::Address::p2wpkh(&bitcoin::CompressedPublicKey(public.inner), bitcoin::Network::Bitcoin);
    assert_eq!(p2wpkh.to_string(), bitcoin.address);
    assert_eq!(answer["verified_addresses"].as_array().unwrap().len(), 2);

    let answer = succeeded(&recover(&backup, &all, &["--json", "--chain", "ethereum", "--index", "3"]));
    let key = &answer["keys"][0];
    assert_eq!(key["address"], ethereum.address);
    let secret = hex::decode(key["private_key"].as_str().unwrap().strip_prefix("0x").unwrap()).unwrap();
    let public = shardvault_testkit::secp256k1_public_key(&secret).unwrap();
    assert_eq!(shardvault_testkit::eip55_address(&public).unwrap(), ethereum.address);

    // Bitcoin testnet: the same key, a tb1 address and a testnet WIF.
    let answer =
        succeeded(&recover(&backup, &all, &["--json", "--chain", "bitcoin", "--index", "0", "--network", "testnet"]));
    let wif = bitcoin::PrivateKey::from_wif(answer["keys"][0]["private_key"].as_str().unwrap()).unwrap();
    assert_eq!(wif.network, bitcoin::NetworkKind::Test);
    assert!(answer["keys"][0]["address"].as_str().unwrap().starts_with("tb1q"));

    // The passphrase from the environment instead of a file; human output.
    let mut command = Command::new(EXE);
    command.args(["recover", "--chain", "litecoin", "--index", "0", "--backup"]).arg(&backup);
    for o in &officers {
        command.arg("--identity").arg(&o.key);
    }
    // The cluster file from the environment too.
    command.env("SHARDVAULT_CLUSTER", cluster_file(&backup));
    let human = command.env("SHARDVAULT_BACKUP_PASSPHRASE", PASSPHRASE).output().unwrap();
    assert!(human.status.success(), "{}", String::from_utf8_lossy(&human.stderr));
    let text = String::from_utf8(human.stdout).unwrap();
    let litecoin = Chain::Litecoin
        .address(KeyType::EcdsaSecp256k1, &cluster_public_key(&shares, &index_path(Chain::Litecoin, 0)))
        .unwrap();
    assert!(text.contains(&format!("address: {litecoin}")) && text.contains("private_key (wif): T"), "{text}");
}

/// Any t identities rebuild the root key (checked against the root public
/// key by libsecp256k1) and a hardened path, the missing party's chain seed
/// coming from the seed shares; without those shares the hardened path is
/// refused naming the missing party.
#[test]
fn t_identities_recover_the_root_and_every_hardened_path_with_the_seed_shares() {
    let dir = tempfile::tempdir().unwrap();
    let officers = officers(dir.path());
    let shares = run_dkg(Scheme::EcdsaSecp256k1, 2, 3);
    let recipients: Vec<&str> = officers.iter().map(|o| o.public.as_str()).collect();
    let backup = backup_of(dir.path(), &officers, &shares, vec![]);
    for pair in [[0, 1], [1, 2], [0, 2]] {
        let identities: Vec<&Officer> = pair.iter().map(|i| &officers[*i]).collect();
        let answer = succeeded(&recover(&backup, &identities, &["--json", "--path", "m", "--chain", "ethereum"]));
        let secret =
            hex::decode(answer["keys"][0]["private_key"].as_str().unwrap().strip_prefix("0x").unwrap()).unwrap();
        let public = shardvault_testkit::secp256k1_public_key(&secret).unwrap();
        assert_eq!(public, shares.values().next().unwrap().public_key(), "{pair:?}");
    }
    // Any two officers recover a hardened path: the third party's chain
    // seed comes from the seed shares its node sealed to them.
    let path = "m/9'/0'/60'/0'/0'/0'";
    let expected = cluster_public_key(&shares, path);
    for pair in [[0, 1], [1, 2], [0, 2]] {
        let identities: Vec<&Officer> = pair.iter().map(|i| &officers[*i]).collect();
        let answer = succeeded(&recover(&backup, &identities, &["--json", "--chain", "ethereum", "--index", "0"]));
        let secret =
            hex::decode(answer["keys"][0]["private_key"].as_str().unwrap().strip_prefix("0x").unwrap()).unwrap();
        let public = shardvault_testkit::secp256k1_public_key(&secret).unwrap();
        assert_eq!(public, expected, "{pair:?}");
    }
    // A package without seed shares (or with too few) names what is missing.
    let mut bare = entry(&backups(&shares), &recipients, vec![]);
    bare.encrypted_seed_shares.retain(|s| s.from_party != 3);
    bare.checksum = bare.compute_checksum();
    let bare = write(dir.path(), &package(vec![bare]));
    let output = recover(&bare, &[&officers[0], &officers[1]], &["--json", "--chain", "ethereum", "--index", "0"]);
    refused(&output, &["hardened", "parties 1, 2", "party 3", officers[2].public.as_str()]);
}

/// A backup taken after a refresh: any two of the three officers recover,
/// for ECDSA and Ed25519, a hardened path the cluster derived before the
/// refresh and one it derived after. Each printed private key gives the
/// cluster's child public key (libsecp256k1, curve25519-dalek).
#[test]
fn t_identities_recover_hardened_paths_derived_before_and_after_a_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let officers = officers(dir.path());
    for (scheme, chain) in [(Scheme::EcdsaSecp256k1, Chain::Ethereum), (Scheme::EddsaEd25519, Chain::Solana)] {
        let shares = run_dkg(scheme, 2, 3);
        let before = cluster_public_key(&shares, &index_path(chain, 1));
        let refreshed = run_refresh(&shares);
        assert_eq!(
            cluster_public_key(&refreshed, &index_path(chain, 1)),
            before,
            "{scheme}: a refresh keeps addresses"
        );
        let after = cluster_public_key(&refreshed, &index_path(chain, 2));
        let backup = backup_of(dir.path(), &officers, &refreshed, vec![]);
        for pair in [[0, 1], [1, 2], [0, 2]] {
            let identities: Vec<&Officer> = pair.iter().map(|i| &officers[*i]).collect();
            for (index, expected) in [("1", &before), ("2", &after)] {
                let args = ["--json", "--chain", chain.name(), "--index", index];
                let answer = succeeded(&recover(&backup, &identities, &args));
                assert_eq!(answer["epoch"], 1, "{answer}");
                let printed = answer["keys"][0]["private_key"].as_str().unwrap();
                let secret = hex::decode(printed.trim_start_matches("0x")).unwrap();
                let public = match scheme {
                    Scheme::EddsaEd25519 => {
                        let scalar = curve25519_dalek::Scalar::from_canonical_bytes(secret.try_into().unwrap());
                        let scalar = Option::<curve25519_dalek::Scalar>::from(scalar).expect("a canonical scalar");
                        curve25519_dalek::EdwardsPoint::mul_base(&scalar).compress().to_bytes().to_vec()
                    }
                    _ => shardvault_testkit::secp256k1_public_key(&secret).unwrap(),
                };
                assert_eq!(&public, expected, "{scheme} index {index} from officers {pair:?}");
            }
        }
    }
}

/// BIP340 2-of-3: the untweaked internal key's WIF gives, through
/// rust-bitcoin's BIP86 tweak, the cluster's P2TR address; a PSBT signed by
/// `recover --sign` is accepted by Bitcoin Core's interpreter.
#[test]
fn a_taproot_key_recovers_and_signs_a_psbt_bitcoin_core_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let officers = officers(dir.path());
    let shares = run_dkg(Scheme::SchnorrSecp256k1, 2, 3);
    let address = cluster_address(&shares, Chain::Bitcoin, 1);
    let backup = backup_of(dir.path(), &officers, &shares, vec![address.clone()]);
    let all: Vec<&Officer> = officers.iter().collect();
    let public = cluster_public_key(&shares, &address.path);
    let sample = shardvault_chains::sample::transfer(Chain::Bitcoin, KeyType::SchnorrSecp256k1, &public).unwrap();
    let psbt = dir.path().join("spend.psbt");
    std::fs::write(&psbt, &sample.unsigned).unwrap();

    let args = ["--json", "--chain", "bitcoin", "--index", "1", "--verify-addresses", "--sign", psbt.to_str().unwrap()];
    let answer = succeeded(&recover(&backup, &all, &args));
    let key = &answer["keys"][0];
    assert_eq!(key["address"], address.address);
    let wif = bitcoin::PrivateKey::from_wif(key["private_key"].as_str().unwrap()).unwrap();
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let internal = wif.public_key(&secp).inner.x_only_public_key().0;
    assert_eq!(bitcoin::Address::p2tr(&secp, internal, None, bitcoin::Network::Bitcoin).to_string(), address.address);
    assert!(key["import"].as_str().unwrap().contains("tr(WIF)"));

    let signed = &answer["signed"];
    let tx = hex::decode(signed["tx_hex"].as_str().unwrap()).unwrap();
    let psbt = bitcoin::Psbt::deserialize(
        &base64::engine::general_purpose::STANDARD.decode(signed["psbt"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let spent: Vec<(Vec<u8>, u64)> = psbt
        .inputs
        .iter()
        .map(|i| i.witness_utxo.as_ref().map(|o| (o.script_pubkey.to_bytes(), o.value.to_sat())).unwrap())
        .collect();
    for index in 0..spent.len() {
        shardvault_testkit::bitcoin_core_verifies(&tx, index, &spent).unwrap();
    }
    assert_eq!(signed["txid"], signed["id"]);
}

/// Ed25519 2-of-3: the scalar (labelled as one) is the Solana address's key;
/// a Solana transfer signed by `recover --sign` verifies under the address
/// with ed25519-dalek's strict verification, and an EVM transfer signed by
/// a recovered ECDSA key recovers to its address.
#[test]
fn recovered_keys_sign_solana_and_ethereum_transfers_offline() {
    let dir = tempfile::tempdir().unwrap();
    let officers = officers(dir.path());
    let all: Vec<&Officer> = officers.iter().collect();
    let recipients: Vec<&str> = officers.iter().map(|o| o.public.as_str()).collect();
    let ed = run_dkg(Scheme::EddsaEd25519, 2, 3);
    let ec = run_dkg(Scheme::EcdsaSecp256k1, 2, 3);
    let solana = cluster_address(&ed, Chain::Solana, 0);
    let ethereum = cluster_address(&ec, Chain::Ethereum, 0);
    let backup = write(
        dir.path(),
        &package(vec![
            entry(&backups(&ed), &recipients, vec![solana.clone()]),
            entry(&backups(&ec), &recipients, vec![ethereum.clone()]),
        ]),
    );
    let ed_id = ed.values().next().unwrap().key_id().to_string();
    let ec_id = ec.values().next().unwrap().key_id().to_string();

    let public = cluster_public_key(&ed, &solana.path);
    let sample = shardvault_chains::sample::transfer(Chain::Solana, KeyType::Ed25519, &public).unwrap();
    let unsigned = dir.path().join("solana.b64");
    std::fs::write(&unsigned, base64::engine::general_purpose::STANDARD.encode(&sample.unsigned)).unwrap();
    let args =
        ["--json", "--key", ed_id.as_str(), "--chain", "solana", "--index", "0", "--sign", unsigned.to_str().unwrap()];
    let answer = succeeded(&recover(&backup, &all, &args));
    let key = &answer["keys"][0];
    assert_eq!(key["address"], solana.address);
    assert_eq!(key["private_key_format"], "ed25519-scalar-le");
    let scalar: [u8; 32] = hex::decode(key["private_key"].as_str().unwrap()).unwrap().try_into().unwrap();
    let expanded = ed25519_dalek::hazmat::ExpandedSecretKey {
        scalar: Option::from(curve25519_dalek::Scalar::from_canonical_bytes(scalar)).unwrap(),
        hash_prefix: [0; 32],
    };
    assert_eq!(ed25519_dalek::VerifyingKey::from(&expanded).as_bytes(), public.as_slice());
    let signed = &answer["signed"];
    let signature = hex::decode(signed["signature"].as_str().unwrap()).unwrap();
    shardvault_testkit::verify_ed25519(&public, &sample.unsigned, &signature).unwrap();
    assert_eq!(signed["id"], bs58::encode(&signature).into_string());
    let wire =
        base64::engine::general_purpose::STANDARD.decode(signed["transaction_base64"].as_str().unwrap()).unwrap();
    assert!(wire.ends_with(&sample.unsigned) && wire[1..65] == signature[..], "[1 signature][message]");

    let public = cluster_public_key(&ec, &ethereum.path);
    let sample = shardvault_chains::sample::transfer(Chain::Ethereum, KeyType::EcdsaSecp256k1, &public).unwrap();
    let unsigned = dir.path().join("eth.hex");
    std::fs::write(&unsigned, format!("0x{}\n", hex::encode(&sample.unsigned))).unwrap();
    let args = [
        "--json",
        "--key",
        ec_id.as_str(),
        "--chain",
        "ethereum",
        "--index",
        "0",
        "--sign",
        unsigned.to_str().unwrap(),
    ];
    let signed = succeeded(&recover(&backup, &all, &args))["signed"].clone();
    let digest = shardvault_testkit::keccak256(&sample.unsigned);
    assert_eq!(signed["digest"], hex::encode(digest));
    let signature = hex::decode(signed["signature"].as_str().unwrap()).unwrap();
    let recovery_id = signed["recovery_id"].as_u64().unwrap() as u8;
    shardvault_testkit::verify_ecdsa(&public, &digest, &signature, recovery_id).unwrap();
    let raw = hex::decode(signed["raw"].as_str().unwrap().strip_prefix("0x").unwrap()).unwrap();
    assert_eq!(signed["hash"], format!("0x{}", hex::encode(shardvault_testkit::keccak256(&raw))));

    // Several keys and no --key: refused, naming them.
    let output = recover(&backup, &all, &["--json", "--chain", "solana", "--index", "0"]);
    refused(&output, &["--key", ed_id.as_str(), &ec_id]);
    // A transaction that is not this key's: refused by the nodes' key check.
    let other = shardvault_chains::sample::transfer(Chain::Solana, KeyType::Ed25519, &[0x3b; 32]).unwrap();
    std::fs::write(&unsigned, hex::encode(&other.unsigned)).unwrap();
    let args =
        ["--json", "--key", ed_id.as_str(), "--chain", "solana", "--index", "0", "--sign", unsigned.to_str().unwrap()];
    refused(&recover(&backup, &all, &args), &["not this key's to sign"]);
}

/// `--sign` for the other families: each signature verifies, with
/// libsecp256k1 or ed25519-dalek, over what the chain's specification says
/// is signed (written out here), under the cluster's key for that address;
/// Litecoin's PSBT is accepted by Bitcoin Core's interpreter.
#[test]
fn tron_cosmos_litecoin_aptos_and_sui_transactions_are_signed_offline() {
    let dir = tempfile::tempdir().unwrap();
    let officers = officers(dir.path());
    let all: Vec<&Officer> = officers.iter().collect();
    let recipients: Vec<&str> = officers.iter().map(|o| o.public.as_str()).collect();
    let ed = run_dkg(Scheme::EddsaEd25519, 2, 3);
    let ec = run_dkg(Scheme::EcdsaSecp256k1, 2, 3);
    let backup = write(
        dir.path(),
        &package(vec![entry(&backups(&ed), &recipients, vec![]), entry(&backups(&ec), &recipients, vec![])]),
    );
    let secp = bitcoin::secp256k1::Secp256k1::verification_only();
    for (chain, shares) in
        [(Chain::Tron, &ec), (Chain::Cosmos, &ec), (Chain::Litecoin, &ec), (Chain::Aptos, &ed), (Chain::Sui, &ed)]
    {
        let scheme = shares.values().next().unwrap().scheme();
        let public = cluster_public_key(shares, &index_path(chain, 2));
        let sample = shardvault_chains::sample::transfer(chain, KeyType::from(scheme), &public).unwrap();
        let file = dir.path().join(format!("{chain}.tx"));
        std::fs::write(&file, &sample.unsigned).unwrap();
        let key_id = shares.values().next().unwrap().key_id().to_string();
        let args = [
            "--json",
            "--key",
            key_id.as_str(),
            "--chain",
            chain.name(),
            "--index",
            "2",
            "--network",
            sample.network,
            "--sign",
            file.to_str().unwrap(),
        ];
        let answer = succeeded(&recover(&backup, &all, &args));
        assert_eq!(answer["keys"][0]["public_key"], hex::encode(&public), "{chain}");
        let signed = &answer["signed"];
        let signature = hex::decode(signed["signature"].as_str().unwrap_or_default()).unwrap();
        match chain {
            Chain::Tron | Chain::Cosmos => {
                // Both sign sha256 of the bytes the SDK gave (Tron's raw_data, Cosmos's SignDoc).
                let digest = shardvault_testkit::sha256(&sample.unsigned);
                let message = bitcoin::secp256k1::Message::from_digest(digest);
                let sig = bitcoin::secp256k1::ecdsa::Signature::from_compact(&signature[..64]).unwrap();
                let key = bitcoin::secp256k1::PublicKey::from_slice(&public).unwrap();
                secp.verify_ecdsa(&message, &sig, &key).unwrap_or_else(|e| panic!("{chain}: {e}"));
            }
            Chain::Litecoin => {
                let tx = hex::decode(signed["tx_hex"].as_str().unwrap()).unwrap();
                let psbt = base64::engine::general_purpose::STANDARD.decode(signed["psbt"].as_str().unwrap()).unwrap();
                let psbt = bitcoin::Psbt::deserialize(&psbt).unwrap();
                let spent: Vec<(Vec<u8>, u64)> = psbt
                    .inputs
                    .iter()
                    .map(|i| i.witness_utxo.as_ref().map(|o| (o.script_pubkey.to_bytes(), o.value.to_sat())).unwrap())
                    .collect();
                for index in 0..spent.len() {
                    shardvault_testkit::bitcoin_core_verifies(&tx, index, &spent).unwrap();
                }
            }
            Chain::Aptos => {
                // sha3-256("APTOS::RawTransaction") ‖ the BCS RawTransaction.
                let message = [&shardvault_testkit::sha3_256(b"APTOS::RawTransaction")[..], &sample.unsigned].concat();
                shardvault_testkit::verify_ed25519(&public, &message, &signature).unwrap();
            }
            _ => {
                // Sui: flag 0x00 ‖ signature ‖ key, over blake2b-256(intent [0, 0, 0] ‖ TransactionData).
                assert_eq!((signature[0], &signature[65..]), (0, public.as_slice()));
                let digest = shardvault_testkit::blake2b256(&[&[0u8, 0, 0][..], &sample.unsigned].concat());
                shardvault_testkit::verify_ed25519(&public, &digest, &signature[1..65]).unwrap();
            }
        }
    }
}

/// Every refusal the issue names: wrong identity, too few shares, mixed
/// epochs, another key's share, a tampered checksum, a tampered age file,
/// a wrong passphrase, an address list that is not the key's.
#[test]
fn bad_backups_and_identities_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let officers = officers(dir.path());
    let stranger = officer(dir.path(), "mallory", "");
    let recipients: Vec<&str> = officers.iter().map(|o| o.public.as_str()).collect();
    let shares = run_dkg(Scheme::EcdsaSecp256k1, 2, 3);
    let good = entry(&backups(&shares), &recipients, vec![cluster_address(&shares, Chain::Ethereum, 0)]);
    let all: Vec<&Officer> = officers.iter().collect();
    let root = ["--json", "--path", "m", "--chain", "ethereum"];
    let backup = write(dir.path(), &package(vec![good.clone()]));

    let stderr = refused(&recover(&backup, &[&stranger], &root), &["wrong identity", "party 1: ssh-ed25519"]);
    assert!(stderr.contains(&officers[0].public));
    refused(
        &recover(&backup, &[&officers[2], &stranger], &root),
        &["too few shares", "needs 2", "parties 3", "party 1 ("],
    );

    // Party 2's place holds its share of the next epoch (after a refresh).
    let refreshed = backups(&run_refresh(&shares));
    let mut mixed = backups(&shares);
    mixed[1] = refreshed[1].clone();
    let backup = write(dir.path(), &package(vec![entry(&mixed, &recipients, vec![])]));
    refused(&recover(&backup, &all, &root), &["epoch 1", "different epochs"]);

    // Party 2's place holds party 2's share of another key.
    let mut spliced = backups(&shares);
    spliced[1] = backups(&run_dkg(Scheme::EcdsaSecp256k1, 2, 3))[1].clone();
    let backup = write(dir.path(), &package(vec![entry(&spliced, &recipients, vec![])]));
    refused(&recover(&backup, &all, &root), &["different keys"]);

    // A checksum that does not match.
    let mut damaged = good.clone();
    damaged.encrypted_shares.swap(0, 2);
    let backup = write(dir.path(), &package(vec![damaged]));
    refused(&recover(&backup, &all, &root), &["checksum", "tampered"]);

    // An age file with one byte changed, under a recomputed checksum: its
    // node did not sign it, so the other two parties recover the key; not
    // checking signatures, it is caught when it fails to decrypt.
    let mut tampered = good.clone();
    let mut blob = base64::engine::general_purpose::STANDARD.decode(&tampered.encrypted_shares[0]).unwrap();
    *blob.last_mut().unwrap() ^= 1;
    tampered.encrypted_shares[0] = base64::engine::general_purpose::STANDARD.encode(blob);
    tampered.checksum = tampered.compute_checksum();
    let backup = write(dir.path(), &package(vec![tampered]));
    let output = recover(&backup, &all, &root);
    assert_eq!(succeeded(&output)["parties_opened"], serde_json::json!([2, 3]));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not using party 1's files: node 1's signature"));
    refused(&recover(&backup, &[&officers[0], &officers[2]], &root), &["too few shares", "not signed by its node"]);
    refused(&recover_unverified(&backup, &all, &root), &["party 1", "does not decrypt", "tampered"]);

    // Recipients listed in another order than the shares are sealed to:
    // every node signed the order it sealed to.
    let mut swapped = good.clone();
    swapped.encryption_pubkeys.swap(0, 1);
    swapped.checksum = swapped.compute_checksum();
    let backup = write(dir.path(), &package(vec![swapped]));
    refused(&recover(&backup, &all, &root), &["no share of key", "signed by its node"]);
    refused(&recover_unverified(&backup, &[&officers[0], &officers[2]], &root), &["not encrypted to it", "tampered"]);

    // A listed address that is not the key's: not attested, so not trusted
    // (and not checked); unverified, it is checked and refused.
    let mut lying = good.clone();
    lying.addresses[0].address = "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf".into();
    let backup = write(dir.path(), &package(vec![lying]));
    let output = recover(&backup, &all, &["--json", "--verify-addresses"]);
    assert_eq!(succeeded(&output)["verified_addresses"], serde_json::json!([]));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not trusting the listed address ethereum"));
    let output = recover_unverified(&backup, &all, &["--json", "--verify-addresses"]);
    refused(&output, &["not the recovered key's", "0x7E5F4552"]);

    // A wrong passphrase for bob's key.
    let backup = write(dir.path(), &package(vec![good]));
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not it\n").unwrap();
    let output = Command::new(EXE)
        .arg("recover")
        .arg("--backup")
        .arg(&backup)
        .arg("--cluster")
        .arg(cluster_file(&backup))
        .arg("--identity")
        .arg(&officers[1].key)
        .arg("--identity-passphrase-file")
        .arg(&wrong)
        .args(root)
        .output()
        .unwrap();
    refused(&output, &["wrong passphrase"]);
    // Not a package at all.
    std::fs::write(&backup, b"{\"format\":\"something else\"}").unwrap();
    refused(&recover(&backup, &all, &root), &["not a shardvault backup package"]);
}

/// The coordinator (which knows the officers' public keys) seals a key of
/// its own to them and lists it under the real key's id and root, with the
/// real nodes' signatures copied over: no party counts, so nothing is
/// recovered, where not checking would have printed the forger's key.
#[test]
fn a_package_its_nodes_did_not_seal_recovers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let officers = officers(dir.path());
    let recipients: Vec<&str> = officers.iter().map(|o| o.public.as_str()).collect();
    let all: Vec<&Officer> = officers.iter().collect();
    let root = ["--json", "--path", "m", "--chain", "ethereum"];
    let real = entry(&backups(&run_dkg(Scheme::EcdsaSecp256k1, 2, 3)), &recipients, vec![]);
    let forged_shares = run_dkg(Scheme::EcdsaSecp256k1, 2, 3);
    let mut forged = entry(&backups(&forged_shares), &recipients, vec![]);
    forged.share_attestations = real.share_attestations.clone();
    forged.checksum = forged.compute_checksum();
    let backup = write(dir.path(), &package(vec![forged.clone()]));
    let stderr = refused(&recover(&backup, &all, &root), &["no share of key", "signed by its node"]);
    assert!(stderr.contains("not using party 1's files: node 1's signature does not verify"), "{stderr}");
    // Unsigned altogether (a version 1 package's shape).
    let mut unsigned = forged.clone();
    unsigned.share_attestations.clear();
    unsigned.checksum = unsigned.compute_checksum();
    let backup = write(dir.path(), &package(vec![unsigned]));
    refused(&recover(&backup, &all, &root), &["no node signature"]);
    // Node 3 claims party 1's place (signing a party map that says so):
    // the other nodes signed the real map, so their parties stop counting
    // (node 3's own for party 3 too); too few are left.
    let mut claimed = entry(&backups(&forged_shares), &recipients, vec![]);
    claimed.share_attestations[0].node = 3;
    let paths = claimed.share_attestations[0].hardened.clone();
    claimed.share_attestations[0] = sign_party(&claimed, 1, 3, &paths);
    claimed.checksum = claimed.compute_checksum();
    let backup = write(dir.path(), &package(vec![claimed]));
    let output = recover(&backup, &all, &root);
    let stderr = refused(&output, &["too few shares", "not using party 2's files: node 2's signature does not verify"]);
    assert!(stderr.contains("not using party 3's files"), "{stderr}");
    // Neither --cluster nor --unverified: refused before any identity is read.
    let output = recover_with(&backup, &all, &root, &[]);
    refused(&output, &["--cluster FILE", "--unverified"]);
    // A version 1 package (from before signatures): refused with the cluster
    // file, read with --unverified, which overrides SHARDVAULT_CLUSTER.
    let mut old = entry(&backups(&forged_shares), &recipients, vec![]);
    old.share_attestations.clear();
    old.checksum = old.compute_checksum();
    let mut v1 = package(vec![old]);
    v1.version = 1;
    let backup = write(dir.path(), &v1);
    refused(&recover(&backup, &all, &root), &["no node signature", "version 1"]);
    let output = Command::new(EXE)
        .args(["--json", "recover", "--unverified", "--backup"])
        .arg(&backup)
        .args(["--identity", officers[0].key.to_str().unwrap(), "--identity", officers[2].key.to_str().unwrap()])
        .args(root)
        .env("SHARDVAULT_CLUSTER", cluster_file(&backup))
        .output()
        .unwrap();
    assert_eq!(succeeded(&output)["parties_opened"], serde_json::json!([1, 3]));
    // Unchecked, the forgery goes through: what the signatures prevent.
    let backup = write(dir.path(), &package(vec![forged]));
    let answer = succeeded(&recover_unverified(&backup, &all, &root));
    let secret = hex::decode(answer["keys"][0]["private_key"].as_str().unwrap().strip_prefix("0x").unwrap()).unwrap();
    let forger = forged_shares.values().next().unwrap().public_key().to_vec();
    assert_eq!(shardvault_testkit::secp256k1_public_key(&secret).unwrap(), forger);
}

/// A hostile node seals a wrong chain seed (and signs it: they are its own
/// files), as seed shares or in its own share file. The root checks out;
/// the hardened paths every node signed in its backup statement do not, so
/// recovery refuses — also when the coordinator strips the address list,
/// whatever path is asked for, and whichever officers are present.
#[test]
fn a_hostile_nodes_wrong_chain_seed_is_caught_by_the_signed_hardened_paths() {
    let dir = tempfile::tempdir().unwrap();
    let officers = officers(dir.path());
    let recipients: Vec<&str> = officers.iter().map(|o| o.public.as_str()).collect();
    let shares = run_dkg(Scheme::EcdsaSecp256k1, 2, 3);
    let honest_paths = signed_paths(&backups(&shares));
    let ethereum = cluster_address(&shares, Chain::Ethereum, 0);
    let mut lied = backups(&shares);
    lied[2].chain_seed = backups(&run_dkg(Scheme::EcdsaSecp256k1, 2, 3))[2].chain_seed.clone();
    let honest = entry(&backups(&shares), &recipients, vec![ethereum.clone()]);
    let wrong = entry(&lied, &recipients, vec![ethereum]);
    // Party 3's own share is the real one; only its seed shares lie.
    let mut seed_shares_lie = wrong.clone();
    seed_shares_lie.encrypted_shares[2] = honest.encrypted_shares[2].clone();
    // Party 3's seed shares are the real ones; its own file lies.
    let mut own_file_lies = honest.clone();
    own_file_lies.encrypted_shares[2] = wrong.encrypted_shares[2].clone();
    let refusal = ["a chain seed in this package is wrong"];
    // Any index: nothing at index 7 was derived, and the addresses are gone.
    let unlisted = ["--json", "--chain", "ethereum", "--index", "7"];
    for (hostile, liars_officer_needed) in [(seed_shares_lie, false), (own_file_lies, true)] {
        let mut hostile = sign(hostile, &honest_paths);
        hostile.addresses.clear();
        hostile.checksum = hostile.compute_checksum();
        let backup = write(dir.path(), &package(vec![hostile]));
        let (caught, fine) = match liars_officer_needed {
            false => ([&officers[0], &officers[1]], [&officers[0], &officers[2]]),
            true => ([&officers[0], &officers[2]], [&officers[0], &officers[1]]),
        };
        refused(&recover(&backup, &caught, &unlisted), &refusal);
        let answer = succeeded(&recover(&backup, &fine, &unlisted));
        assert_eq!(answer["seeds_checked"], honest_paths.len(), "{answer}");
        assert_eq!(answer["keys"][0]["address"], cluster_address(&shares, Chain::Ethereum, 7).address);
    }
    // A package no node listed a hardened path in cannot check the seeds.
    let mut none = sign(honest, &[]);
    none.addresses.clear();
    none.checksum = none.compute_checksum();
    let backup = write(dir.path(), &package(vec![none]));
    let pair = [&officers[0], &officers[1]];
    refused(&recover(&backup, &pair, &unlisted), &["no hardened path its nodes signed", "--unchecked-seeds"]);
    let answer = succeeded(&recover(&backup, &pair, &[&unlisted[..], &["--unchecked-seeds"]].concat()));
    assert_eq!(answer["seeds_checked"], 0);
    // The root needs no seed.
    succeeded(&recover(&backup, &pair, &["--json", "--path", "m", "--chain", "ethereum"]));
}

// --- The chains' own software (run by .ci/run; see tools/recover_check.py) ---

/// What `tools/recover_check.py` (embit, eth_account) says each key is.
fn python_check(checks: &Value) -> Value {
    python("SHARDVAULT_RECOVER_PYTHON", "recover_check.py", checks)
}

/// Runs `tools/SCRIPT` with the python `variable` names, `input` on stdin;
/// its JSON answer.
fn python(variable: &str, script: &str, input: &Value) -> Value {
    let python =
        std::env::var(variable).unwrap_or_else(|_| panic!("{variable} names a python with tools/requirements-*.txt"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools").join(script);
    let mut child = Command::new(python)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A transfer signed offline by `recover --sign` with a key two of the
/// three officers recovered executes on py-evm (eth-tester): its sender is
/// the cluster's address and the recipient gains its value.
#[test]
#[ignore = "needs eth-tester[py-evm] (PyPI); run by .ci/run's EVM step"]
fn a_transfer_signed_by_a_recovered_evm_key_executes_on_py_evm() {
    let dir = tempfile::tempdir().unwrap();
    let officers = officers(dir.path());
    let ec = run_dkg(Scheme::EcdsaSecp256k1, 2, 3);
    let ethereum = cluster_address(&ec, Chain::Ethereum, 0);
    let backup = backup_of(dir.path(), &officers, &ec, vec![ethereum.clone()]);
    let public = cluster_public_key(&ec, &ethereum.path);
    let sample = shardvault_chains::sample::transfer(Chain::Ethereum, KeyType::EcdsaSecp256k1, &public).unwrap();
    let unsigned = dir.path().join("transfer.hex");
    std::fs::write(&unsigned, format!("0x{}\n", hex::encode(&sample.unsigned))).unwrap();
    let args = ["--json", "--chain", "ethereum", "--index", "0", "--sign", unsigned.to_str().unwrap()];
    let signed = succeeded(&recover(&backup, &[&officers[0], &officers[2]], &args))["signed"].clone();
    let recipient = "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf";
    let request =
        serde_json::json!({ "chain_id": 1, "sender": ethereum.address, "to": recipient, "raw": [signed["raw"]] });
    let result = python("SHARDVAULT_EVM_PYTHON", "evm_execute.py", &request);
    assert_eq!(result["recipient_gain_wei"].as_u64(), Some(10_000_000_000_000_000), "{result}");
    assert_eq!(result["senders"][0].as_str().unwrap().to_lowercase(), ethereum.address.to_lowercase());
}

/// embit imports the printed Bitcoin WIFs (P2WPKH and, as tr(WIF), P2TR),
/// pycoin the Litecoin WIFs and eth_account the printed hex key: each gives
/// the cluster's address, on the network asked for.
#[test]
#[ignore = "needs embit, pycoin and eth_account (PyPI); run by .ci/run's recovery step"]
fn wallets_libraries_import_the_printed_keys_at_the_cluster_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let officers = officers(dir.path());
    let all: Vec<&Officer> = officers.iter().collect();
    let recipients: Vec<&str> = officers.iter().map(|o| o.public.as_str()).collect();
    let ec = run_dkg(Scheme::EcdsaSecp256k1, 2, 3);
    let tr = run_dkg(Scheme::SchnorrSecp256k1, 2, 3);
    let backup = write(
        dir.path(),
        &package(vec![entry(&backups(&ec), &recipients, vec![]), entry(&backups(&tr), &recipients, vec![])]),
    );
    let id = |shares: &Shares| shares.values().next().unwrap().key_id().to_string();
    let key = |shares: &Shares, chain: &str, network: &str| {
        let key_id = id(shares);
        let args = ["--json", "--key", key_id.as_str(), "--chain", chain, "--index", "0", "--network", network];
        succeeded(&recover(&backup, &all, &args))["keys"][0].clone()
    };
    let mut checks = Vec::new();
    let mut expected = Vec::new();
    for (shares, kind, chain, network) in [
        (&ec, "wif-p2wpkh", Chain::Bitcoin, "bitcoin"),
        (&ec, "wif-p2wpkh", Chain::Bitcoin, "testnet"),
        (&tr, "wif-p2tr", Chain::Bitcoin, "bitcoin"),
        (&ec, "ltc-wif-p2wpkh", Chain::Litecoin, "mainnet"),
        (&ec, "ltc-wif-p2wpkh", Chain::Litecoin, "testnet"),
        (&ec, "eth", Chain::Ethereum, "mainnet"),
    ] {
        let printed = key(shares, chain.name(), network);
        let public = cluster_public_key(shares, &index_path(chain, 0));
        let key_type = KeyType::from(shares.values().next().unwrap().scheme());
        let cluster = match chain {
            Chain::Bitcoin | Chain::Litecoin => {
                let script = shardvault_chains::psbt::key_script(key_type, &public).unwrap();
                shardvault_chains::psbt::network(chain, network).unwrap().address(&script).unwrap()
            }
            _ => chain.address(key_type, &public).unwrap(),
        };
        assert_eq!(printed["address"], cluster);
        checks.push(serde_json::json!({ "kind": kind, "key": printed["private_key"], "network": network }));
        expected.push(cluster);
    }
    assert_eq!(python_check(&Value::from(checks)), serde_json::json!(expected));
}

/// TronWeb and cosmjs import the printed 0x-hex keys as their wallets do
/// (`TronWeb.address.fromPrivateKey`, `DirectSecp256k1Wallet.fromKey`):
/// each gives the cluster's address, on Cosmos under every prefix asked for.
#[test]
#[ignore = "needs the chains' SDKs (npm); run by .ci/run's Chain SDKs step"]
fn tron_and_cosmos_wallet_libraries_import_the_printed_keys_at_the_cluster_addresses() {
    let sdks = std::env::var("SHARDVAULT_CHAIN_SDKS").expect("SHARDVAULT_CHAIN_SDKS names tools/chain-sdks");
    let dir = tempfile::tempdir().unwrap();
    let officers = officers(dir.path());
    let all: Vec<&Officer> = officers.iter().collect();
    let ec = run_dkg(Scheme::EcdsaSecp256k1, 2, 3);
    let backup = backup_of(dir.path(), &officers, &ec, vec![]);
    let mut checks = Vec::new();
    let mut expected = Vec::new();
    for (chain, prefix) in [(Chain::Tron, None), (Chain::Cosmos, None), (Chain::Cosmos, Some("osmo"))] {
        let mut args = vec!["--json", "--chain", chain.name(), "--index", "4"];
        args.extend(prefix.map(|prefix| ["--bech32-prefix", prefix]).into_iter().flatten());
        let printed = succeeded(&recover(&backup, &all, &args))["keys"][0].clone();
        let public = cluster_public_key(&ec, &index_path(chain, 4));
        let cluster = match chain {
            Chain::Cosmos => shardvault_chains::cosmos_address(&public, prefix.unwrap_or("cosmos")).unwrap(),
            _ => chain.address(KeyType::EcdsaSecp256k1, &public).unwrap(),
        };
        assert_eq!(printed["address"], cluster);
        assert_eq!(printed["private_key_format"], "hex");
        checks.push(serde_json::json!({ "chain": chain.name(), "key": printed["private_key"], "prefix": prefix }));
        expected.push(cluster);
    }
    let mut library = Command::new("node")
        .arg(format!("{sdks}/import-keys.mjs"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node runs");
    serde_json::to_writer(library.stdin.take().unwrap(), &checks).unwrap();
    let output = library.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_eq!(serde_json::from_slice::<Value>(&output.stdout).unwrap(), serde_json::json!(expected));
}

/// One conversation with the chain's SDK (`tools/chain-sdks/prove.mjs`)
/// about a key recovered offline: the SDK builds transactions for the
/// recovered key's address, `recover --sign` signs them, and a message is
/// signed in the chain's format with the printed scalar; the SDK's verdict.
fn sdk_checks_what_recover_signed(chain: Chain, network: Option<&str>) -> Value {
    use std::io::{BufRead, BufReader, Write};
    let sdks = std::env::var("SHARDVAULT_CHAIN_SDKS").expect("SHARDVAULT_CHAIN_SDKS names tools/chain-sdks");
    let dir = tempfile::tempdir().unwrap();
    let officers = officers(dir.path());
    let all: Vec<&Officer> = officers.iter().collect();
    let ed = run_dkg(Scheme::EddsaEd25519, 2, 3);
    let backup = backup_of(dir.path(), &officers, &ed, vec![]);
    let mut target = vec!["--json", "--chain", chain.name(), "--index", "0"];
    target.extend(network.map(|network| ["--network", network]).into_iter().flatten());
    let printed = succeeded(&recover(&backup, &all, &target))["keys"][0].clone();
    let public = hex::decode(printed["public_key"].as_str().unwrap()).unwrap();
    assert_eq!(public, cluster_public_key(&ed, &index_path(chain, 0)));

    let mut sdk = Command::new("node")
        .arg(format!("{sdks}/prove.mjs"))
        .arg(chain.name())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node runs");
    let mut stdin = sdk.stdin.take().unwrap();
    let mut stdout = BufReader::new(sdk.stdout.take().unwrap());
    let mut read = || {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let value: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("prove.mjs said {line:?}"));
        assert!(value.get("error").is_none(), "{chain}: {}", value["error"]);
        value
    };
    writeln!(stdin, "{}", serde_json::json!({ "public_key": hex::encode(&public) })).unwrap();
    let built = read();
    assert_eq!(built["address"], printed["address"]);
    let mut signed = Vec::new();
    for (i, unsigned) in built["unsigned"].as_array().unwrap().iter().enumerate() {
        let file = dir.path().join(format!("tx{i}.hex"));
        std::fs::write(&file, unsigned.as_str().unwrap()).unwrap();
        let args = [&target[..], &["--sign", file.to_str().unwrap()][..]].concat();
        let answer = succeeded(&recover(&backup, &all, &args))["signed"].clone();
        signed.push(serde_json::json!({ "transaction": answer["transaction"], "signature": answer["signature"], "id": answer["id"] }));
    }
    // A message in the chain's format (Aptos: the AIP-62 full message),
    // signed here with the printed scalar (RFC 8032 over it, any secret
    // nonce prefix); Sui wants its serialized signature (flag, signature, key).
    let text = match chain {
        Chain::Aptos => {
            shardvault_chains::message::aptos_full_message("I control this address: shardvault", "1").into_bytes()
        }
        _ => b"I control this address: shardvault".to_vec(),
    };
    let format = chain.message_format(KeyType::Ed25519).unwrap();
    let message = format.signing_input(&public, &text).unwrap();
    let scalar: [u8; 32] = hex::decode(printed["private_key"].as_str().unwrap()).unwrap().try_into().unwrap();
    let expanded = ed25519_dalek::hazmat::ExpandedSecretKey {
        scalar: Option::from(curve25519_dalek::Scalar::from_canonical_bytes(scalar)).unwrap(),
        hash_prefix: [7; 32],
    };
    let verifying = ed25519_dalek::VerifyingKey::from(&expanded);
    let signature = ed25519_dalek::hazmat::raw_sign::<sha2::Sha512>(&expanded, &message, &verifying).to_bytes();
    let signature = match chain {
        Chain::Sui => [&[0u8][..], &signature, &public].concat(),
        _ => signature.to_vec(),
    };
    let message = serde_json::json!({ "text": hex::encode(&text), "signature": hex::encode(signature) });
    writeln!(stdin, "{}", serde_json::json!({ "signed": signed, "message": message })).unwrap();
    let verdict = read();
    assert!(sdk.wait().unwrap().success());
    verdict
}

/// A Solana transfer the Solana SDK builds for the recovered key's address,
/// signed by `recover --sign`, executes in litesvm.
#[test]
#[ignore = "needs the chains' SDKs (npm); run by .ci/run's Chain SDKs step"]
fn a_solana_transfer_signed_offline_executes_in_litesvm() {
    let verdict = sdk_checks_what_recover_signed(Chain::Solana, None);
    assert_eq!(verdict["executed"].as_array().unwrap().len(), 3, "legacy, v0, v0 with a lookup table");
    assert_eq!(verdict["recipient_balance"], "7500000");
}

/// An Aptos transfer signed offline by `recover --sign`: the Aptos SDK
/// verifies the signature and gives the same transaction hash.
#[test]
#[ignore = "needs the chains' SDKs (npm); run by .ci/run's Chain SDKs step"]
fn an_aptos_transfer_signed_offline_verifies_in_the_aptos_sdk() {
    let verdict = sdk_checks_what_recover_signed(Chain::Aptos, Some("testnet"));
    assert!(verdict["hash"].as_str().is_some_and(|h| h.starts_with("0x")), "{verdict}");
}

/// A Sui payment signed offline by `recover --sign`: the Sui SDK verifies
/// the signature and gives the same digest.
#[test]
#[ignore = "needs the chains' SDKs (npm); run by .ci/run's Chain SDKs step"]
fn a_sui_payment_signed_offline_verifies_in_the_sui_sdk() {
    let verdict = sdk_checks_what_recover_signed(Chain::Sui, None);
    assert!(verdict["digest"].as_str().is_some_and(|d| !d.is_empty()), "{verdict}");
}

/// Offline means offline: in a network namespace with no interface up
/// (`unshare -rn`), recover rebuilds a hardened key and checks it against
/// the nodes' signatures, and strace sees it create no socket at all.
#[test]
fn recover_needs_no_network_and_opens_no_socket() {
    let dir = tempfile::tempdir().unwrap();
    let officers = officers(dir.path());
    let shares = run_dkg(Scheme::EcdsaSecp256k1, 2, 3);
    let ethereum = cluster_address(&shares, Chain::Ethereum, 0);
    let backup = backup_of(dir.path(), &officers, &shares, vec![ethereum.clone()]);
    let trace = dir.path().join("syscalls");
    let output = Command::new("unshare")
        .args(["-rn", "strace", "-f", "-qq", "-e", "trace=socket,connect", "-o"])
        .arg(&trace)
        .arg(EXE)
        .args(["--json", "recover", "--backup"])
        .arg(&backup)
        .arg("--cluster")
        .arg(cluster_file(&backup))
        .arg("--identity")
        .arg(&officers[0].key)
        .arg("--identity")
        .arg(&officers[2].key)
        .args(["--chain", "ethereum", "--index", "0", "--verify-addresses"])
        .env_remove("SHARDVAULT_CLUSTER")
        .output()
        .expect("unshare (util-linux) and strace must be installed (.ci/run installs them)");
    let answer = succeeded(&output);
    assert_eq!(answer["keys"][0]["address"], ethereum.address);
    let calls = std::fs::read_to_string(&trace).unwrap();
    assert!(!calls.contains("socket(") && !calls.contains("connect("), "recover made network calls:\n{calls}");
}

/// An officer's backup key split 3-of-5 (Vault's Shamir format, as `shamir
/// split` writes): three of the five shares stand in for the key file; two
/// do not, and the refusal says so.
#[test]
fn an_identity_given_as_shamir_shares_opens_its_partys_share() {
    let dir = tempfile::tempdir().unwrap();
    let officers = officers(dir.path());
    let shares = run_dkg(Scheme::EcdsaSecp256k1, 2, 3);
    let backup = backup_of(dir.path(), &officers, &shares, vec![]);
    let key = std::fs::read(&officers[2].key).unwrap();
    let pieces = shardvault_shamir::split(&key, 5, 3).unwrap();
    let lines = |n: usize| {
        let text: Vec<String> =
            pieces.iter().skip(1).take(n).map(|p| base64::engine::general_purpose::STANDARD.encode(p)).collect();
        text.join("\n") + "\n"
    };
    for (count, ok) in [(3, true), (4, true), (2, false)] {
        let file = dir.path().join(format!("carol-{count}.shares"));
        std::fs::write(&file, lines(count)).unwrap();
        let output = Command::new(EXE)
            .args(["--json", "recover", "--backup"])
            .arg(&backup)
            .arg("--cluster")
            .arg(cluster_file(&backup))
            .arg("--identity")
            .arg(&officers[0].key)
            .arg("--identity-shares")
            .arg(&file)
            .args(["--path", "m", "--chain", "ethereum"])
            .output()
            .unwrap();
        match ok {
            true => {
                let answer = succeeded(&output);
                assert_eq!(answer["parties_opened"], serde_json::json!([1, 3]), "{answer}");
            }
            false => {
                refused(&output, &["shares", "combine"]);
            }
        }
    }
}
