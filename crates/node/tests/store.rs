//! The node's sealed store: what an operator relies on when a disk is
//! copied, corrupted, or the node crashes mid-refresh.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::Connection;
use shardvault_mpc::{
    derive_hardened, dkg, local, refresh, DerivationPath, KeyId, KeyShare, PartyId, Scheme, SessionId, Threshold,
};
use shardvault_node::{KekSource, Store, StoreError};
use shardvault_vault::KdfParams;

const PASSPHRASE: &[u8] = b"correct horse battery staple";

fn open(path: &Path, passphrase: &[u8]) -> Result<Store, StoreError> {
    Store::open(path, "node-1", KekSource::Passphrase(passphrase, KdfParams::INSECURE_FOR_TESTS))
}

fn key(scheme: Scheme) -> BTreeMap<PartyId, KeyShare> {
    key_with_id(scheme, KeyId::random())
}

fn key_with_id(scheme: Scheme, key_id: KeyId) -> BTreeMap<PartyId, KeyShare> {
    let threshold = Threshold::new(2, 2).unwrap();
    let session = SessionId::random();
    local::run(threshold.party_ids().map(|me| dkg(scheme, key_id, threshold, me, session).unwrap()).collect()).unwrap()
}

fn p1() -> PartyId {
    PartyId::new(1).unwrap()
}

#[test]
fn shares_survive_a_restart_and_are_sealed_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let shares = key(Scheme::EddsaEd25519);
    let share = &shares[&p1()];
    open(&path, PASSPHRASE).unwrap().insert_new_key(share).unwrap();
    let store = open(&path, PASSPHRASE).unwrap();
    assert_eq!(store.keys().unwrap(), vec![share.key_id()]);
    assert_eq!(store.active_share(share.key_id()).unwrap().to_bytes().unwrap(), share.to_bytes().unwrap());
    drop(store);
    // The file holds no window of the encoded share (which contains the secret).
    let encoded = share.to_bytes().unwrap();
    let mut on_disk = std::fs::read(&path).unwrap();
    for extra in ["node.db-wal", "node.db-shm"] {
        on_disk.extend(std::fs::read(dir.path().join(extra)).unwrap_or_default());
    }
    let secret_part = &encoded[encoded.len() - 100..];
    assert!(!on_disk.windows(16).any(|w| secret_part.windows(16).any(|s| s == w)));
}

#[test]
fn a_wrong_passphrase_or_another_nodes_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    open(&path, PASSPHRASE).unwrap();
    let error = open(&path, b"wrong").unwrap_err();
    assert!(error.to_string().contains("passphrase or key file does not match"), "{error}");
    let error =
        Store::open(&path, "node-2", KekSource::Passphrase(PASSPHRASE, KdfParams::INSECURE_FOR_TESTS)).unwrap_err();
    assert!(matches!(error, StoreError::Incompatible(_)), "{error}");
    let keyfile = [7u8; 32];
    let other = dir.path().join("keyfile.db");
    Store::open(&other, "node-1", KekSource::KeyFile(&keyfile)).unwrap();
    assert!(Store::open(&other, "node-1", KekSource::KeyFile(&[8u8; 32])).is_err());
}

#[test]
fn a_corrupted_share_disables_only_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let (a, b) = (key(Scheme::EddsaEd25519), key(Scheme::SchnorrSecp256k1));
    let (a, b) = (&a[&p1()], &b[&p1()]);
    let store = open(&path, PASSPHRASE).unwrap();
    store.insert_new_key(a).unwrap();
    store.insert_new_key(b).unwrap();
    drop(store);
    // A flipped byte inside the sealed blob, then a value of the wrong type.
    for corruption in [
        "UPDATE shares SET sealed = CAST(substr(sealed, 1, 40) || x'00' || substr(sealed, 42) AS BLOB) WHERE key_id = ?1",
        "UPDATE shares SET sealed = 'not a blob' WHERE key_id = ?1",
    ] {
        Connection::open(&path).unwrap().execute(corruption, [a.key_id().as_bytes()]).unwrap();
        let store = open(&path, PASSPHRASE).unwrap();
        let error = store.active_share(a.key_id()).unwrap_err();
        assert!(matches!(error, StoreError::Corrupt { key_id, .. } if key_id == a.key_id()), "{error}");
        assert!(error.to_string().contains("other keys are unaffected"));
        assert_eq!(store.active_share(b.key_id()).unwrap().public_key(), b.public_key());
    }
}

