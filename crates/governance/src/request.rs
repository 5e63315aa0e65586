//! Requests: every state-changing operation, in one canonical, signed form
//! (docs/GOVERNANCE.md, "Requests").

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use shardvault_chains::{Chain, MessageFormat};
use shardvault_types::{DerivationPath, KeyId, Scheme, Threshold};

use crate::canonical::{self, hex_bytes, sha256, text};
use crate::{Error, MemberKey, MemberName, OrganisationId, Policy, Role};

/// How long a request lives unless its creator says otherwise.
pub const DEFAULT_LIFETIME_SECS: u64 = 24 * 60 * 60;
/// The longest a request may live.
pub const MAX_LIFETIME_SECS: u64 = 30 * 24 * 60 * 60;
/// How far in the future a request's creation time may lie (clock skew).
pub const MAX_CLOCK_SKEW_SECS: u64 = 5 * 60;

/// A request id: 16 random bytes, 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub [u8; 16]);

impl RequestId {
    /// A fresh random id.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
        RequestId(bytes)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({self})")
    }
}

impl FromStr for RequestId {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self, Error> {
        let bytes = (text.len() == 32 && !text.bytes().any(|b| b.is_ascii_uppercase()))
            .then(|| hex::decode(text).ok())
            .flatten()
            .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok());
        bytes
            .map(RequestId)
            .ok_or_else(|| Error::Governance(format!("request id {text:?}: expected 32 lowercase hex digits")))
    }
}

/// One request, as its creator made it and its approvers signed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Format version: 1.
    pub version: u32,
    /// The organisation it is for.
    #[serde(with = "text")]
    pub organisation: OrganisationId,
    /// Unique.
    #[serde(with = "text")]
    pub id: RequestId,
    /// The creator's key fingerprint (`SHA256:…`).
    pub creator: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds; nodes refuse the request from then on.
    pub expires_at: u64,
    /// What it asks.
    pub operation: Operation,
}

/// What a request asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Operation {
    /// Generate a key.
    CreateKey {
        /// Its id.
        #[serde(with = "text")]
        key_id: KeyId,
        /// Its scheme.
        scheme: Scheme,
        /// t-of-n.
        threshold: Threshold,
    },
    /// Derive a hardened path (a new address's hardened prefix).
    DeriveAddress {
        /// The key.
        #[serde(with = "text")]
        key_id: KeyId,
        /// The all-hardened path.
        path: DerivationPath,
    },
    /// Sign with the key at `path`.
    Sign {
        /// The key.
        #[serde(with = "text")]
        key_id: KeyId,
        /// The full path.
        path: DerivationPath,
        /// What is signed.
        payload: Payload,
    },
    /// Refresh every share of a key.
    Refresh {
        /// The key.
        #[serde(with = "text")]
        key_id: KeyId,
    },
    /// Add a member.
    AddMember {
        /// Their name.
        name: MemberName,
        /// Their role.
        role: Role,
        /// Their key.
        public_key: MemberKey,
    },
    /// Remove a member.
    RemoveMember {
        /// Their name.
        name: MemberName,
    },
    /// Replace the policy.
    SetPolicy {
        /// The new policy.
        policy: Policy,
    },
    /// Export an encrypted backup of keys' shares: each party's node seals
    /// its own share to that party's recipient. Needs every member who may
    /// approve (docs/GOVERNANCE.md, "Backups").
    ExportBackup {
        /// The keys, in increasing order, each once.
        #[serde(with = "canonical::text_list")]
        keys: Vec<KeyId>,
        /// One `ssh-ed25519` recipient per party, in party order (party 1 first).
        recipients: Vec<MemberKey>,
    },
    /// Replace a lost node: node `node` is from now on the one holding these
    /// keys, and the other nodes rebuild its share of every key it held
    /// (docs/DESIGN.md "Replacing a lost node"). Needs every member who may
    /// approve, as an export does: the new node receives shares.
    ReplaceNode {
        /// The node id (unchanged: it keeps its party index in every key).
        node: u16,
        /// Its new Noise static public key (X25519), 32 bytes.
        #[serde(with = "hex_bytes")]
        noise_key: Vec<u8>,
        /// Its new identity public key (Ed25519), 32 bytes.
        #[serde(with = "hex_bytes")]
        identity_key: Vec<u8>,
        /// The head of the governance log when the request was made, 32
        /// bytes: the approvers vouch for that history, which the new
        /// machine, having seen none of it, adopts; every job of the
        /// replacement carries the whole log, ending exactly here.
        #[serde(with = "hex_bytes")]
        log_head: Vec<u8>,
    },
}

