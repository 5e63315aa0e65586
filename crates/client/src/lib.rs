//! A blocking client of the coordinator's REST API. Requests and answers are
//! [`shardvault_api`]'s types, so what the client sends is what the server
//! parses and what the OpenAPI document describes.
//!
//! TLS: an `https://` API is trusted only through the CA certificates given
//! (never the system store) and no redirect may leave TLS; plain `http://` is
//! for loopback addresses unless the caller insists.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
pub use shardvault_api as api;
use shardvault_governance::Identity;

mod expect;
mod governed;
pub use expect::Expected;
mod organisation;
pub use governed::{finished, Outcome};
pub use organisation::{check_request, RequestFilter};
use shardvault_api::{
    AddressRequest, AttestedAddress, BackupList, BackupPackage, BackupRequest, CreateKey, Empty, ErrorBody, ErrorCode,
    Health, Key, KeyDetails, KeyList, NodeReplaced, RefreshFinished, Refreshed, ReplaceNode, RequestRecord,
    SeedsEscrowed, SignRequest, SignatureAnswer, SignedTransaction, TransactionRequest,
};

/// What can go wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client refused to be built (a URL, a CA file, plain HTTP off loopback).
    #[error("{0}")]
    Config(String),
    /// No answer: connection, TLS or timeout.
    #[error("{0}")]
    Transport(#[from] ureq::Error),
    /// The API answered with an error.
    #[error("{code} ({status}): {message}")]
    Api {
        status: u16,
        /// The stable code (`error` if the answer had none).
        code: String,
        message: String,
        request_id: Option<String>,
    },
    /// A request waits for more approvals (or was rejected, or expired).
    #[error("request {request_id} is {status}: {message}")]
    NotDone { request_id: String, status: String, message: String },
    /// A success answer that is not what the call answers.
    #[error("unexpected answer ({status}) from the API: {reason}")]
    Decode { status: u16, reason: String },
}

impl Error {
    /// The API's error code, if it answered with a known one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api { code, .. } => serde_json::from_value(Value::String(code.clone())).ok(),
            _ => None,
        }
    }

    /// The HTTP status, if the API answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One raw answer: status, whether it was an idempotent replay, and the JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub replayed: bool,
    pub body: Value,
}

impl Answer {
    /// The body as `T` on success, else the API's error.
    pub fn into_typed<T: DeserializeOwned>(self) -> Result<T> {
        if (200..300).contains(&self.status) {
            return serde_json::from_value(self.body)
                .map_err(|e| Error::Decode { status: self.status, reason: e.to_string() });
        }
        Err(match serde_json::from_value::<ErrorBody>(self.body.clone()) {
            Ok(body) => Error::Api {
                status: self.status,
                code: body.code.as_str().into(),
                message: body.message,
                request_id: body.request_id,
            },
            Err(_) => Error::Api {
                status: self.status,
                code: self.body.get("code").and_then(Value::as_str).unwrap_or("error").into(),
                message: self.body.get("message").and_then(Value::as_str).unwrap_or("").into(),
                request_id: None,
            },
        })
    }
}

/// The API at one base URL.
#[derive(Debug)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// The session token sent as `Authorization: Bearer`.
    pub(crate) token: Option<String>,
    /// Who acts: creates requests and approves them.
    pub(crate) identity: Option<Arc<Identity>>,
    /// The organisation this client logged in to (requests for another are never approved).
    pub(crate) organisation: Option<String>,
}

impl Client {
    /// The API at a plain `http://` URL, unchecked (devnet, demo, tests on loopback).
    pub fn new(base: &str) -> Self {
        Self::with_tls(base, None)
    }

