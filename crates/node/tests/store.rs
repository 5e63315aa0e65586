//! The node's sealed store: what an operator relies on when a disk is
//! copied, corrupted, or the node crashes mid-refresh.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::Connection;
use sha2::{Digest, Sha256};
use shardvault_mpc::OsRng;
use shardvault_mpc::{
    derive_hardened, dkg, local, refresh, DerivationPath, Epoch, KeyId, KeyShare, PartyId, Scheme, SessionId, Threshold,
};
use shardvault_node::{KekSource, SignIntent, SignLogStatus, Store, StoreError, SIGN_LOG_KEY_ROW};
use shardvault_vault::{KdfParams, Kek};
use shardvault_wire::NodeId;

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
    local::run(
        threshold.party_ids().map(|me| dkg(scheme, key_id, threshold, me, session, &mut OsRng).unwrap()).collect(),
    )
    .unwrap()
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
        "UPDATE shares SET sealed = CAST(substr(sealed, 1, 40) \
         || CASE WHEN substr(sealed, 41, 1) = x'00' THEN x'ff' ELSE x'00' END \
         || substr(sealed, 42) AS BLOB) WHERE key_id = ?1",
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
    let refreshed = local::run(shares.values().map(|s| refresh(s, session, &mut OsRng).unwrap()).collect()).unwrap();
    let store = open(&path, PASSPHRASE).unwrap();
    store.insert_new_key(&shares[&p1()]).unwrap();
    store.insert_pending(&refreshed[&p1()]).unwrap();
    drop(store); // crash before every participant confirmed
    let mut store = open(&path, PASSPHRASE).unwrap();
    assert_eq!(store.active_share(key_id).unwrap().epoch().0, 0);
    store.activate(key_id, refreshed[&p1()].epoch()).unwrap();
    assert_eq!(store.active_share(key_id).unwrap().epoch().0, 1);
    // Activation is idempotent (a repeated or resumed Activate), and never goes back.
    store.activate(key_id, refreshed[&p1()].epoch()).unwrap();
    assert!(matches!(store.activate(key_id, Epoch(0)), Err(StoreError::NoPending { .. })));
    assert_eq!(store.share_at(key_id, refreshed[&p1()].epoch()).unwrap().epoch().0, 1);
    assert!(matches!(store.share_at(key_id, Epoch(0)), Err(StoreError::NoEpoch { .. })));
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
    let tweaks =
        local::run(shares.values().map(|s| derive_hardened(s, &path, session, &mut OsRng).unwrap()).collect()).unwrap();
    let store = open(&dir.path().join("node.db"), PASSPHRASE).unwrap();
    let key_id = shares[&p1()].key_id();
    assert!(store.tweak(key_id, &path).unwrap().is_none());
    store.put_tweak(&tweaks[&p1()]).unwrap();
    let cached = store.tweak(key_id, &path).unwrap().unwrap();
    assert_eq!(cached.public_key, tweaks[&p1()].public_key);
    assert_eq!(cached.expose_tau(), tweaks[&p1()].expose_tau());
}

/// One signing job's intent, as the runner logs it before sending anything.
fn intent(store: &Store, key_id: KeyId, signed: &[u8]) -> i64 {
    let signers = BTreeMap::from([(p1(), NodeId(1)), (PartyId::new(2).unwrap(), NodeId(2))]);
    store
        .log_intent(&SignIntent {
            key_id,
            path: "m/9'/0'/60'/0'/0'/0'",
            signed,
            request: b"request",
            session: SessionId::random(),
            signers: &signers,
        })
        .unwrap()
}

/// A store with three logged jobs, the second completed.
fn logged_store(path: &Path) -> Store {
    let store = open(path, PASSPHRASE).unwrap();
    let key_id = KeyId::random();
    for i in 0..3u8 {
        let seq = intent(&store, key_id, &[i; 32]);
        if i == 1 {
            store.log_completion(seq, &[0x51; 64]).unwrap();
        }
    }
    store
}