#[test]
fn a_sealed_row_moved_to_another_key_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let (a, b) = (key(Scheme::EddsaEd25519), key(Scheme::EddsaEd25519));
    let store = open(&path, PASSPHRASE).unwrap();
    store.insert_new_key(&a[&p1()]).unwrap();
    store.insert_new_key(&b[&p1()]).unwrap();
    drop(store);
    let db = Connection::open(&path).unwrap();
    db.execute(
        "UPDATE shares SET sealed = (SELECT sealed FROM shares WHERE key_id = ?1) WHERE key_id = ?2",
        [a[&p1()].key_id().as_bytes(), b[&p1()].key_id().as_bytes()],
    )
    .unwrap();
    drop(db);
    assert!(matches!(
        open(&path, PASSPHRASE).unwrap().active_share(b[&p1()].key_id()),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn refresh_is_two_phase_and_a_crash_keeps_the_old_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let shares = key(Scheme::EddsaEd25519);
    let key_id = shares[&p1()].key_id();
    let session = SessionId::random();
    let refreshed = local::run(shares.values().map(|s| refresh(s, session).unwrap()).collect()).unwrap();
    let store = open(&path, PASSPHRASE).unwrap();
    store.insert_new_key(&shares[&p1()]).unwrap();
    store.insert_pending(&refreshed[&p1()]).unwrap();
    drop(store); // crash before every participant confirmed
    let mut store = open(&path, PASSPHRASE).unwrap();
    assert_eq!(store.active_share(key_id).unwrap().epoch().0, 0);
    store.activate(key_id, refreshed[&p1()].epoch()).unwrap();
    assert_eq!(store.active_share(key_id).unwrap().epoch().0, 1);
    assert!(matches!(store.activate(key_id, refreshed[&p1()].epoch()), Err(StoreError::NoPending { .. })));
    let rows: i64 =
        Connection::open(&path).unwrap().query_row("SELECT count(*) FROM shares", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 1, "the old epoch is deleted once the new one is active");
}

#[test]
fn hardened_tweaks_are_cached_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let shares = key(Scheme::EcdsaSecp256k1);
    let path: DerivationPath = "m/9'/0'/60'/0'".parse().unwrap();
    let session = SessionId::random();
    let tweaks = local::run(shares.values().map(|s| derive_hardened(s, &path, session).unwrap()).collect()).unwrap();
    let store = open(&dir.path().join("node.db"), PASSPHRASE).unwrap();
    let key_id = shares[&p1()].key_id();
    assert!(store.tweak(key_id, &path).unwrap().is_none());
    store.put_tweak(&tweaks[&p1()]).unwrap();
    let cached = store.tweak(key_id, &path).unwrap().unwrap();
    assert_eq!(cached.public_key, tweaks[&p1()].public_key);
    assert_eq!(cached.expose_tau(), tweaks[&p1()].expose_tau());
}

#[test]
fn the_sign_log_is_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let store = open(&path, PASSPHRASE).unwrap();
    let key_id = KeyId::random();
    for i in 0..3u8 {
        store.log_signature(key_id, "m/9'/0'/60'/0'/0'/0'", &[i; 32], b"request").unwrap();
    }
    assert_eq!(store.sign_log().unwrap().len(), 3);
    let db = Connection::open(&path).unwrap();
    db.execute("UPDATE sign_log SET signed = x'00' WHERE seq = 2", []).unwrap();
    assert!(matches!(store.sign_log(), Err(StoreError::LogTampered(2))));
    db.execute("DELETE FROM sign_log WHERE seq = 2", []).unwrap();
    assert!(matches!(store.sign_log(), Err(StoreError::LogTampered(3))));
}

#[test]
fn concurrent_appenders_keep_the_sign_log_chained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    drop(open(&path, PASSPHRASE).unwrap());
    let key_id = KeyId::random();
    std::thread::scope(|scope| {
        for worker in 0..4u8 {
            let path = path.clone();
            scope.spawn(move || {
                let store = open(&path, PASSPHRASE).unwrap();
                for i in 0..25u8 {
                    store.log_signature(key_id, "m", &[worker, i], b"request").unwrap();
                }
            });
        }
    });
    assert_eq!(open(&path, PASSPHRASE).unwrap().sign_log().unwrap().len(), 100);
}

