//! Test helpers: a coordinator on 127.0.0.1:0 and a raw HTTP/1.1 client
//! (raw, so that tests can send any Host, Origin or Content-Type).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shardvault_wire::{generate_keypair, Cluster};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// The test organisation's one owner.
pub(crate) fn owner() -> &'static shardvault_governance::Identity {
    static OWNER: std::sync::OnceLock<shardvault_governance::Identity> = std::sync::OnceLock::new();
    OWNER.get_or_init(|| shardvault_governance::Identity::generate("owner").unwrap())
}

/// A genesis with [`owner`] and the default policy.
pub(crate) fn genesis() -> shardvault_governance::Genesis {
    let public_key = owner().member_key().unwrap();
    let owner = shardvault_governance::Owner { name: "owner".parse().unwrap(), public_key };
    shardvault_governance::Genesis::new("test", vec![owner], 1_767_225_600).unwrap()
}

/// An `Authorization` header value for a session of [`owner`], written
/// straight into `running`'s database (the login itself is tested in auth).
pub(crate) async fn owner_authorization(running: &Running) -> String {
    use sha2::Digest;
    let token = shardvault_types::SessionId::random().to_string();
    let hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
    let fingerprint = owner().member_key().unwrap().fingerprint();
    let conn = rusqlite::Connection::open(&running.database).unwrap();
    // The coordinator creates its tables as it starts, maybe after this call.
    for _ in 0..200 {
        let inserted = conn.execute(
            "INSERT INTO sessions (token_hash, fingerprint, expires_at) VALUES (?1, ?2, unixepoch() + 3600)",
            rusqlite::params![hash, fingerprint],
        );
        if inserted.is_ok() {
            return format!("Bearer {token}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the coordinator's database has no sessions table")
}

/// A running coordinator; stopped when dropped.
pub(crate) struct Running {
    pub address: SocketAddr,
    pub database: std::path::PathBuf,
    _dir: tempfile::TempDir,
    _stop: watch::Sender<bool>,
}

/// A coordinator whose cluster has three nodes, none of them connected.
pub(crate) async fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let (secret, coordinator) = generate_keypair().unwrap();
    let database = dir.path().join("coordinator.db");
    let nodes = (1..=3).map(|id| (shardvault_wire::NodeId(id), generate_keypair().unwrap().1)).collect();
    let config = crate::Config {
        cluster: Cluster { coordinator, nodes, identities: Default::default() },
        secret,
        genesis: genesis(),
        database: database.clone(),
        job_timeout: Duration::from_secs(5),
        sign_timeout: Duration::from_secs(5),
        ping_interval: Duration::from_secs(1),
        silence_timeout: Duration::from_secs(5),
        refresh_check: Duration::from_secs(60),
        tls,
        insecure_plaintext: false,
        allowed_hosts: vec!["vault.example.org".into()],
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(crate::serve(listener, config, stopped));
    Running { address, database, _dir: dir, _stop: stop }
}

/// Status, lowercase headers and body of one request over `stream`.
pub(crate) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).to_string();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

/// One plain-HTTP request to `running`.
pub(crate) async fn http(
    running: &Running,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let stream = tokio::net::TcpStream::connect(running.address).await.unwrap();
    exchange(stream, method, path, headers, body).await
}

/// How many requests the coordinator recorded (each one that ran).
pub(crate) fn recorded(running: &Running) -> i64 {
    let conn = rusqlite::Connection::open(&running.database).unwrap();
    conn.query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0)).unwrap()
}

/// A CA and a server certificate it signed for localhost and 127.0.0.1:
/// (CA PEM, certificate PEM, key PEM).
pub(crate) fn certificates() -> (String, String, String) {
    let mut ca = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// Coordinator state on a database in `dir`, with no nodes.
pub(crate) fn state(dir: &std::path::Path) -> crate::jobs::State {
    let (secret, coordinator) = generate_keypair().unwrap();
    let config = crate::Config {
        cluster: Cluster { coordinator, nodes: Default::default(), identities: Default::default() },
        secret,
        genesis: genesis(),
        database: dir.join("coordinator.db"),
        job_timeout: Duration::from_secs(5),
        sign_timeout: Duration::from_secs(5),
        ping_interval: Duration::from_secs(1),
        silence_timeout: Duration::from_secs(5),
        refresh_check: Duration::from_secs(60),
        tls: None,
        insecure_plaintext: false,
        allowed_hosts: Vec::new(),
    };
    let db = crate::db::Db::open(&config.database).unwrap();
    crate::jobs::State::new(config, db, watch::channel(false).1).unwrap()
}

/// Makes every write of an answer into the idempotency table fail, as a full
/// disk would after the (small) claim was written; `false` removes that again.
pub(crate) fn fail_answer_writes(database: &std::path::Path, fail: bool) {
    let conn = rusqlite::Connection::open(database).unwrap();
    let sql = if fail {
        "CREATE TRIGGER full_insert BEFORE INSERT ON idempotency WHEN NEW.response <> ''
             BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;
         CREATE TRIGGER full_update BEFORE UPDATE ON idempotency WHEN NEW.response <> ''
             BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;"
    } else {
        "DROP TRIGGER full_insert; DROP TRIGGER full_update;"
    };
    conn.execute_batch(sql).unwrap();
}
