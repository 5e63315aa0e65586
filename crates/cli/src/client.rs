//! The CLI's side of the REST API: the client is `shardvault-client`; this
//! module checks address answers against the pinned cluster file.

use anyhow::{anyhow, Result};
use serde_json::Value;
pub use shardvault_client::{is_loopback, Client as Api};

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
    answer: &shardvault_api::AttestedAddress,
    request: &AddressRequest,
    cluster: &shardvault_wire::Cluster,
) -> Result<VerifiedAddress> {
    if answer.attestation_version != shardvault_wire::ADDRESS_ATTESTATION_VERSION {
        return Err(anyhow!("attestation version {} is not supported by this shardvault", answer.attestation_version));
    }
    let key_id: shardvault_mpc::KeyId = answer.key_id.parse().map_err(|e| anyhow!("key_id: {e}"))?;
    let chain: shardvault_chains::Chain = answer.chain.parse()?;
    let path: shardvault_mpc::DerivationPath = answer.path.parse()?;
    let bech32_prefix = answer.bech32_prefix.clone();
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
        scheme: answer.scheme.parse()?,
        threshold: shardvault_mpc::Threshold::new(answer.threshold, answer.parties)?,
        path,
        chain,
        bech32_prefix,
        public_key: hex::decode(&answer.public_key).map_err(|_| anyhow!("public_key is not hex"))?,
        address: answer.address.clone(),
    };
    let mut attestations = Vec::new();
    for entry in &answer.attestations {
        let signature = hex::decode(&entry.signature).ok().and_then(|s| s.try_into().ok());
        match signature {
            Some(signature) => attestations
                .push(shardvault_wire::AddressAttestation { node: shardvault_wire::NodeId(entry.node), signature }),
            None => return Err(anyhow!("malformed attestation of node {}: {:?}", entry.node, entry.signature)),
        }
    }
    let check = statement.verify_attestations(cluster, &attestations)?;
    Ok(VerifiedAddress { statement, check })
}