    /// The API at `base`: `https://` with the server certificate verified
    /// against the CA certificates in `tls_ca` only (never the system store),
    /// or plain `http://` on a loopback address (elsewhere only with
    /// `insecure_plaintext`).
    pub fn connect(base: &str, tls_ca: Option<&Path>, insecure_plaintext: bool) -> Result<Self> {
        let config = |message: String| Error::Config(message);
        let uri: ureq::http::Uri = base.parse().map_err(|e| config(format!("the API URL {base:?}: {e}")))?;
        match (uri.scheme_str(), tls_ca) {
            (Some("https"), Some(ca)) => {
                let pem = std::fs::read(ca).map_err(|e| config(format!("reading {}: {e}", ca.display())))?;
                let mut roots = Vec::new();
                for item in ureq::tls::parse_pem(&pem) {
                    if let ureq::tls::PemItem::Certificate(cert) =
                        item.map_err(|e| config(format!("{}: {e}", ca.display())))?
                    {
                        roots.push(cert);
                    }
                }
                if roots.is_empty() {
                    return Err(config(format!("{} holds no PEM certificate", ca.display())));
                }
                let tls = ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
                    .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .build();
                Ok(Self::with_tls(base, Some(tls)))
            }
            (Some("https"), None) => Err(config(
                "an https:// API needs --tls-ca FILE (SHARDVAULT_TLS_CA): the CA certificate that signed the \
                 coordinator's certificate; the system's CA store alone is not trusted for this"
                    .into(),
            )),
            (Some("http"), Some(_)) => Err(config("--tls-ca is given but the API URL is http://; use https://".into())),
            (Some("http"), None) => {
                if !is_loopback(uri.host().unwrap_or("")) {
                    if !insecure_plaintext {
                        return Err(config(format!(
                            "refusing plain http:// to {base}, which is not a loopback address: use https:// \
                             with --tls-ca (or --insecure-plaintext on a network you trust)"
                        )));
                    }
                    tracing::warn!(%base, "PLAIN HTTP TO A NON-LOOPBACK ADDRESS: answers can be read and changed");
                }
                Ok(Self::new(base))
            }
            _ => Err(config("the API URL must start with https:// or http://".into())),
        }
    }

    fn with_tls(base: &str, tls: Option<ureq::tls::TlsConfig>) -> Self {
        let config =
            ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(180)));
        let config = match tls {
            // No redirect may leave TLS.
            Some(tls) => config.tls_config(tls).https_only(true),
            None => config,
        };
        Client {
            base: base.trim_end_matches('/').to_string(),
            agent: config.build().new_agent(),
            token: None,
            identity: None,
            organisation: None,
        }
    }

    /// The base URL, without a trailing `/`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`, raw.
    pub fn get(&self, path: &str) -> Result<Answer> {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        answer(request.call()?)
    }

    /// `POST path` with a JSON `body` (bytes as given) and an optional
    /// Idempotency-Key, raw: for callers that must send what the types
    /// cannot (tests of refusals).
    pub fn post_raw(&self, path: &str, body: &[u8], idempotency_key: Option<&str>) -> Result<Answer> {
        let mut request = self.agent.post(format!("{}{path}", self.base)).header("Content-Type", "application/json");
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        if let Some(key) = idempotency_key {
            request = request.header(shardvault_api::IDEMPOTENCY_KEY, key);
        }
        answer(request.send(body)?)
    }

    /// `POST path` with `body` as JSON, raw.
    pub fn post<B: Serialize>(&self, path: &str, body: &B, idempotency_key: Option<&str>) -> Result<Answer> {
        let bytes = serde_json::to_vec(body).map_err(|e| Error::Config(format!("encoding the request: {e}")))?;
        self.post_raw(path, &bytes, idempotency_key)
    }

    /// `GET /v1/health`.
    pub fn health(&self) -> Result<Health> {
        self.get("/v1/health")?.into_typed()
    }

    /// `POST /v1/keys`: returns when every node agrees on the public key.
    pub fn create_key(&self, request: &CreateKey, idempotency_key: Option<&str>) -> Result<Key> {
        self.governed(self.post("/v1/keys", request, idempotency_key)?, Expected::CreateKey(request))
    }

    /// `GET /v1/keys`.
    pub fn keys(&self) -> Result<KeyList> {
        self.get("/v1/keys")?.into_typed()
    }

    /// `GET /v1/keys/{key_id}`.
    pub fn key(&self, key_id: &str) -> Result<KeyDetails> {
        self.get(&format!("/v1/keys/{key_id}"))?.into_typed()
    }

    /// `POST /v1/keys/{key_id}/addresses`. The answer is NOT verified here:
    /// check its attestations against a pinned cluster file before use.
    pub fn address(
        &self,
        key_id: &str,
        request: &AddressRequest,
        idempotency_key: Option<&str>,
    ) -> Result<AttestedAddress> {
        let answer = self.post(&format!("/v1/keys/{key_id}/addresses"), request, idempotency_key)?;
        self.governed(answer, Expected::Address { key_id, request })
    }

    /// `POST /v1/keys/{key_id}/signatures`.
    pub fn sign(&self, key_id: &str, request: &SignRequest, idempotency_key: Option<&str>) -> Result<SignatureAnswer> {
        let answer = self.post(&format!("/v1/keys/{key_id}/signatures"), request, idempotency_key)?;
        self.governed(answer, Expected::Sign { key_id, request })
    }

    /// `POST /v1/keys/{key_id}/transactions`.
    pub fn transaction(
        &self,
        key_id: &str,
        request: &TransactionRequest,
        idempotency_key: Option<&str>,
    ) -> Result<SignedTransaction> {
        let answer = self.post(&format!("/v1/keys/{key_id}/transactions"), request, idempotency_key)?;
        self.governed(answer, Expected::Transaction { key_id, request })
    }

    /// `POST /v1/keys/{key_id}/refresh`.
    pub fn refresh(&self, key_id: &str, idempotency_key: Option<&str>) -> Result<Refreshed> {
        self.governed(
            self.post(&format!("/v1/keys/{key_id}/refresh"), &Empty {}, idempotency_key)?,
            Expected::Refresh { key_id },
        )
    }

    /// `POST /v1/keys/{key_id}/refresh/finish`.
    pub fn finish_refresh(&self, key_id: &str, idempotency_key: Option<&str>) -> Result<RefreshFinished> {
        self.post(&format!("/v1/keys/{key_id}/refresh/finish"), &Empty {}, idempotency_key)?.into_typed()
    }

    /// `POST /v1/backups`: a request every member who may approve must
    /// approve, checked to be exactly this export before this client
    /// approves it; the package once it ran, or the pending request.
    pub fn export_backup(
        &self,
        request: &BackupRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Outcome<BackupPackage>> {
        self.governed_outcome(self.post("/v1/backups", request, idempotency_key)?, Expected::Backup(request))
    }

    /// `POST /v1/nodes/{node}/replace`: a request every member who may
    /// approve must approve, checked to name exactly this node and these
    /// keys before this client approves it.
    pub fn replace_node(
        &self,
        node: u16,
        request: &ReplaceNode,
        idempotency_key: Option<&str>,
    ) -> Result<NodeReplaced> {
        let response = self.post(&format!("/v1/nodes/{node}/replace"), request, idempotency_key)?;
        self.governed(response, Expected::ReplaceNode { node, request })
    }

    /// `POST /v1/keys/{key_id}/escrow`.
    pub fn escrow_seeds(&self, key_id: &str, idempotency_key: Option<&str>) -> Result<SeedsEscrowed> {
        self.post(&format!("/v1/keys/{key_id}/escrow"), &Empty {}, idempotency_key)?.into_typed()
    }

    /// `GET /v1/backups`.
    pub fn backups(&self) -> Result<BackupList> {
        self.get("/v1/backups")?.into_typed()
    }

    /// `GET /v1/requests/{id}`.
    pub fn request(&self, request_id: &str) -> Result<RequestRecord> {
        self.get(&format!("/v1/requests/{request_id}"))?.into_typed()
    }

    /// `GET /openapi.json`.
    pub fn openapi(&self) -> Result<Value> {
        self.get("/openapi.json")?.into_typed()
    }
}

