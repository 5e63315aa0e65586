//! Who is calling. Every endpoint but `GET /v1/health`, `GET /openapi.json`
//! and `POST /v1/sessions` needs `Authorization: Bearer <token>`: 401
//! without a valid one, 403 beyond the caller's role. A token comes from
//! logging in with a member's key: an SSHSIG (namespace `shardvault-login`)
//! over `shardvault-login-v1\n<organisation>\n<unix time>\n<nonce>\n`, fresh
//! (±5 minutes) and used once. Tokens are random, stored as SHA-256 hashes,
//! live 12 hours, and die with the member (a removed member's token finds no
//! member). docs/GOVERNANCE.md, "API authentication".

use std::str::FromStr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State as Extract};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sha2::{Digest, Sha256};
use shardvault_api::{ErrorBody, ErrorCode, Login, Session};
use shardvault_governance::{Approval, Member, LOGIN_NAMESPACE};

use crate::api::ApiError;
use crate::jobs::State;

/// How long a session token lives.
pub(crate) const SESSION_SECS: u64 = 12 * 60 * 60;
/// How far a login's time may be from the coordinator's clock.
const LOGIN_SKEW_SECS: u64 = 5 * 60;

/// The authenticated caller, for handlers (a request extension).
#[derive(Clone, Debug)]
pub(crate) struct Caller(pub Member);

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn is_public(method: &Method, path: &str) -> bool {
    matches!((method, path), (&Method::GET, "/v1/health" | "/openapi.json") | (&Method::POST, "/v1/sessions"))
}

/// What a role may do with a route: read (any member), create requests, approve.
fn allowed(member: &Member, method: &Method, path: &str) -> bool {
    if method == Method::GET {
        return true;
    }
    if path.ends_with("/approvals") || path.ends_with("/rejections") {
        return member.role.may_approve();
    }
    member.role.may_request()
}

/// The middleware: 401 without a live token of a current member, 403 beyond the role.
pub(crate) async fn authenticate(Extract(state): Extract<Arc<State>>, mut request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    if is_public(&method, &path) {
        return next.run(request).await;
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        return unauthenticated("no credentials: log in with `shardvault --identity KEY …` (POST /v1/sessions) and send Authorization: Bearer <token>");
    };
    let fingerprint = match state.db().session(&token_hash(token), now()) {
        Ok(Some(fingerprint)) => fingerprint,
        Ok(None) => return unauthenticated("the token is unknown or expired: log in again"),
        Err(error) => return ApiError::new(ErrorCode::Storage, error.to_string()).into_response(),
    };
    let Some(member) = state.organisation().member(&fingerprint).cloned() else {
        return unauthenticated("the token's key is no longer a member's");
    };
    if !allowed(&member, &method, &path) {
        return ApiError::new(
            ErrorCode::Forbidden,
            format!("{} is a {}, who may not {method} {path}", member.name, member.role),
        )
        .into_response();
    }
    request.extensions_mut().insert(Caller(member));
    next.run(request).await
}

fn unauthenticated(message: &str) -> Response {
    let mut response = ApiError::new(ErrorCode::Unauthenticated, message).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

/// Log in with a member's key: a fresh, once-used SSHSIG (namespace `shardvault-login`).
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", request_body = Login,
    responses(
        (status = 201, description = "a session token", body = Session),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: not a member's key, a stale or replayed login", body = ErrorBody),
    ))]
pub(crate) async fn login(
    Extract(state): Extract<Arc<State>>,
    body: Bytes,
) -> Result<(axum::http::StatusCode, Json<Session>), ApiError> {
    let login: Login = crate::api::parse(&body)?;
    let organisation = state.organisation().state().organisation().to_string();
    let lines: Vec<&str> = login.message.split('\n').collect();
    let [version, org, time, nonce, ""] = lines.as_slice() else {
        return Err(ApiError::bad(
            "the login message has the form shardvault-login-v1\\n<organisation>\\n<time>\\n<nonce>\\n",
        ));
    };
    let time: u64 = time.parse().map_err(|_| ApiError::bad("the login time is not a number"))?;
    if *version != "shardvault-login-v1" || *org != organisation || nonce.len() != 32 || hex::decode(nonce).is_err() {
        return Err(ApiError::new(ErrorCode::Unauthenticated, "the login is for another organisation or malformed"));
    }
    let now = now();
    if time.abs_diff(now) > LOGIN_SKEW_SECS {
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            format!("the login was signed at {time}, now is {now}: check the clock and log in again"),
        ));
    }
    let signature = Approval::from_str(&login.signature).map_err(|e| ApiError::bad(e.to_string()))?;
    let key = signature.claimed_signer().map_err(|e| ApiError::bad(e.to_string()))?;
    let member = state.organisation().member(&key.fingerprint()).cloned().ok_or_else(|| {
        ApiError::new(ErrorCode::Unauthenticated, format!("{} is not a member's key", key.fingerprint()))
    })?;
    member
        .public_key
        .verify_in(LOGIN_NAMESPACE, login.message.as_bytes(), &signature)
        .map_err(|e| ApiError::new(ErrorCode::Unauthenticated, e.to_string()))?;
    let fresh = state.db().use_nonce(nonce, now + 2 * LOGIN_SKEW_SECS, now).map_err(ApiError::storage)?;
    if !fresh {
        return Err(ApiError::new(ErrorCode::Unauthenticated, "this login was used already; sign a new one"));
    }
    let token = format!("{}{}", shardvault_governance::RequestId::random(), shardvault_governance::RequestId::random());
    let expires_at = now + SESSION_SECS;
    state.db().put_session(&token_hash(&token), &key.fingerprint(), expires_at).map_err(ApiError::storage)?;
    tracing::info!(member = %member.name, "logged in");
    Ok((
        axum::http::StatusCode::CREATED,
        Json(Session { token, member: member.name.to_string(), role: member.role.to_string(), expires_at }),
    ))
}
