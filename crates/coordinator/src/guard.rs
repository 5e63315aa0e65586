//! Cross-site requests are refused, so that a web page open in a browser on
//! an operator's machine cannot drive the API:
//! - a `Host` that is not one of the coordinator's names is refused (421),
//!   which stops DNS rebinding (a page on `evil.example` whose name now
//!   resolves to 127.0.0.1 sends `Host: evil.example`);
//! - a request whose `Origin` is not the coordinator itself, or that the
//!   browser marks `Sec-Fetch-Site: cross-site`/`same-site`, is refused (403);
//! - every POST must say `Content-Type: application/json` (415 otherwise:
//!   a cross-site form or `fetch` without a CORS preflight can only send
//!   `text/plain`, form or multipart bodies), and its body, if any, must be JSON;
//! - no CORS headers are ever sent, so a preflight allows nothing.
//!
//! These checks are about browsers; the API has no authentication yet.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::uri::Authority;
use axum::http::{header, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

use shardvault_api::ErrorCode;

use crate::api::ApiError;

/// The largest POST body read (axum's default body limit).
const MAX_BODY: usize = 2 * 1024 * 1024;

/// The host names clients may put in `Host`: compared without port, lowercase.
#[derive(Debug)]
pub(crate) struct Hosts(BTreeSet<String>);

impl Hosts {
    /// The bind address (unless it is 0.0.0.0 or ::), `localhost`, the
    /// loopback addresses, and `extra` (names or addresses, a port is ignored).
    pub(crate) fn new(bind: IpAddr, extra: &[String]) -> Self {
        let mut names: BTreeSet<String> = ["localhost", "127.0.0.1", "::1"].into_iter().map(String::from).collect();
        if !bind.is_unspecified() {
            names.insert(bind.to_string());
        }
        names.extend(extra.iter().filter_map(|name| host_of(name)));
        Hosts(names)
    }

    fn allows(&self, authority: &str) -> bool {
        host_of(authority).is_some_and(|host| self.0.contains(&host))
    }
}

/// The host of an authority (`name`, `name:port`, `[v6]:port`): lowercase,
/// without brackets or a trailing dot.
fn host_of(authority: &str) -> Option<String> {
    let authority: Authority = authority.trim().parse().ok()?;
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').trim_end_matches('.');
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Wraps every route of `router` (API and relay) in the checks: the host and
/// cross-site checks on every request, the body checks on every POST that
/// reaches a route (a POST to a GET-only path is 405, as the OpenAPI says).
pub(crate) fn layer(router: Router, hosts: Hosts) -> Router {
    router
        .route_layer(axum::middleware::from_fn(json_post))
        .layer(axum::middleware::from_fn_with_state(Arc::new(hosts), check))
}

async fn check(State(hosts): State<Arc<Hosts>>, request: Request, next: Next) -> Response {
    if let Err(refused) = cross_site(&hosts, &request) {
        return refused.into_response();
    }
    next.run(request).await
}

/// The route templates that take a POST, from the generated OpenAPI document.
static POST_ROUTES: std::sync::LazyLock<BTreeSet<String>> = std::sync::LazyLock::new(|| {
    let document = crate::api::document();
    let paths = document.get("paths").and_then(serde_json::Value::as_object);
    paths.into_iter().flatten().filter(|(_, item)| item.get("post").is_some()).map(|(path, _)| path.clone()).collect()
});

async fn json_post(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_string());
    let takes_post = route.is_some_and(|route| POST_ROUTES.contains(&route));
    let request = if request.method() == Method::POST && takes_post {
        match json_body(request).await {
            Ok(request) => request,
            Err(refused) => return refused.into_response(),
        }
    } else {
        request
    };
    next.run(request).await
}

fn cross_site(hosts: &Hosts, request: &Request) -> Result<(), ApiError> {
    let headers = request.headers();
    let host = match headers.get(header::HOST) {
        Some(host) => host.to_str().ok(),
        None => request.uri().authority().map(Authority::as_str),
    }
    .ok_or_else(|| ApiError::new(ErrorCode::UnknownHost, "the request names no host"))?;
    if !hosts.allows(host) {
        return Err(ApiError::new(
            ErrorCode::UnknownHost,
            format!(
                "this coordinator does not answer to the host name {host:?}; if it is the coordinator's own \
                 name, start it with --allowed-host"
            ),
        ));
    }
    let foreign = || ApiError::new(ErrorCode::CrossSite, "cross-site requests are refused");
    if let Some(site) = headers.get("sec-fetch-site") {
        if !matches!(site.as_bytes(), b"same-origin" | b"none") {
            return Err(foreign());
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        // A browser sent it: it must be the coordinator's own origin.
        let same = origin
            .to_str()
            .ok()
            .and_then(|origin| origin.parse::<Uri>().ok())
            .and_then(|origin| origin.authority().map(|a| a.as_str().eq_ignore_ascii_case(host)))
            .unwrap_or(false);
        if !same {
            return Err(foreign());
        }
    }
    Ok(())
}

/// A POST must declare a JSON body and, if it has one, send JSON.
async fn json_body(request: Request) -> Result<Request, ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if !declared {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "POST bodies must be sent with Content-Type: application/json",
        ));
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::new(ErrorCode::BodyTooLarge, "the request body is unreadable or over 2 MiB"))?;
    if !bytes.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_err() {
        return Err(ApiError::new(ErrorCode::InvalidRequest, "the request body is not JSON"));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{http, owner_authorization, recorded, start};

    const KEY: &str = r#"{"scheme":"ecdsa-secp256k1","threshold":2,"parties":3}"#;

    fn code(body: &str) -> String {
        serde_json::from_str::<serde_json::Value>(body).unwrap()["code"].as_str().unwrap_or_default().to_string()
    }

    #[tokio::test]
    async fn a_cross_site_simple_post_is_refused_and_nothing_runs() {
        let c = start(None).await;
        let host = c.address.to_string();
        // What a page can send without a preflight: text/plain, a form, or no type.
        for content_type in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            None,
        ] {
            let mut headers = vec![("Host", host.as_str())];
            headers.extend(content_type.map(|t| ("Content-Type", t)));
            let (status, _, body) = http(&c, "POST", "/v1/keys", &headers, KEY).await;
            assert_eq!((status, code(&body).as_str()), (415, "unsupported_media_type"), "{content_type:?}: {body}");
        }
        assert_eq!(recorded(&c), 0, "a refused request ran");
        // The same request as JSON, by a member, reaches the handler (which finds no nodes).
        let auth = owner_authorization(&c).await;
        let headers = [
            ("Host", host.as_str()),
            ("Content-Type", "application/json; charset=utf-8"),
            ("Authorization", auth.as_str()),
        ];
        let (status, _, body) = http(&c, "POST", "/v1/keys", &headers, KEY).await;
        assert_eq!((status, code(&body).as_str()), (503, "not_enough_nodes"), "{body}");
        assert_eq!(recorded(&c), 1);
    }

    #[tokio::test]
    async fn a_foreign_host_is_refused() {
        let c = start(None).await;
        let port = c.address.port();
        // DNS rebinding: evil.example now resolves to 127.0.0.1.
        let evil = format!("evil.example:{port}");
        let (status, _, body) = http(&c, "GET", "/v1/keys", &[("Host", &evil)], "").await;
        assert_eq!((status, code(&body).as_str()), (421, "unknown_host"), "{body}");
        let json = [("Host", evil.as_str()), ("Content-Type", "application/json")];
        let (status, _, _) = http(&c, "POST", "/v1/keys", &json, KEY).await;
        assert_eq!(status, 421);
        let (status, _, _) = http(&c, "GET", "/v1/relay", &[("Host", &evil)], "").await;
        assert_eq!(status, 421, "the relay checks the host too");
        assert_eq!(recorded(&c), 0);
        for ok in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), "vault.example.org".to_string()] {
            let (status, _, body) = http(&c, "GET", "/v1/health", &[("Host", &ok)], "").await;
            assert_eq!(status, 200, "{ok}: {body}");
        }
    }

    #[tokio::test]
    async fn a_preflight_gets_no_cors_headers_and_a_foreign_origin_is_refused() {
        let c = start(None).await;
        let host = c.address.to_string();
        let preflight = [
            ("Host", host.as_str()),
            ("Origin", "http://evil.example"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ];
        let (status, headers, _) = http(&c, "OPTIONS", "/v1/keys", &preflight, "").await;
        assert!(!(200..300).contains(&status), "preflight answered {status}");
        assert!(headers.iter().all(|(name, _)| !name.starts_with("access-control-")), "{headers:?}");
        let origin = format!("http://{host}");
        for (name, value) in [("Origin", "http://evil.example"), ("Origin", "null"), ("Sec-Fetch-Site", "same-site")] {
            let headers = [("Host", host.as_str()), ("Content-Type", "application/json"), (name, value)];
            let (status, headers, body) = http(&c, "POST", "/v1/keys", &headers, KEY).await;
            assert_eq!((status, code(&body).as_str()), (403, "cross_site"), "{name}: {value}");
            assert!(headers.iter().all(|(name, _)| !name.starts_with("access-control-")));
        }
        assert_eq!(recorded(&c), 0);
        // The coordinator's own origin may call it.
        let auth = owner_authorization(&c).await;
        let headers = [
            ("Host", host.as_str()),
            ("Content-Type", "application/json"),
            ("Origin", origin.as_str()),
            ("Authorization", auth.as_str()),
        ];
        let (status, _, _) = http(&c, "POST", "/v1/keys", &headers, KEY).await;
        assert_eq!(status, 503);
    }

    #[tokio::test]
    async fn a_body_less_post_refuses_a_body_that_is_not_json() {
        let c = start(None).await;
        let host = c.address.to_string();
        let path = format!("/v1/keys/{}/refresh", shardvault_types::KeyId::random());
        let auth = owner_authorization(&c).await;
        let headers = [("Host", host.as_str()), ("Content-Type", "application/json"), ("Authorization", auth.as_str())];
        let (status, _, body) = http(&c, "POST", &path, &headers, "scheme=x&threshold=2").await;
        assert_eq!((status, code(&body).as_str()), (400, "invalid_request"), "{body}");
        assert_eq!(recorded(&c), 0);
        // Empty, or `{}`, reaches the handler.
        for body in ["", "{}"] {
            let (status, _, answer) = http(&c, "POST", &path, &headers, body).await;
            assert_eq!((status, code(&answer).as_str()), (404, "unknown_key"), "{body:?}");
        }
    }

    #[tokio::test]
    async fn a_post_to_a_get_only_path_is_405_whatever_its_content_type() {
        let c = start(None).await;
        let host = c.address.to_string();
        let auth = owner_authorization(&c).await;
        for path in ["/v1/health", "/v1/requests/x"] {
            let headers = [("Host", host.as_str()), ("Authorization", auth.as_str())];
            let (status, _, body) = http(&c, "POST", path, &headers, "").await;
            assert_eq!(status, 405, "{path}: {body}");
        }
        // A foreign host is still refused first.
        let (status, _, _) = http(&c, "POST", "/v1/health", &[("Host", "evil.example")], "").await;
        assert_eq!(status, 421);
    }

    #[test]
    fn only_the_coordinators_own_names_are_hosts() {
        let hosts = Hosts::new("10.0.0.5".parse().unwrap(), &["Vault.Example.org".into(), "[fd00::1]:8780".into()]);
        for ok in [
            "localhost:8780",
            "LOCALHOST",
            "127.0.0.1:1",
            "[::1]:8780",
            "10.0.0.5:8780",
            "vault.example.org.",
            "[fd00::1]",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for bad in ["evil.example:8780", "127.0.0.2", "10.0.0.6:8780", "vault.example.org.evil.example", "", "a b"] {
            assert!(!hosts.allows(bad), "{bad}");
        }
        // Bound to every address: only the named ones.
        let any = Hosts::new("0.0.0.0".parse().unwrap(), &[]);
        assert!(!any.allows("0.0.0.0:8780") && any.allows("localhost"));
    }
}
