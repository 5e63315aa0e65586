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

/// What `shardvault address` asked for: the answer must be about exactly this.
#[derive(Debug, Clone)]
pub struct AddressRequest {
    pub key_id: shardvault_mpc::KeyId,
    pub chain: shardvault_chains::Chain,
    /// The path asked for, or the MPCVault path of the index asked for.
    pub path: shardvault_mpc::DerivationPath,
    pub bech32_prefix: Option<String>,
}

impl AddressRequest {
    /// The request for `key`, `chain` and either an explicit `path` or an `index`
    /// (MPCVault's all-hardened `m/9'/0'/coin'/0'/0'/index'`, as the API uses).
    pub fn new(
        key: &str,
        chain: &str,
        index: Option<u32>,
        path: Option<&str>,
        bech32_prefix: Option<&str>,
    ) -> Result<Self> {
        let key_id = key.parse().map_err(|e| anyhow!("--key: {e}"))?;
        let chain: shardvault_chains::Chain = chain.parse()?;
        let path = match (path, index) {
            (Some(path), None) => path.parse()?,
            (None, Some(index)) => format!("m/9'/0'/{}'/0'/0'/{index}'", chain.coin_type()).parse()?,
            _ => return Err(anyhow!("give exactly one of --index or --path")),
        };
        Ok(AddressRequest { key_id, chain, path, bech32_prefix: bech32_prefix.map(str::to_string) })
    }
}

/// An address whose attestations checked out.
#[derive(Debug)]
pub struct VerifiedAddress {
    /// The statement the nodes signed (recomputed from the answer's fields).
    pub statement: shardvault_wire::AddressStatement,
    /// Who signed it.
    pub check: shardvault_wire::AttestationCheck,
}

impl VerifiedAddress {
    /// The verification result, for `--json` and the text output.
    pub fn to_json(&self, cluster_file: &std::path::Path) -> Value {
        serde_json::json!({
            "verified": true,
            "attested_by": self.check.nodes.iter().map(|n| n.0).collect::<Vec<_>>(),
            "required": self.check.required,
            "not_counted": self.check.rejected.iter()
                .map(|(node, why)| serde_json::json!({ "node": node.0, "reason": why })).collect::<Vec<_>>(),
            "address_recomputed": true,
            "cluster": cluster_file.display().to_string(),
        })
    }
}

/// Checks an address answer of the API against the pinned `cluster`: the
/// answer must be for what was asked; the statement is rebuilt from the
/// answer's fields; the address is recomputed here from the attested child
/// public key; and at least max(2, t) distinct nodes pinned in `cluster` must
/// have signed that statement with their identity keys. With at most one
/// hostile node, one honest node then derived this very address itself.
pub fn verify_address(
    answer: &Value,
    request: &AddressRequest,
    cluster: &shardvault_wire::Cluster,
) -> Result<VerifiedAddress> {
    let text = |field: &str| answer[field].as_str().ok_or_else(|| anyhow!("the answer has no {field:?}"));
    let small = |field: &str| {
        answer[field].as_u64().and_then(|v| u8::try_from(v).ok()).ok_or_else(|| anyhow!("the answer has no {field:?}"))
    };
    match answer.get("attestation_version").and_then(Value::as_u64) {
        Some(v) if v == u64::from(shardvault_wire::ADDRESS_ATTESTATION_VERSION) => {}
        Some(v) => return Err(anyhow!("attestation version {v} is not supported by this shardvault")),
        None => return Err(anyhow!("the coordinator returned no address attestations (is it older than this CLI?)")),
    }
    let key_id: shardvault_mpc::KeyId = text("key_id")?.parse().map_err(|e| anyhow!("key_id: {e}"))?;
    let chain: shardvault_chains::Chain = text("chain")?.parse()?;
    let path: shardvault_mpc::DerivationPath = text("path")?.parse()?;
    let bech32_prefix = match &answer["bech32_prefix"] {
        Value::Null => None,
        Value::String(prefix) => Some(prefix.clone()),
        other => return Err(anyhow!("bech32_prefix: {other} is not a string")),
    };
    if key_id != request.key_id {
        return Err(anyhow!("the answer is about key {key_id}, not the key asked for ({})", request.key_id));
    }
    if chain != request.chain || path != request.path || bech32_prefix != request.bech32_prefix {
        return Err(anyhow!(
            "the answer is about {chain} {path} (prefix {bech32_prefix:?}), not what was asked ({} {}, prefix {:?})",
            request.chain,
            request.path,
            request.bech32_prefix
        ));
    }
    let statement = shardvault_wire::AddressStatement {
        key_id,
        scheme: text("scheme")?.parse()?,
        threshold: shardvault_mpc::Threshold::new(small("threshold")?, small("parties")?)?,
        path,
        chain,
        bech32_prefix,
        public_key: hex::decode(text("public_key")?).map_err(|_| anyhow!("public_key is not hex"))?,
        address: text("address")?.to_string(),
    };
    let mut attestations = Vec::new();
    for entry in answer["attestations"].as_array().ok_or_else(|| anyhow!("the answer has no attestations"))? {
        let node = entry["node"].as_u64().and_then(|n| u16::try_from(n).ok());
        let signature = entry["signature"].as_str().and_then(|s| hex::decode(s).ok()).and_then(|s| s.try_into().ok());
        match (node, signature) {
            (Some(node), Some(signature)) => attestations
                .push(shardvault_wire::AddressAttestation { node: shardvault_wire::NodeId(node), signature }),
            _ => return Err(anyhow!("malformed attestation {entry}")),
        }
    }
    let check = statement.verify_attestations(cluster, &attestations)?;
    Ok(VerifiedAddress { statement, check })
}
