//! Address attestations: a node's signed statement "key K (scheme, t-of-n)
//! has at path P the child public key X, whose address on chain C is A".
//!
//! Each node computes every field itself, from its own share and its own
//! cached hardened tweak, and signs the canonical encoding
//! ([`AddressStatement::to_bytes`], docs/FORMATS.md "Address attestation")
//! with its [`NodeIdentity`] under [`ADDRESS_ATTESTATION_DOMAIN`]. A client
//! that pins the cluster file accepts an address only when at least
//! max(2, t) distinct pinned nodes signed the same statement: with at most
//! one hostile node, one of them is honest and derived this very address.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use shardvault_chains::{Chain, KeyType};
use shardvault_types::{DerivationPath, KeyId, Scheme, Threshold};

use crate::{Cluster, Error, NodeId, NodeIdentity};

/// The domain address attestations are signed under.
pub const ADDRESS_ATTESTATION_DOMAIN: &str = "address-attestation";

/// The encoding version of [`AddressStatement::to_bytes`].
pub const ADDRESS_ATTESTATION_VERSION: u8 = 1;

/// What a node attests about one address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressStatement {
    /// The key.
    pub key_id: KeyId,
    /// Its scheme (from the node's own share).
    pub scheme: Scheme,
    /// t-of-n (from the node's own share).
    pub threshold: Threshold,
    /// The full path (hardened prefix and non-hardened suffix).
    pub path: DerivationPath,
    /// The chain family.
    pub chain: Chain,
    /// Cosmos SDK chains: the bech32 prefix asked for (none: the chain's default).
    pub bech32_prefix: Option<String>,
    /// The child public key at `path`.
    pub public_key: Vec<u8>,
    /// Its address on `chain`.
    pub address: String,
}

/// One node's signature over an [`AddressStatement`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressAttestation {
    /// The node that signed.
    pub node: NodeId,
    /// Ed25519 signature under the node's identity key.
    pub signature: [u8; 64],
}

/// The result of checking attestations against a cluster file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationCheck {
    /// The distinct pinned nodes whose signature verified.
    pub nodes: BTreeSet<NodeId>,
    /// How many were needed: max(2, t).
    pub required: usize,
    /// Attestations not counted, and why.
    pub rejected: Vec<(NodeId, String)>,
}

/// The address of `public_key` on `chain`, the way every party computes it:
/// the chain's default, or for Cosmos SDK chains the given bech32 prefix.
pub fn address_for(
    chain: Chain,
    scheme: Scheme,
    public_key: &[u8],
    bech32_prefix: Option<&str>,
) -> Result<String, Error> {
    let bad = |e: shardvault_chains::Error| Error::BadStatement(e.to_string());
    match (chain, bech32_prefix) {
        (_, None) => chain.address(KeyType::from(scheme), public_key).map_err(bad),
        (Chain::Cosmos, Some(prefix)) if scheme == Scheme::EcdsaSecp256k1 && !prefix.is_empty() => {
            shardvault_chains::cosmos_address(public_key, prefix).map_err(bad)
        }
        (Chain::Cosmos, Some(_)) => {
            Err(Error::BadStatement(format!("cosmos addresses need an ECDSA key and a non-empty prefix ({scheme})")))
        }
        (chain, Some(_)) => Err(Error::BadStatement(format!("{chain} addresses have no bech32 prefix to choose"))),
    }
}

pub(crate) fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    // Fields are far below 4 GiB (a path has at most 255 components).
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