#[test]
fn the_sign_log_is_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let store = open(&path, PASSPHRASE).unwrap();
    let key_id = KeyId::random();
    for i in 0..3u8 {
        intent(&store, key_id, &[i; 32]);
    }
    assert_eq!(store.sign_log().unwrap().len(), 3);
    let db = Connection::open(&path).unwrap();
    db.execute("UPDATE sign_log SET signed = x'00' WHERE seq = 2", []).unwrap();
    assert!(matches!(store.sign_log(), Err(StoreError::LogTampered(2))));
    db.execute("DELETE FROM sign_log WHERE seq = 2", []).unwrap();
    assert!(matches!(store.sign_log(), Err(StoreError::LogTampered(3))));
}

#[test]
fn intents_read_as_may_have_contributed_until_completed() {
    let dir = tempfile::tempdir().unwrap();
    let store = logged_store(&dir.path().join("node.db"));
    let log = store.sign_log().unwrap();
    let status: Vec<_> = log.iter().map(|e| e.status.clone()).collect();
    assert_eq!(
        status,
        [
            SignLogStatus::MayHaveContributed,
            SignLogStatus::Completed { signature: vec![0x51; 64] },
            SignLogStatus::MayHaveContributed
        ]
    );
    assert_eq!(log.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 4], "the completion is row 3");
    assert_eq!(log[1].signers, [(p1(), NodeId(1)), (PartyId::new(2).unwrap(), NodeId(2))]);
    assert!(log[0].session.is_some() && log[0].session != log[1].session);
    // A completion must name an open intent.
    assert!(matches!(store.log_completion(3, &[0; 64]), Err(StoreError::LogTampered(3))));
}

/// seq, key_id, path, signed, request.
type UnkeyedRow = (i64, Vec<u8>, String, Vec<u8>, Vec<u8>);

/// The v1 entry hash (unkeyed, so anyone can compute it), as an attacker would.
fn unkeyed_hash(previous: &[u8], key_id: &[u8], path: &str, signed: &[u8], request: &[u8]) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(b"shardvault/sign-log/v1");
    for field in [previous, key_id, path.as_bytes(), signed, request] {
        hash.update((field.len() as u64).to_be_bytes());
        hash.update(field);
    }
    hash.finalize().to_vec()
}

