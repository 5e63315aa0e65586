//! Backup statements: a node's signed record of one backup export, "for
//! export request R of organisation O, I, node N, holding party p of key K
//! (scheme, t-of-n, root public key X) at epoch e, sealed my share to the
//! party recipients L into the age file with SHA-256 h, and shares of my
//! chain seed for the other parties into the files with SHA-256 h_q; the
//! key's parties are held by the nodes M; the hardened paths I derived have
//! the child public keys D".
//!
//! age has no sender authentication: anyone who knows the recipients can
//! encrypt something else to them. The statement is what makes a package
//! checkable: a verifier rebuilds it from the package and the files in it,
//! and checks the node's signature with the identity key the cluster file
//! pins (docs/FORMATS.md "Backup statement"). The coordinator, which
//! assembles the package, cannot make one.

use std::collections::BTreeMap;

use shardvault_types::{DerivationPath, Epoch, KeyId, PartyId, Scheme, Threshold};

use crate::attestation::field;
use crate::{Cluster, Error, NodeId, NodeIdentity};

/// The domain backup statements are signed under.
pub const BACKUP_STATEMENT_DOMAIN: &str = "backup-statement";

/// The encoding version of [`BackupStatement::to_bytes`].
pub const BACKUP_STATEMENT_VERSION: u8 = 1;

/// What a node states about the files it sealed for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupStatement {
    /// The organisation id (hex SHA-256 of its genesis).
    pub organisation: String,
    /// The approved export request.
    pub request_id: String,
    /// The node that sealed.
    pub node: NodeId,
    /// The key.
    pub key_id: KeyId,
    /// Its scheme (from the node's own share).
    pub scheme: Scheme,
    /// t-of-n (from the node's own share).
    pub threshold: Threshold,
    /// The epoch of the share sealed.
    pub epoch: Epoch,
    /// The node's party.
    pub party: PartyId,
    /// Every party's node: the key's pinned party map. Signing it makes a
    /// node's claim to a party checkable against the others' signatures.
    pub nodes: BTreeMap<PartyId, NodeId>,
    /// The key's root public key `X` (from the node's own share).
    pub root_public_key: Vec<u8>,
    /// Every party's recipient (OpenSSH line), in party order.
    pub recipients: Vec<String>,
    /// SHA-256 of the age file holding this party's share.
    pub sealed_sha256: [u8; 32],
    /// For every other party: SHA-256 of the age file holding its share of
    /// this party's chain seed.
    pub seed_shares_sha256: BTreeMap<PartyId, [u8; 32]>,
    /// Every hardened path this node derived for the key, with its child
    /// public key `X'` (the same on every node): what recovered chain seeds
    /// are checked against.
    pub hardened: BTreeMap<DerivationPath, Vec<u8>>,
}