fn answer(mut response: ureq::http::Response<ureq::Body>) -> Result<Answer> {
    let status = response.status().as_u16();
    let replayed = response.headers().get(shardvault_api::IDEMPOTENT_REPLAY).is_some_and(|v| v == "true");
    let body: Value = match response.body_mut().read_json() {
        Ok(body) => body,
        Err(_) => Value::Null,
    };
    Ok(Answer { status, replayed, body })
}

/// `localhost` or a loopback address (`127.0.0.0/8`, `::1`).
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_for_loopback_and_https_needs_a_pinned_ca() {
        // Nothing is sent: the client refuses while it is being built.
        for url in ["http://127.0.0.1:8780", "http://localhost:8780", "http://[::1]:8780"] {
            assert!(Client::connect(url, None, false).is_ok(), "{url}");
        }
        let refused = Client::connect("http://192.0.2.1:8780", None, false).err().unwrap();
        assert!(refused.to_string().contains("not a loopback"), "{refused}");
        assert!(Client::connect("http://192.0.2.1:8780", None, true).is_ok());
        let refused = Client::connect("https://127.0.0.1:8780", None, false).err().unwrap();
        assert!(refused.to_string().contains("--tls-ca"), "{refused}");
        assert!(Client::connect("ftp://127.0.0.1", None, false).is_err());
    }

    #[test]
    fn an_error_answer_keeps_its_code_status_and_message() {
        let answer = Answer {
            status: 409,
            replayed: false,
            body: serde_json::json!({ "code": "party_banned", "message": "choose others", "request_id": "r" }),
        };
        let error = answer.into_typed::<Key>().unwrap_err();
        assert_eq!(error.to_string(), "party_banned (409): choose others");
        assert_eq!((error.code(), error.status()), (Some(ErrorCode::PartyBanned), Some(409)));
        // A code this client does not know is still shown.
        let answer =
            Answer { status: 418, replayed: false, body: serde_json::json!({ "code": "teapot", "message": "" }) };
        let error = answer.into_typed::<Key>().unwrap_err();
        assert_eq!((error.to_string().as_str(), error.code()), ("teapot (418): ", None));
    }
}