/// Finding 18: someone with write access to node.db (but not the KEK)
/// rewrites, reorders or truncates the log with plain SQL.
#[test]
fn plain_sql_cannot_rewrite_reorder_or_truncate_the_sign_log() {
    type Tamper = fn(&Connection);
    // (what, how, the entry reported, whether appending is refused too: it
    // checks the tail, reading checks everything)
    let tampering: [(&str, Tamper, i64, bool); 7] = [
        (
            "edit a row",
            |db| {
                db.execute("UPDATE sign_log SET path = 'm/0' WHERE seq = 2", []).unwrap();
            },
            2,
            false,
        ),
        (
            "edit a row and recompute the chain the way v1 did",
            |db| {
                let rows: Vec<UnkeyedRow> = {
                    let mut s =
                        db.prepare("SELECT seq, key_id, path, signed, request FROM sign_log ORDER BY seq").unwrap();
                    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                        .unwrap()
                        .collect::<Result<_, _>>()
                        .unwrap()
                };
                let mut previous = vec![0u8; 32];
                for (seq, key_id, path, signed, request) in rows {
                    let signed = if seq == 1 { vec![0xee; 32] } else { signed };
                    let hash = unkeyed_hash(&previous, &key_id, &path, &signed, &request);
                    db.execute("UPDATE sign_log SET signed = ?1, hash = ?2 WHERE seq = ?3", (&signed, &hash, seq))
                        .unwrap();
                    previous = hash;
                }
            },
            1,
            false,
        ),
        (
            "swap two rows",
            |db| {
                db.execute_batch(
                    "UPDATE sign_log SET seq = 100 WHERE seq = 1; UPDATE sign_log SET seq = 1 WHERE seq = 2;
                 UPDATE sign_log SET seq = 2 WHERE seq = 100;",
                )
                .unwrap();
            },
            1,
            false,
        ),
        (
            "delete the last row",
            |db| {
                db.execute("DELETE FROM sign_log WHERE seq = 4", []).unwrap();
            },
            4,
            true,
        ),
        (
            "delete the last rows and the head",
            |db| {
                db.execute_batch("DELETE FROM sign_log WHERE seq >= 3; DELETE FROM meta WHERE name = 'sign_log_head';")
                    .unwrap();
            },
            0,
            true,
        ),
        (
            "delete every row",
            |db| {
                db.execute("DELETE FROM sign_log", []).unwrap();
            },
            4,
            true,
        ),
        (
            "delete the sealed log key",
            |db| {
                db.execute("DELETE FROM meta WHERE name = ?1", [SIGN_LOG_KEY_ROW]).unwrap();
            },
            0,
            true,
        ),
    ];
    for (what, tamper, seq, append_refused) in tampering {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        assert_eq!(logged_store(&path).sign_log().unwrap().len(), 3);
        tamper(&Connection::open(&path).unwrap());
        // Also after a restart (a reopened store must not "repair" the log).
        let store = open(&path, PASSPHRASE).unwrap();
        let result = store.sign_log();
        assert!(matches!(result, Err(StoreError::LogTampered(s)) if s == seq), "{what}: {result:?}");
        // The node does not sign on top of a broken log either.
        let appended = store.log_intent(&SignIntent {
            key_id: KeyId::random(),
            path: "m",
            signed: &[1; 32],
            request: b"r",
            session: SessionId::random(),
            signers: &BTreeMap::new(),
        });
        if append_refused {
            assert!(matches!(appended, Err(StoreError::LogTampered(_))), "{what}: {appended:?}");
        }
    }
}

#[test]
fn the_log_key_is_sealed_under_the_kek() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    drop(logged_store(&path));
    let db = Connection::open(&path).unwrap();
    let sealed: Vec<u8> =
        db.query_row("SELECT value FROM meta WHERE name = ?1", [SIGN_LOG_KEY_ROW], |r| r.get(0)).unwrap();
    assert!(sealed.starts_with(b"SVSL"), "a sealed blob");
    // Another store's sealed key (another KEK) does not open here.
    let other = dir.path().join("other.db");
    Store::open(&other, "node-1", KekSource::KeyFile(&[7; 32])).unwrap();
    let foreign: Vec<u8> = Connection::open(&other)
        .unwrap()
        .query_row("SELECT value FROM meta WHERE name = ?1", [SIGN_LOG_KEY_ROW], |r| r.get(0))
        .unwrap();
    db.execute("UPDATE meta SET value = ?1 WHERE name = ?2", (foreign, SIGN_LOG_KEY_ROW)).unwrap();
    assert!(matches!(open(&path, PASSPHRASE).unwrap().sign_log(), Err(StoreError::LogTampered(0))));
}

