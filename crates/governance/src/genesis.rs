//! An organisation's genesis: its name, its owners and its first policy.
//! Its hash is the organisation id, pinned on every node.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::canonical::{self, sha256};
use crate::{Error, Member, MemberKey, MemberName, Policy, Role};

/// The organisation id: SHA-256 of the genesis's canonical bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrganisationId(pub [u8; 32]);

impl fmt::Display for OrganisationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for OrganisationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrganisationId({self})")
    }
}

impl FromStr for OrganisationId {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self, Error> {
        let bytes = (text.len() == 64 && !text.bytes().any(|b| b.is_ascii_uppercase()))
            .then(|| hex::decode(text).ok())
            .flatten()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok());
        bytes
            .map(OrganisationId)
            .ok_or_else(|| Error::Governance(format!("organisation id {text:?}: expected 64 lowercase hex digits")))
    }
}

/// An owner named in the genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    /// The owner's member name.
    pub name: MemberName,
    /// Their key.
    pub public_key: MemberKey,
}

/// The root of an organisation's governance (docs/GOVERNANCE.md, "Organisation and genesis").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Format version: 1.
    pub version: u32,
    /// The organisation's name (for people).
    pub name: String,
    /// Unix seconds.
    pub created_at: u64,
    /// At least one.
    pub owners: Vec<Owner>,
    /// The policy in force until changed.
    pub policy: Policy,
}

impl Genesis {
    /// A genesis with `owners` and the default policy of a new organisation.
    pub fn new(name: &str, owners: Vec<Owner>, created_at: u64) -> Result<Self, Error> {
        let genesis = Genesis {
            version: 1,
            name: name.to_owned(),
            created_at,
            owners,
            policy: Policy::default_for_new_organisation(),
        };
        genesis.check()?;
        Ok(genesis)
    }

    /// Reads a genesis from its canonical bytes, and checks it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let genesis: Genesis = canonical::decode("genesis", bytes)?;
        genesis.check()?;
        Ok(genesis)
    }

    /// The canonical bytes (what a genesis file holds).
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        canonical::encode(self)
    }

    /// The organisation id.
    pub fn id(&self) -> Result<OrganisationId, Error> {
        Ok(OrganisationId(sha256(&self.to_bytes()?)))
    }

    /// The members the genesis makes: its owners.
    pub fn members(&self) -> Vec<Member> {
        self.owners
            .iter()
            .map(|owner| Member { name: owner.name.clone(), role: Role::Owner, public_key: owner.public_key.clone() })
            .collect()
    }

    fn check(&self) -> Result<(), Error> {
        if self.version != 1 {
            return Err(Error::Governance(format!("genesis version {} is not supported (1 is)", self.version)));
        }
        if self.name.is_empty() || self.name.len() > 128 || self.name.chars().any(char::is_control) {
            return Err(Error::Governance("the organisation's name must be 1 to 128 printable characters".into()));
        }
        if self.owners.is_empty() {
            return Err(Error::Governance("a genesis needs at least one owner".into()));
        }
        let members = self.members();
        crate::state::check_unique(&members)?;
        self.policy.validate(&members)
    }
}