#[test]
fn a_known_key_id_is_never_given_to_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let original = key(Scheme::EcdsaSecp256k1);
    let key_id = original[&p1()].key_id();
    let session = SessionId::random();
    let refreshed = local::run(original.values().map(|s| refresh(s, session).unwrap()).collect()).unwrap();
    let mut store = open(&path, PASSPHRASE).unwrap();
    store.insert_new_key(&original[&p1()]).unwrap();
    // Pending only, then active at epoch 1 (epoch 0 deleted): a second DKG's
    // epoch-0 share must be refused either way.
    store.insert_pending(&refreshed[&p1()]).unwrap();
    let shadow = key_with_id(Scheme::EcdsaSecp256k1, key_id);
    assert!(matches!(store.insert_new_key(&shadow[&p1()]), Err(StoreError::KeyExists(id)) if id == key_id));
    store.activate(key_id, refreshed[&p1()].epoch()).unwrap();
    assert!(store.knows_key(key_id).unwrap());
    assert!(matches!(store.insert_new_key(&shadow[&p1()]), Err(StoreError::KeyExists(_))));
    let active = store.active_share(key_id).unwrap();
    assert_eq!(active.public_key(), original[&p1()].public_key());
    assert_eq!(active.epoch().0, 1);
    // Below the store API, the partial unique index keeps one active row per key.
    let db = Connection::open(&path).unwrap();
    let second = db.execute(
        "INSERT INTO shares (key_id, epoch, state, sealed) VALUES (?1, 0, 'active', x'00')",
        [key_id.as_bytes()],
    );
    assert!(second.is_err(), "a second active row was accepted");
}

#[test]
fn a_store_that_already_holds_a_shadowed_key_refuses_to_use_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let (shadowed, other) = (key(Scheme::EddsaEd25519), key(Scheme::EddsaEd25519));
    let key_id = shadowed[&p1()].key_id();
    let session = SessionId::random();
    let refreshed = local::run(shadowed.values().map(|s| refresh(s, session).unwrap()).collect()).unwrap();
    let store = open(&path, PASSPHRASE).unwrap();
    store.insert_new_key(&shadowed[&p1()]).unwrap();
    store.insert_pending(&refreshed[&p1()]).unwrap();
    store.insert_new_key(&other[&p1()]).unwrap();
    drop(store);
    // What an older release could leave behind: two active epochs of one id.
    let db = Connection::open(&path).unwrap();
    db.execute_batch("DROP INDEX shares_one_active; UPDATE shares SET state = 'active';").unwrap();
    drop(db);
    let store = open(&path, PASSPHRASE).unwrap();
    let error = store.active_share(key_id).unwrap_err();
    assert!(error.to_string().contains("more than one active epoch"), "{error}");
    assert_eq!(store.active_share(other[&p1()].key_id()).unwrap().public_key(), other[&p1()].public_key());
    drop(store);
    // Once the operator removed the wrong row, the index comes back on the next start.
    let db = Connection::open(&path).unwrap();
    db.execute("DELETE FROM shares WHERE key_id = ?1 AND epoch = 0", [key_id.as_bytes()]).unwrap();
    drop(db);
    let store = open(&path, PASSPHRASE).unwrap();
    assert_eq!(store.active_share(key_id).unwrap().epoch().0, 1);
    let indexed: i64 = Connection::open(&path)
        .unwrap()
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'shares_one_active'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(indexed, 1);
}

#[test]
fn a_cached_tweak_is_never_replaced_by_another_child_key() {
    let dir = tempfile::tempdir().unwrap();
    let path: DerivationPath = "m/9'/0'/0'/0'".parse().unwrap();
    let shares = key(Scheme::SchnorrSecp256k1);
    let key_id = shares[&p1()].key_id();
    let derive = |shares: &BTreeMap<PartyId, KeyShare>| {
        let session = SessionId::random();
        local::run(shares.values().map(|s| derive_hardened(s, &path, session).unwrap()).collect()).unwrap()
    };
    let (first, again) = (derive(&shares), derive(&shares));
    // The same path under another key that claims the same id: another child key.
    let other = derive(&key_with_id(Scheme::SchnorrSecp256k1, key_id));
    assert_ne!(other[&p1()].public_key, first[&p1()].public_key);
    let store = open(&dir.path().join("node.db"), PASSPHRASE).unwrap();
    store.put_tweak(&first[&p1()]).unwrap();
    store.put_tweak(&again[&p1()]).unwrap();
    let error = store.put_tweak(&other[&p1()]).unwrap_err();
    assert!(matches!(error, StoreError::TweakMismatch { .. }), "{error}");
    let cached = store.tweak(key_id, &path).unwrap().unwrap();
    assert_eq!(cached.public_key, first[&p1()].public_key);
    assert_eq!(cached.expose_tau(), first[&p1()].expose_tau());
}