/// A store as the release before the keyed log wrote it: the v1 schema and
/// an unkeyed chain of `entries` signatures.
fn v1_store(path: &Path, entries: u8) -> KeyId {
    let db = Connection::open(path).unwrap();
    db.execute_batch(
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
         CREATE TABLE shares (key_id BLOB NOT NULL, epoch INTEGER NOT NULL, state TEXT NOT NULL
             CHECK (state IN ('pending', 'active')), sealed BLOB NOT NULL, PRIMARY KEY (key_id, epoch));
         CREATE TABLE tweaks (key_id BLOB NOT NULL, path TEXT NOT NULL, sealed BLOB NOT NULL,
             PRIMARY KEY (key_id, path));
         CREATE TABLE sign_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, key_id BLOB NOT NULL,
             path TEXT NOT NULL, signed BLOB NOT NULL, request BLOB NOT NULL, hash BLOB NOT NULL);",
    )
    .unwrap();
    let kek = Kek::from_key_file(&V1_KEY_FILE).unwrap();
    for (name, value) in [
        ("schema", 1i64.to_be_bytes().to_vec()),
        ("node_id", b"node-1".to_vec()),
        ("kdf_salt", vec![3; 16]),
        ("kek_verifier", kek.verifier().unwrap()),
    ] {
        db.execute("INSERT INTO meta (name, value) VALUES (?1, ?2)", (name, value)).unwrap();
    }
    let key_id = KeyId::random();
    let mut previous = vec![0u8; 32];
    for i in 0..entries {
        let hash = unkeyed_hash(&previous, key_id.as_bytes(), "m/9'/0'/60'/0'", &[i; 32], b"v1 request");
        db.execute(
            "INSERT INTO sign_log (key_id, path, signed, request, hash) VALUES (?1, ?2, ?3, ?4, ?5)",
            (key_id.as_bytes(), "m/9'/0'/60'/0'", [i; 32], b"v1 request", &hash),
        )
        .unwrap();
        previous = hash;
    }
    drop(db);
    // Old releases wrote the file with the umask; an operator makes it private before upgrading.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    key_id
}

const V1_KEY_FILE: [u8; 32] = [0x42; 32];

#[test]
fn a_v1_sign_log_is_verified_once_then_continued_keyed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let key_id = v1_store(&path, 2);
    let store = Store::open(&path, "node-1", KekSource::KeyFile(&V1_KEY_FILE)).unwrap();
    let log = store.sign_log().unwrap();
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|e| e.status == SignLogStatus::Legacy && e.key_id == key_id && e.session.is_none()));
    // The switch is recorded as row 3; new entries follow it, keyed.
    let seq = intent(&store, key_id, &[9; 32]);
    assert_eq!(seq, 4);
    let kinds: Vec<String> = {
        let db = Connection::open(&path).unwrap();
        let mut s = db.prepare("SELECT kind FROM sign_log ORDER BY seq").unwrap();
        s.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    };
    assert_eq!(kinds, ["v1", "v1", "keyed", "intent"]);
    drop(store);
    let store = Store::open(&path, "node-1", KekSource::KeyFile(&V1_KEY_FILE)).unwrap();
    assert_eq!(store.sign_log().unwrap().len(), 3);
    // The migrated v1 rows are now pinned too: rewriting one with its
    // (public) unkeyed hash is detected.
    let db = Connection::open(&path).unwrap();
    let hash = unkeyed_hash(&[0; 32], key_id.as_bytes(), "m/9'/0'/60'/0'", &[0xee; 32], b"v1 request");
    db.execute("UPDATE sign_log SET signed = ?1, hash = ?2 WHERE seq = 1", ([0xee; 32], hash)).unwrap();
    assert!(matches!(store.sign_log(), Err(StoreError::LogTampered(_))));
}

#[test]
fn a_broken_v1_sign_log_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    v1_store(&path, 3);
    Connection::open(&path).unwrap().execute("DELETE FROM sign_log WHERE seq = 2", []).unwrap();
    let error = Store::open(&path, "node-1", KekSource::KeyFile(&V1_KEY_FILE)).unwrap_err();
    assert!(matches!(error, StoreError::Incompatible(_)), "{error}");
    assert!(error.to_string().contains("sign log does not verify at entry 3"), "{error}");
    // Nothing was changed: still a v1 store, and still refused.
    assert!(Store::open(&path, "node-1", KekSource::KeyFile(&V1_KEY_FILE)).is_err());
    // An empty v1 log is simply keyed from the start.
    let empty = dir.path().join("empty.db");
    v1_store(&empty, 0);
    let store = Store::open(&empty, "node-1", KekSource::KeyFile(&V1_KEY_FILE)).unwrap();
    assert_eq!(store.sign_log().unwrap(), []);
    assert_eq!(intent(&store, KeyId::random(), &[1; 32]), 1);
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
                    let seq = intent(&store, key_id, &[worker, i]);
                    store.log_completion(seq, &[i; 64]).unwrap();
                }
            });
        }
    });
    let log = open(&path, PASSPHRASE).unwrap().sign_log().unwrap();
    assert_eq!(log.len(), 100);
    assert!(log.iter().all(|e| e.completed()));
}