/// A count, as the encoding writes it (u32be; no list here comes near).
fn count(out: &mut Vec<u8>, n: usize) {
    field(out, &u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

/// A recipient as signed: its key type and key, without the comment (which
/// age ignores and the coordinator could change).
fn recipient_key(line: &str) -> String {
    line.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

impl BackupStatement {
    /// The canonical encoding that is signed (docs/FORMATS.md "Backup
    /// statement"): `u8 version = 1`, then every field as `u32be length ‖
    /// bytes`: organisation, request id, node id (u16be), key id (16 bytes),
    /// scheme name, t, n, epoch (u32be), party (1 byte), the number of
    /// parties (u32be) and for each, in party order, the party (1 byte) and
    /// its node (u16be), root public key, the number of recipients (u32be)
    /// and each recipient's key type and key (`ssh-ed25519 AAAA…`, no
    /// comment), the share file's SHA-256, the number of seed-share files
    /// (u32be) and for each, in party order, the party (1 byte) and the
    /// file's SHA-256, the number of hardened paths (u32be) and for each, in
    /// path order, the path (u32be per component) and its child public key.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![BACKUP_STATEMENT_VERSION];
        field(&mut out, self.organisation.as_bytes());
        field(&mut out, self.request_id.as_bytes());
        field(&mut out, &self.node.0.to_be_bytes());
        field(&mut out, self.key_id.as_bytes());
        field(&mut out, self.scheme.as_str().as_bytes());
        field(&mut out, &[self.threshold.threshold()]);
        field(&mut out, &[self.threshold.parties()]);
        field(&mut out, &self.epoch.0.to_be_bytes());
        field(&mut out, &[self.party.get()]);
        count(&mut out, self.nodes.len());
        for (party, node) in &self.nodes {
            field(&mut out, &[party.get()]);
            field(&mut out, &node.0.to_be_bytes());
        }
        field(&mut out, &self.root_public_key);
        count(&mut out, self.recipients.len());
        for recipient in &self.recipients {
            field(&mut out, recipient_key(recipient).as_bytes());
        }
        field(&mut out, &self.sealed_sha256);
        count(&mut out, self.seed_shares_sha256.len());
        for (party, digest) in &self.seed_shares_sha256 {
            field(&mut out, &[party.get()]);
            field(&mut out, digest);
        }
        count(&mut out, self.hardened.len());
        for (path, public_key) in &self.hardened {
            field(&mut out, &path.encode());
            field(&mut out, public_key);
        }
        out
    }

    /// Signs the statement as `identity`.
    pub fn sign(&self, identity: &NodeIdentity) -> [u8; 64] {
        identity.sign(BACKUP_STATEMENT_DOMAIN, &self.to_bytes())
    }

    /// Checks `signature` over the statement with the identity key `cluster`
    /// pins for [`Self::node`].
    pub fn verify(&self, cluster: &Cluster, signature: &[u8; 64]) -> Result<(), Error> {
        cluster.identity_of(self.node)?.verify(BACKUP_STATEMENT_DOMAIN, &self.to_bytes(), signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement() -> BackupStatement {
        BackupStatement {
            organisation: "ab".repeat(32),
            request_id: "req-1".into(),
            node: NodeId(2),
            key_id: KeyId::from_bytes([7; 16]),
            scheme: Scheme::EcdsaSecp256k1,
            threshold: Threshold::new(2, 3).unwrap(),
            epoch: Epoch(4),
            party: PartyId::new(2).unwrap(),
            nodes: (1..=3).map(|p| (PartyId::new(p).unwrap(), NodeId(u16::from(p)))).collect(),
            root_public_key: vec![2; 33],
            recipients: vec![
                "ssh-ed25519 AAAA1 one".into(),
                "ssh-ed25519 AAAA2 two".into(),
                "ssh-ed25519 AAAA3".into(),
            ],
            sealed_sha256: [9; 32],
            seed_shares_sha256: [(1, [1; 32]), (3, [3; 32])]
                .into_iter()
                .map(|(p, d)| (PartyId::new(p).unwrap(), d))
                .collect(),
            hardened: [("m/9'/0'/60'/0'/0'/0'".parse().unwrap(), vec![2; 33])].into_iter().collect(),
        }
    }

    #[test]
    fn every_field_is_signed() {
        let base = statement().to_bytes();
        let mut changed = vec![
            BackupStatement { organisation: "cd".repeat(32), ..statement() },
            BackupStatement { request_id: "req-2".into(), ..statement() },
            BackupStatement { node: NodeId(3), ..statement() },
            BackupStatement { key_id: KeyId::from_bytes([8; 16]), ..statement() },
            BackupStatement { scheme: Scheme::SchnorrSecp256k1, ..statement() },
            BackupStatement { threshold: Threshold::new(3, 3).unwrap(), ..statement() },
            BackupStatement { epoch: Epoch(5), ..statement() },
            BackupStatement { party: PartyId::new(1).unwrap(), ..statement() },
            BackupStatement { root_public_key: vec![3; 33], ..statement() },
            BackupStatement { sealed_sha256: [8; 32], ..statement() },
        ];
        let mut recipients = statement();
        recipients.recipients.swap(0, 1);
        changed.push(recipients);
        let mut map = statement();
        map.nodes.insert(PartyId::new(1).unwrap(), NodeId(4));
        changed.push(map);
        let mut seeds = statement();
        seeds.seed_shares_sha256.insert(PartyId::new(3).unwrap(), [4; 32]);
        changed.push(seeds);
        let mut fewer = statement();
        fewer.seed_shares_sha256.remove(&PartyId::new(1).unwrap());
        changed.push(fewer);
        let mut stripped = statement();
        stripped.hardened.clear();
        changed.push(stripped);
        let mut moved = statement();
        moved.hardened = [("m/9'/0'/60'/0'/0'/1'".parse().unwrap(), vec![2; 33])].into_iter().collect();
        changed.push(moved);
        for other in changed {
            assert_ne!(other.to_bytes(), base, "{other:?}");
        }
    }

    #[test]
    fn a_recipients_comment_is_not_signed() {
        let mut commented = statement();
        commented.recipients[0] = "ssh-ed25519 AAAA1  another comment".into();
        assert_eq!(commented.to_bytes(), statement().to_bytes());
    }

    #[test]
    fn a_signature_verifies_only_for_the_pinned_node_and_the_same_statement() {
        let (_, coordinator) = crate::generate_keypair().unwrap();
        let mut nodes = BTreeMap::new();
        let mut identities = BTreeMap::new();
        let mut signers = Vec::new();
        for i in 1..=3u16 {
            let (secret, public) = crate::generate_keypair().unwrap();
            nodes.insert(NodeId(i), public);
            let identity = NodeIdentity::derive(&secret);
            identities.insert(NodeId(i), identity.public());
            signers.push(identity);
        }
        let cluster = Cluster { coordinator, nodes, identities };
        let identities = signers;
        let statement = statement();
        let signature = statement.sign(&identities[1]);
        assert!(statement.verify(&cluster, &signature).is_ok());
        // Signed by another node than the one it names.
        assert!(statement.verify(&cluster, &statement.sign(&identities[0])).is_err());
        // Another statement.
        let other = BackupStatement { epoch: Epoch(5), ..statement.clone() };
        assert!(other.verify(&cluster, &signature).is_err());
        // An address attestation's signature over the same bytes is not a backup statement's.
        let cross = identities[1].sign(crate::ADDRESS_ATTESTATION_DOMAIN, &statement.to_bytes());
        assert!(statement.verify(&cluster, &cross).is_err());
        // A node the cluster file does not pin.
        let unpinned = BackupStatement { node: NodeId(9), ..statement.clone() };
        assert!(unpinned.verify(&cluster, &unpinned.sign(&identities[1])).is_err());
    }
}