/// The most keys one backup request exports.
pub const MAX_BACKUP_KEYS: usize = 64;

/// What a signing request signs: the bytes as the signer receives them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Payload {
    /// An unsigned transaction: a whole PSBT, an EVM signing preimage
    /// (network: the chain id in decimal), or a single-signer family's bytes.
    Transaction {
        /// The chain family.
        #[serde(with = "text")]
        chain: Chain,
        /// The network (EVM: chain id; Cosmos: chain id).
        network: String,
        /// The unsigned bytes.
        #[serde(with = "hex_bytes")]
        unsigned: Vec<u8>,
    },
    /// A message in one of the chains' message formats.
    Message {
        /// The format.
        format: MessageFormat,
        /// The message.
        #[serde(with = "hex_bytes")]
        message: Vec<u8>,
    },
    /// A 32-byte digest (raw signing).
    RawDigest {
        /// The digest.
        #[serde(with = "hex_bytes")]
        digest: Vec<u8>,
    },
    /// Bytes an Ed25519 key signs as given (raw signing).
    RawBytes {
        /// The bytes.
        #[serde(with = "hex_bytes")]
        bytes: Vec<u8>,
    },
}

impl Operation {
    /// The operation's kind as the policy names it (`sign`, `create_key`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Operation::CreateKey { .. } => "create_key",
            Operation::DeriveAddress { .. } => "derive_address",
            Operation::Sign { .. } => "sign",
            Operation::Refresh { .. } => "refresh",
            Operation::AddMember { .. } => "add_member",
            Operation::RemoveMember { .. } => "remove_member",
            Operation::SetPolicy { .. } => "set_policy",
            Operation::ExportBackup { .. } => "export_backup",
            Operation::ReplaceNode { .. } => "replace_node",
        }
    }

    /// Whether it changes the governance state (and so goes into the log).
    pub fn is_governance(&self) -> bool {
        matches!(self, Operation::AddMember { .. } | Operation::RemoveMember { .. } | Operation::SetPolicy { .. })
    }

    /// Whether it needs every member who may approve, whatever the policy's
    /// rule asks: it hands shares out (an export to officers, a replacement
    /// to a new node).
    pub fn needs_everyone(&self) -> bool {
        matches!(self, Operation::ExportBackup { .. } | Operation::ReplaceNode { .. })
    }

    /// The key it concerns, if any.
    pub fn key_id(&self) -> Option<KeyId> {
        match self {
            Operation::CreateKey { key_id, .. }
            | Operation::DeriveAddress { key_id, .. }
            | Operation::Sign { key_id, .. }
            | Operation::Refresh { key_id } => Some(*key_id),
            _ => None,
        }
    }
}

impl Request {
    /// A request by `creator` for `operation`, living `lifetime_secs` from `now`.
    pub fn new(
        organisation: OrganisationId,
        creator: &MemberKey,
        operation: Operation,
        now: u64,
        lifetime_secs: u64,
    ) -> Result<Self, Error> {
        if lifetime_secs == 0 || lifetime_secs > MAX_LIFETIME_SECS {
            return Err(Error::Governance(format!(
                "a request lives 1 second to {} days, not {lifetime_secs} seconds",
                MAX_LIFETIME_SECS / 86_400
            )));
        }
        let expires_at = now.checked_add(lifetime_secs).ok_or_else(|| Error::Governance("time overflows".into()))?;
        let request = Request {
            version: 1,
            organisation,
            id: RequestId::random(),
            creator: creator.fingerprint(),
            created_at: now,
            expires_at,
            operation,
        };
        request.check_shape()?;
        Ok(request)
    }