/// Every file of the store, read raw (database, WAL, shared memory).
fn raw_files(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    for suffix in ["-wal", "-shm"] {
        bytes.extend(std::fs::read(format!("{}{suffix}", path.display())).unwrap_or_default());
    }
    bytes
}

/// Whether any 32-byte piece of `blob` (nonce, ciphertext, tag) is still on disk.
fn survives(on_disk: &[u8], blob: &[u8]) -> bool {
    blob.chunks(32).filter(|c| c.len() == 32).any(|piece| on_disk.windows(32).any(|w| w == piece))
}

fn sealed_rows(path: &Path, sql: &str) -> Vec<Vec<u8>> {
    let db = Connection::open(path).unwrap();
    let mut statement = db.prepare(sql).unwrap();
    let rows = statement.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    rows
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn an_activated_refresh_leaves_no_copy_of_the_old_epoch_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let shares = key(Scheme::EddsaEd25519);
    let key_id = shares[&p1()].key_id();
    let session = SessionId::random();
    let refreshed = local::run(shares.values().map(|s| refresh(s, session, &mut OsRng).unwrap()).collect()).unwrap();
    let mut store = open(&path, PASSPHRASE).unwrap();
    store.insert_new_key(&shares[&p1()]).unwrap();
    store.insert_pending(&refreshed[&p1()]).unwrap();
    let old = sealed_rows(&path, "SELECT sealed FROM shares WHERE epoch = 0");
    assert_eq!(old.len(), 1);
    assert!(survives(&raw_files(&path), &old[0]), "the test must see the blob before it is deleted");
    store.activate(key_id, refreshed[&p1()].epoch()).unwrap();
    // Read while the store is still open: what a disk snapshot taken now holds.
    let on_disk = raw_files(&path);
    assert!(!survives(&on_disk, &old[0]), "epoch 0's sealed share is still in node.db or node.db-wal");
    assert_eq!(std::fs::metadata(format!("{}-wal", path.display())).map(|m| m.len()).unwrap_or(0), 0);
    assert_eq!(store.active_share(key_id).unwrap().epoch().0, 1);
}

#[test]
fn kdf_parameters_are_stored_with_the_salt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let created_with = KdfParams { memory_kib: 128, iterations: 2, parallelism: 1 };
    let shares = key(Scheme::EddsaEd25519);
    Store::open(&path, "node-1", KekSource::Passphrase(PASSPHRASE, created_with))
        .unwrap()
        .insert_new_key(&shares[&p1()])
        .unwrap();
    // A later release with other defaults still derives the same KEK.
    let store = open(&path, PASSPHRASE).unwrap();
    assert_eq!(store.active_share(shares[&p1()].key_id()).unwrap().public_key(), shares[&p1()].public_key());
    let stored = sealed_rows(&path, "SELECT value FROM meta WHERE name = 'kdf_params'");
    assert_eq!(stored, vec![created_with.to_bytes()]);
}

