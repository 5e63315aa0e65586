//! A small client of the coordinator's REST API.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// The API at one base URL.
pub struct Api {
    base: String,
    agent: ureq::Agent,
}

impl Api {
    /// The API at a plain `http://` URL on loopback (devnet, demo, bench).
    pub fn new(base: &str) -> Self {
        Self::with_tls(base, None)
    }

    /// The API at `base`: `https://` with the server certificate verified
    /// against the CA certificates in `tls_ca` only (never the system store),
    /// or plain `http://` on a loopback address (elsewhere only with
    /// `insecure_plaintext`).
    pub fn connect(base: &str, tls_ca: Option<&Path>, insecure_plaintext: bool) -> Result<Self> {
        let uri: ureq::http::Uri = base.parse().with_context(|| format!("the API URL {base:?}"))?;
        match (uri.scheme_str(), tls_ca) {
            (Some("https"), Some(ca)) => {
                let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
                let mut roots = Vec::new();
                for item in ureq::tls::parse_pem(&pem) {
                    if let ureq::tls::PemItem::Certificate(cert) = item.with_context(|| format!("{}", ca.display()))? {
                        roots.push(cert);
                    }
                }
                if roots.is_empty() {
                    bail!("{} holds no PEM certificate", ca.display());
                }
                let tls = ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
                    .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .build();
                Ok(Self::with_tls(base, Some(tls)))
            }
            (Some("https"), None) => bail!(
                "an https:// API needs --tls-ca FILE (SHARDVAULT_TLS_CA): the CA certificate that signed the \
                 coordinator's certificate; the system's CA store alone is not trusted for this"
            ),
            (Some("http"), Some(_)) => bail!("--tls-ca is given but the API URL is http://; use https://"),
            (Some("http"), None) => {
                if !is_loopback(uri.host().unwrap_or_default()) {
                    if !insecure_plaintext {
                        bail!(
                            "refusing plain http:// to {base}, which is not a loopback address: use https:// \
                             with --tls-ca (or --insecure-plaintext on a network you trust)"
                        );
                    }
                    tracing::warn!(%base, "PLAIN HTTP TO A NON-LOOPBACK ADDRESS: answers can be read and changed");
                }
                Ok(Self::new(base))
            }
            _ => bail!("the API URL must start with https:// or http://"),
        }
    }

    fn with_tls(base: &str, tls: Option<ureq::tls::TlsConfig>) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(180)));
        let config = match tls {
            // No redirect may leave TLS.
            Some(tls) => config.tls_config(tls).https_only(true),
            None => config,
        };
        Api { base: base.trim_end_matches('/').to_string(), agent: config.build().new_agent() }
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        let response = self.agent.get(format!("{}{path}", self.base)).call()?;
        answer(response)
    }

    /// POSTs `body` with an idempotency key, so a retried command is safe.
    pub fn post(&self, path: &str, body: &Value, idempotency_key: Option<&str>) -> Result<Value> {
        let mut request = self.agent.post(format!("{}{path}", self.base));
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        answer(request.send_json(body)?)
    }
}

fn answer(mut response: ureq::http::Response<ureq::Body>) -> Result<Value> {
    let status = response.status();
    let body: Value = response.body_mut().read_json().unwrap_or(Value::Null);
    if status.is_success() {
        Ok(body)
    } else {
        Err(anyhow!(
            "{} ({}): {}",
            body["code"].as_str().unwrap_or("error"),
            status.as_u16(),
            body["message"].as_str().unwrap_or("")
        ))
    }
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
            assert!(Api::connect(url, None, false).is_ok(), "{url}");
        }
        let refused = Api::connect("http://192.0.2.1:8780", None, false).err().unwrap();
        assert!(refused.to_string().contains("not a loopback"), "{refused}");
        assert!(Api::connect("http://192.0.2.1:8780", None, true).is_ok());
        let refused = Api::connect("https://127.0.0.1:8780", None, false).err().unwrap();
        assert!(refused.to_string().contains("--tls-ca"), "{refused}");
        assert!(Api::connect("ftp://127.0.0.1", None, false).is_err());
    }
}