    /// Decodes a request from its canonical bytes (and nothing else) and
    /// checks its shape; not yet whether it is for this organisation or alive.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let request: Request = canonical::decode("request", bytes)?;
        request.check_shape()?;
        Ok(request)
    }

    /// The canonical bytes: what an approval signs.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        canonical::encode(self)
    }

    /// SHA-256 of the canonical bytes.
    pub fn hash(&self) -> Result<[u8; 32], Error> {
        Ok(sha256(&self.to_bytes()?))
    }

    /// Refuses a request for another organisation, expired at `now`, or
    /// created too far in `now`'s future.
    pub fn check_alive(&self, organisation: OrganisationId, now: u64) -> Result<(), Error> {
        if self.organisation != organisation {
            return Err(Error::Governance(format!(
                "request {} is for organisation {}, not this one ({organisation})",
                self.id, self.organisation
            )));
        }
        if now >= self.expires_at {
            return Err(Error::Expired(format!(
                "request {} expired at {} (now {now}); create it again",
                self.id, self.expires_at
            )));
        }
        if self.created_at > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(Error::Governance(format!(
                "request {} claims to be created at {}, more than {MAX_CLOCK_SKEW_SECS} s after now ({now}); check the clocks",
                self.id, self.created_at
            )));
        }
        Ok(())
    }

    fn check_shape(&self) -> Result<(), Error> {
        if self.version != 1 {
            return Err(Error::Governance(format!("request version {} is not supported (1 is)", self.version)));
        }
        if self.expires_at <= self.created_at || self.expires_at - self.created_at > MAX_LIFETIME_SECS {
            return Err(Error::Governance(format!(
                "request {} lives from {} to {}: it must expire after it is created, within {} days",
                self.id,
                self.created_at,
                self.expires_at,
                MAX_LIFETIME_SECS / 86_400
            )));
        }
        if !self.creator.starts_with("SHA256:") || self.creator.len() > 64 {
            return Err(Error::Governance("a request's creator is a key fingerprint, SHA256:…".into()));
        }
        match &self.operation {
            Operation::Sign { payload: Payload::RawDigest { digest }, .. } if digest.len() != 32 => {
                Err(Error::Governance(format!("a raw digest is 32 bytes, not {}", digest.len())))
            }
            Operation::ExportBackup { keys, recipients } => check_backup_shape(keys, recipients),
            Operation::ReplaceNode { node, noise_key, identity_key, log_head } => {
                if *node == 0 || noise_key.len() != 32 || identity_key.len() != 32 || log_head.len() != 32 {
                    return Err(Error::Governance(
                        "a node replacement names a node id (1 or more), its new 32-byte Noise and identity keys, \
                         and the 32-byte governance log head"
                            .into(),
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// A backup names 1 to [`MAX_BACKUP_KEYS`] keys, in increasing order, and
/// one distinct recipient per party (at most 255): a key holding two
/// parties' shares would hold more of every key than one party does.
fn check_backup_shape(keys: &[KeyId], recipients: &[MemberKey]) -> Result<(), Error> {
    if keys.is_empty() || keys.len() > MAX_BACKUP_KEYS {
        return Err(Error::Governance(format!(
            "a backup exports 1 to {MAX_BACKUP_KEYS} keys, not {}; export more in several requests",
            keys.len()
        )));
    }
    if keys.iter().zip(keys.iter().skip(1)).any(|(a, b)| a >= b) {
        return Err(Error::Governance("a backup lists its keys in increasing order, each once".into()));
    }
    if recipients.is_empty() || recipients.len() > usize::from(u8::MAX) {
        return Err(Error::Governance(format!(
            "a backup has one recipient per party (1 to 255), not {}",
            recipients.len()
        )));
    }
    // age converts an ssh-ed25519 key to X25519 from its y coordinate alone:
    // a key and its sign-flipped twin are one decryption key.
    let y = |key: &MemberKey| {
        let mut bytes = key.ed25519_bytes();
        if let Some(last) = bytes.last_mut() {
            *last &= 0x7f;
        }
        bytes
    };
    for (index, recipient) in recipients.iter().enumerate() {
        if recipients.iter().take(index).any(|earlier| y(earlier) == y(recipient)) {
            return Err(Error::Governance(format!(
                "recipient {} is given for two parties; give each party's share its own key",
                recipient.fingerprint()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(bytes: [u8; 32]) -> MemberKey {
        let public = ssh_key::PublicKey::from(ssh_key::public::Ed25519PublicKey(bytes));
        MemberKey::from_public(public).unwrap()
    }

    /// age opens a key and its sign-flipped twin with one private key.
    #[test]
    fn a_backup_recipient_and_its_sign_flipped_twin_are_one_recipient() {
        let alice = crate::Identity::generate("alice").unwrap().member_key().unwrap();
        let bob = crate::Identity::generate("bob").unwrap().member_key().unwrap();
        let mut flipped = alice.ed25519_bytes();
        flipped[31] ^= 0x80;
        let twin = key(flipped);
        assert_ne!(twin, alice);
        let keys = vec![KeyId::random()];
        assert!(check_backup_shape(&keys, &[alice.clone(), bob.clone()]).is_ok());
        let refused = check_backup_shape(&keys, &[alice, bob, twin]).unwrap_err();
        assert!(refused.to_string().contains("two parties"), "{refused}");
    }
}