/// A store exactly as releases before stored KDF parameters wrote it: no
/// `kdf_params` row, KEK from OWASP's minimum (46 MiB, t=1).
fn legacy_store(path: &Path, share: &KeyShare) {
    use shardvault_vault::{seal, Kek, SealContext};
    let salt = [5u8; 16];
    let kek = Kek::from_passphrase(PASSPHRASE, &salt, KdfParams::LEGACY_V1).unwrap();
    // (Old releases left it at the umask's 0644; the store now refuses that, saying `chmod 600`.)
    std::fs::write(path, b"").unwrap();
    chmod(path, 0o600);
    let db = Connection::open(path).unwrap();
    db.execute_batch(
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
         CREATE TABLE shares (key_id BLOB NOT NULL, epoch INTEGER NOT NULL, state TEXT NOT NULL
             CHECK (state IN ('pending', 'active')), sealed BLOB NOT NULL, PRIMARY KEY (key_id, epoch));",
    )
    .unwrap();
    for (name, value) in [
        ("schema", 1i64.to_be_bytes().to_vec()),
        ("node_id", b"node-1".to_vec()),
        ("kdf_salt", salt.to_vec()),
        ("kek_verifier", kek.verifier().unwrap()),
    ] {
        db.execute("INSERT INTO meta (name, value) VALUES (?1, ?2)", rusqlite::params![name, value]).unwrap();
    }
    let context = SealContext {
        node_id: "node-1".into(),
        key_id: share.key_id(),
        epoch: share.epoch(),
        kind: "key-share".into(),
    };
    let sealed = seal(&kek, &context, &share.to_bytes().unwrap()).unwrap();
    db.execute(
        "INSERT INTO shares (key_id, epoch, state, sealed) VALUES (?1, 0, 'active', ?2)",
        rusqlite::params![share.key_id().as_bytes(), sealed],
    )
    .unwrap();
}

#[test]
fn a_store_from_before_stored_parameters_opens_with_the_old_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let shares = key(Scheme::EddsaEd25519);
    legacy_store(&path, &shares[&p1()]);
    // Today's default (whatever the caller passes) does not apply to an existing store.
    let store = Store::open(&path, "node-1", KekSource::Passphrase(PASSPHRASE, KdfParams::INSECURE_FOR_TESTS)).unwrap();
    assert_eq!(store.active_share(shares[&p1()].key_id()).unwrap().public_key(), shares[&p1()].public_key());
    drop(store);
    // The parameters are now recorded, and a wrong passphrase is still reported as such.
    let stored = sealed_rows(&path, "SELECT value FROM meta WHERE name = 'kdf_params'");
    assert_eq!(stored, vec![KdfParams::LEGACY_V1.to_bytes()]);
    let error = open(&path, b"wrong").unwrap_err();
    assert!(error.to_string().contains("passphrase or key file does not match"), "{error}");
}

#[test]
fn the_identity_key_is_sealed_and_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let identity = shardvault_mpc::Secret32::new([0x5a; 32]);
    let store = open(&path, PASSPHRASE).unwrap();
    assert!(store.identity().unwrap().is_none());
    store.set_identity(&identity).unwrap();
    assert!(matches!(store.set_identity(&shardvault_mpc::Secret32::new([1; 32])), Err(StoreError::IdentityExists)));
    drop(store);
    assert_eq!(open(&path, PASSPHRASE).unwrap().identity().unwrap().unwrap(), identity);
    assert!(!raw_files(&path).windows(16).any(|w| w == [0x5a; 16]), "the identity key is on disk in plaintext");
    // Another KEK does not open it; a blob moved into its row does not open as it.
    let db = Connection::open(&path).unwrap();
    db.execute(
        "UPDATE meta SET value = (SELECT value FROM meta WHERE name = 'kek_verifier') WHERE name = 'noise_identity'",
        [],
    )
    .unwrap();
    assert!(open(&path, PASSPHRASE).unwrap().identity().is_err());
}