impl AddressStatement {
    /// The canonical encoding that is signed (docs/FORMATS.md "Address
    /// attestation"): `u8 version = 1`, then every field as `u32be length ‖
    /// bytes`: key id (16 bytes), scheme name, t (1 byte), n (1 byte), path
    /// (u32be per component), chain name, bech32 prefix (`u8 0` for none, or
    /// `u8 1` and the prefix, inside the field), child public key, address.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![ADDRESS_ATTESTATION_VERSION];
        field(&mut out, self.key_id.as_bytes());
        field(&mut out, self.scheme.as_str().as_bytes());
        field(&mut out, &[self.threshold.threshold()]);
        field(&mut out, &[self.threshold.parties()]);
        field(&mut out, &self.path.encode());
        field(&mut out, self.chain.name().as_bytes());
        let prefix = match &self.bech32_prefix {
            None => vec![0],
            Some(prefix) => [&[1u8][..], prefix.as_bytes()].concat(),
        };
        field(&mut out, &prefix);
        field(&mut out, &self.public_key);
        field(&mut out, self.address.as_bytes());
        out
    }

    /// How many distinct nodes must attest: max(2, t). Two, because one
    /// node may be hostile; t, because fewer than t nodes are not the key.
    pub fn required_attestations(&self) -> usize {
        usize::from(self.threshold.threshold()).max(2)
    }

    /// Decodes [`AddressStatement::to_bytes`]'s encoding (and nothing else:
    /// what decodes re-encodes to exactly `bytes`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let bad = |what: &str| Error::BadStatement(format!("address statement: {what}"));
        let (version, mut rest) = bytes.split_first().ok_or_else(|| bad("empty"))?;
        if *version != ADDRESS_ATTESTATION_VERSION {
            return Err(bad(&format!("version {version}, not {ADDRESS_ATTESTATION_VERSION}")));
        }
        let mut next = || -> Result<&[u8], Error> {
            let (length, tail) = rest.split_first_chunk::<4>().ok_or_else(|| bad("truncated"))?;
            let length = usize::try_from(u32::from_be_bytes(*length)).map_err(|_| bad("length"))?;
            let (field, tail) = tail.split_at_checked(length).ok_or_else(|| bad("truncated"))?;
            rest = tail;
            Ok(field)
        };
        let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).map_err(|_| bad("text is not UTF-8"));
        let key_id = KeyId::from_bytes(next()?.try_into().map_err(|_| bad("key id"))?);
        let scheme: Scheme = text(next()?)?.parse().map_err(|_| bad("scheme"))?;
        let (&[t], &[n]) = (next()?, next()?) else { return Err(bad("threshold")) };
        let threshold = Threshold::new(t, n).map_err(|_| bad("threshold"))?;
        let components = next()?
            .chunks(4)
            .map(|c| <[u8; 4]>::try_from(c).map(u32::from_be_bytes).map_err(|_| bad("path")))
            .collect::<Result<Vec<u32>, Error>>()?;
        let path = DerivationPath::from_components(components).map_err(|_| bad("path"))?;
        let chain: Chain = text(next()?)?.parse().map_err(|_| bad("chain"))?;
        let bech32_prefix = match next()?.split_first() {
            Some((0, [])) => None,
            Some((1, prefix)) => Some(text(prefix)?),
            _ => return Err(bad("bech32 prefix")),
        };
        let public_key = next()?.to_vec();
        let address = text(next()?)?;
        let statement = AddressStatement { key_id, scheme, threshold, path, chain, bech32_prefix, public_key, address };
        if statement.to_bytes() != bytes {
            return Err(bad("not in canonical form"));
        }
        Ok(statement)
    }

    /// Signs the statement as `identity`.
    pub fn sign(&self, identity: &NodeIdentity) -> [u8; 64] {
        identity.sign(ADDRESS_ATTESTATION_DOMAIN, &self.to_bytes())
    }

    /// Checks that `address` is the address of `public_key` on `chain`
    /// (recomputed here, not taken from whoever sent the statement).
    pub fn check_address(&self) -> Result<(), Error> {
        let computed = address_for(self.chain, self.scheme, &self.public_key, self.bech32_prefix.as_deref())?;
        if computed != self.address {
            return Err(Error::BadStatement(format!(
                "the address {} is not the {} address of the attested key (that is {computed})",
                self.address, self.chain
            )));
        }
        Ok(())
    }

    /// Checks `attestations` against the identity keys pinned in `cluster`:
    /// the address must be the attested key's, and at least
    /// [`Self::required_attestations`] distinct pinned nodes must have signed
    /// exactly this statement. Signatures from unknown nodes, invalid
    /// signatures and repeats are not counted (they are listed in `rejected`).
    pub fn verify_attestations(
        &self,
        cluster: &Cluster,
        attestations: &[AddressAttestation],
    ) -> Result<AttestationCheck, Error> {
        self.check_address()?;
        let statement = self.to_bytes();
        let mut nodes = BTreeSet::new();
        let mut rejected = Vec::new();
        for attestation in attestations {
            let node = attestation.node;
            if nodes.contains(&node) {
                rejected.push((node, "a second attestation by the same node".to_string()));
                continue;
            }
            let verified = cluster
                .identity_of(node)
                .and_then(|key| key.verify(ADDRESS_ATTESTATION_DOMAIN, &statement, &attestation.signature));
            match verified {
                Ok(()) => {
                    nodes.insert(node);
                }
                Err(error) => rejected.push((node, error.to_string())),
            }
        }
        let required = self.required_attestations();
        if nodes.len() < required {
            let why: BTreeMap<NodeId, &String> = rejected.iter().map(|(n, why)| (*n, why)).collect();
            let why: Vec<String> = why.iter().map(|(n, why)| format!("node {n}: {why}")).collect();
            let by = match nodes.is_empty() {
                true => String::new(),
                false => format!(" (node {})", nodes.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
            };
            return Err(Error::BadStatement(format!(
                "the address {} is attested by {} distinct pinned node(s){by}; {required} are needed{}",
                self.address,
                nodes.len(),
                if why.is_empty() { String::new() } else { format!("; not counted: {}", why.join("; ")) }
            )));
        }
        Ok(AttestationCheck { nodes, required, rejected })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement() -> AddressStatement {
        // The secp256k1 generator as the child key.
        let public_key =
            hex::decode("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798").unwrap_or_default();
        let address = address_for(Chain::Ethereum, Scheme::EcdsaSecp256k1, &public_key, None).unwrap();
        AddressStatement {
            key_id: KeyId::from_bytes([7; 16]),
            scheme: Scheme::EcdsaSecp256k1,
            threshold: Threshold::new(2, 3).unwrap(),
            path: "m/9'/0'/60'/0'/0'/0'".parse().unwrap(),
            chain: Chain::Ethereum,
            bech32_prefix: None,
            public_key,
            address,
        }
    }

    #[test]
    fn a_statement_decodes_from_its_bytes_and_nothing_else() {
        for prefix in [None, Some("osmo".to_string())] {
            let statement = AddressStatement { bech32_prefix: prefix, ..statement() };
            let bytes = statement.to_bytes();
            assert_eq!(AddressStatement::from_bytes(&bytes).unwrap(), statement);
            for cut in 0..bytes.len() {
                assert!(AddressStatement::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(AddressStatement::from_bytes(&longer).is_err());
        }
    }

    #[test]
    fn the_encoding_is_pinned() {
        let s = statement();
        let bytes = s.to_bytes();
        let mut expected = vec![1u8];
        for f in [
            &[7u8; 16][..],
            b"ecdsa-secp256k1",
            &[2],
            &[3],
            &s.path.encode(),
            b"ethereum",
            &[0],
            &s.public_key,
            s.address.as_bytes(),
        ] {
            expected.extend_from_slice(&(f.len() as u32).to_be_bytes());
            expected.extend_from_slice(f);
        }
        assert_eq!(bytes, expected);
        assert_eq!(s.address, "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf");
        let with_prefix = AddressStatement { bech32_prefix: Some(String::new()), ..s.clone() };
        assert_ne!(with_prefix.to_bytes(), bytes, "an empty prefix is not no prefix");
    }

    #[test]
    fn two_distinct_pinned_nodes_are_needed() {
        let s = statement();
        let (coordinator_secret, coordinator) = crate::generate_keypair().unwrap();
        drop(coordinator_secret);
        let mut nodes = BTreeMap::new();
        let mut identities = BTreeMap::new();
        let mut signers = BTreeMap::new();
        for i in 1..=3 {
            let (secret, public) = crate::generate_keypair().unwrap();
            nodes.insert(NodeId(i), public);
            identities.insert(NodeId(i), NodeIdentity::derive(&secret).public());
            signers.insert(NodeId(i), NodeIdentity::derive(&secret));
        }
        let cluster = Cluster { coordinator, nodes, identities };
        let by = |i: u16| AddressAttestation { node: NodeId(i), signature: s.sign(&signers[&NodeId(i)]) };
        let check = s.verify_attestations(&cluster, &[by(1), by(3)]).unwrap();
        assert_eq!(check.nodes, BTreeSet::from([NodeId(1), NodeId(3)]));
        assert!(s.verify_attestations(&cluster, &[by(1)]).is_err());
        assert!(s.verify_attestations(&cluster, &[by(1), by(1)]).is_err());
        // Node 2's signature presented as node 3's.
        let misattributed = AddressAttestation { node: NodeId(3), signature: by(2).signature };
        assert!(s.verify_attestations(&cluster, &[by(1), misattributed]).is_err());
        // Another address under the same signatures.
        let other = AddressStatement { address: "0x0000000000000000000000000000000000000001".into(), ..s.clone() };
        assert!(other.verify_attestations(&cluster, &[by(1), by(2)]).is_err());
    }
}