#[test]
fn rotating_the_kek_reseals_everything_and_the_old_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let ed = key(Scheme::EddsaEd25519);
    let ecdsa = key(Scheme::EcdsaSecp256k1);
    let hd_path: DerivationPath = "m/9'/0'/60'/0'".parse().unwrap();
    let session = SessionId::random();
    let tweaks =
        local::run(ecdsa.values().map(|s| derive_hardened(s, &hd_path, session, &mut OsRng).unwrap()).collect())
            .unwrap();
    let session = SessionId::random();
    let refreshed = local::run(ed.values().map(|s| refresh(s, session, &mut OsRng).unwrap()).collect()).unwrap();
    let identity = shardvault_mpc::Secret32::new([0x33; 32]);
    let mut store = open(&path, PASSPHRASE).unwrap();
    store.insert_new_key(&ed[&p1()]).unwrap();
    store.insert_pending(&refreshed[&p1()]).unwrap();
    store.insert_new_key(&ecdsa[&p1()]).unwrap();
    store.put_tweak(&tweaks[&p1()]).unwrap();
    store.set_identity(&identity).unwrap();
    let before: Vec<Vec<u8>> = [
        "SELECT sealed FROM shares",
        "SELECT sealed FROM tweaks",
        "SELECT value FROM meta WHERE name IN ('noise_identity', 'kek_verifier')",
    ]
    .iter()
    .flat_map(|sql| sealed_rows(&path, sql))
    .collect();
    assert_eq!(before.len(), 6);

    const NEW: &[u8] = b"a new passphrase, after an operator left";
    let new_params = KdfParams { memory_kib: 256, iterations: 2, parallelism: 1 };
    store.rotate_kek(KekSource::Passphrase(NEW, new_params)).unwrap();
    drop(store);

    let error = open(&path, PASSPHRASE).unwrap_err();
    assert!(error.to_string().contains("passphrase or key file does not match"), "{error}");
    let on_disk = raw_files(&path);
    for blob in &before {
        assert!(!survives(&on_disk, blob), "a blob sealed under the old KEK is still on disk");
    }

    let store = open(&path, NEW).unwrap();
    assert_eq!(store.identity().unwrap().unwrap(), identity);
    let cached = store.tweak(ecdsa[&p1()].key_id(), &hd_path).unwrap().unwrap();
    assert_eq!(cached.expose_tau(), tweaks[&p1()].expose_tau());
    assert_eq!(store.active_share(ecdsa[&p1()].key_id()).unwrap().public_key(), ecdsa[&p1()].public_key());
    // The pending epoch was re-sealed too: it activates and signs with the other party's refreshed share.
    let mut store = store;
    store.activate(ed[&p1()].key_id(), refreshed[&p1()].epoch()).unwrap();
    let share = store.active_share(ed[&p1()].key_id()).unwrap();
    let signers: std::collections::BTreeSet<PartyId> = refreshed.keys().copied().collect();
    let root: DerivationPath = "m".parse().unwrap();
    let message = b"signed after rotation";
    let session = SessionId::random();
    let started = vec![
        shardvault_mpc::sign(
            &shardvault_mpc::SignRequest { share: &share, hardened: None, path: &root, signers: &signers, message },
            session,
            &mut OsRng,
        )
        .unwrap(),
        shardvault_mpc::sign(
            &shardvault_mpc::SignRequest {
                share: &refreshed[&PartyId::new(2).unwrap()],
                hardened: None,
                path: &root,
                signers: &signers,
                message,
            },
            session,
            &mut OsRng,
        )
        .unwrap(),
    ];
    let signatures = local::run(started).unwrap();
    let signature = signatures.values().next().unwrap();
    shardvault_testkit::verify_ed25519(&signature.public_key, message, &signature.bytes).unwrap();
    assert_eq!(signature.public_key, ed[&p1()].public_key());
    // The stored parameters are the new ones.
    assert_eq!(sealed_rows(&path, "SELECT value FROM meta WHERE name = 'kdf_params'"), vec![new_params.to_bytes()]);
}

#[test]
fn store_files_are_private_and_looser_modes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let store = open(&path, PASSPHRASE).unwrap();
    store.insert_new_key(&key(Scheme::EddsaEd25519)[&p1()]).unwrap();
    for file in ["node.db", "node.db-wal", "node.db-shm"] {
        assert_eq!(mode(&dir.path().join(file)), 0o600, "{file}");
    }
    drop(store);
    for (file, loose, fix) in
        [("node.db", 0o644, "chmod 600"), ("node.db-wal", 0o640, "chmod 600"), ("node.db-shm", 0o604, "chmod 600")]
    {
        let target = dir.path().join(file);
        if !target.exists() {
            // SQLite removes -wal/-shm on a clean close; recreate what a crash leaves.
            std::fs::write(&target, b"").unwrap();
        }
        chmod(&target, loose);
        let error = open(&path, PASSPHRASE).unwrap_err();
        let text = error.to_string();
        assert!(text.contains(&format!("{fix} {}", target.display())), "{text}");
        chmod(&target, 0o600);
    }
    open(&path, PASSPHRASE).unwrap();
}

#[test]
fn a_known_key_id_is_never_given_to_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let original = key(Scheme::EcdsaSecp256k1);
    let key_id = original[&p1()].key_id();
    let session = SessionId::random();
    let refreshed = local::run(original.values().map(|s| refresh(s, session, &mut OsRng).unwrap()).collect()).unwrap();
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
    let refreshed = local::run(shadowed.values().map(|s| refresh(s, session, &mut OsRng).unwrap()).collect()).unwrap();
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
        local::run(shares.values().map(|s| derive_hardened(s, &path, session, &mut OsRng).unwrap()).collect()).unwrap()
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

/// The sign log's public head, recomputed here from the rows as
/// docs/FORMATS.md describes it (no log key needed).
fn public_head(path: &Path, node_id: &str) -> (i64, [u8; 32]) {
    let db = Connection::open(path).unwrap();
    let mut statement = db
        .prepare("SELECT seq, kind, key_id, path, signed, request, session, signers, signature, refers FROM sign_log ORDER BY seq")
        .unwrap();
    let len = |n: usize| (n as u64).to_be_bytes();
    let mut head: [u8; 32] = Sha256::new()
        .chain_update(b"shardvault/sign-log/public/v1")
        .chain_update(len(node_id.len()))
        .chain_update(node_id)
        .finalize()
        .into();
    let mut last = 0;
    let rows = statement
        .query_map([], |r| {
            let kind: String = r.get(1)?;
            let path: String = r.get(3)?;
            let blobs: Vec<Vec<u8>> = [2, 4, 5, 6, 7, 8].iter().map(|i| r.get(*i)).collect::<Result<_, _>>()?;
            Ok((r.get::<_, i64>(0)?, kind, path, blobs, r.get::<_, i64>(9)?))
        })
        .unwrap();
    for row in rows {
        let (seq, kind, path, blobs, refers) = row.unwrap();
        let mut hash = Sha256::new().chain_update(head).chain_update(seq.to_be_bytes());
        let fields: [&[u8]; 8] =
            [kind.as_bytes(), &blobs[0], path.as_bytes(), &blobs[1], &blobs[2], &blobs[3], &blobs[4], &blobs[5]];
        for field in fields {
            hash.update(len(field.len()));
            hash.update(field);
        }
        hash.update(refers.to_be_bytes());
        head = hash.finalize().into();
        last = seq;
    }
    (last, head)
}

#[test]
fn the_sign_log_head_commits_to_every_row_and_can_be_recomputed_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let store = open(&path, PASSPHRASE).unwrap();
    let empty = store.sign_log_head().unwrap();
    assert_eq!((empty.seq, empty.hash), public_head(&path, "node-1"));
    let key_id = KeyId::random();
    let first = intent(&store, key_id, b"first");
    let after_intent = store.sign_log_head().unwrap();
    assert_eq!((after_intent.seq, after_intent.hash), public_head(&path, "node-1"));
    assert_ne!(after_intent.hash, empty.hash);
    store.log_completion(first, b"signature").unwrap();
    let after_completion = store.sign_log_head().unwrap();
    assert_eq!((after_completion.seq, after_completion.hash), public_head(&path, "node-1"));
    assert_eq!(after_completion.seq, after_intent.seq + 1);
    // The statement a node signs: seq, then the head.
    let statement = after_completion.statement();
    assert_eq!(&statement[..8], &after_completion.seq.to_be_bytes());
    assert_eq!(&statement[8..], &after_completion.hash);
    // An altered row is refused, as by sign_log().
    Connection::open(&path).unwrap().execute("UPDATE sign_log SET signed = x'00' WHERE seq = ?1", [first]).unwrap();
    assert!(matches!(store.sign_log_head(), Err(StoreError::LogTampered(_))));
}
