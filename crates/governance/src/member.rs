//! Members of an organisation: a name, a role and an `ssh-ed25519` key.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, MemberKey};

/// What a member may do (docs/GOVERNANCE.md, "Members and roles").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything; a strict majority of owners can always change members and policy.
    Owner,
    /// Creates requests; approves where the policy names `admin`.
    Admin,
    /// Creates requests; approves where the policy names `member` or them.
    Member,
    /// Automation: creates requests; approves only where a rule names `api` or it.
    Api,
    /// Reads; never approves.
    Viewer,
}

impl Role {
    /// Every role, strongest first.
    pub const ALL: [Role; 5] = [Role::Owner, Role::Admin, Role::Member, Role::Api, Role::Viewer];

    /// The role's name as the policy and the CLI write it.
    pub const fn name(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Api => "api",
            Role::Viewer => "viewer",
        }
    }

    /// Whether a member of this role may create requests.
    pub const fn may_request(self) -> bool {
        !matches!(self, Role::Viewer)
    }

    /// Whether a member of this role may ever approve (a viewer never does).
    pub const fn may_approve(self) -> bool {
        !matches!(self, Role::Viewer)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self, Error> {
        Role::ALL
            .into_iter()
            .find(|role| role.name() == text)
            .ok_or_else(|| Error::Governance(format!("no role {text:?}: one of owner, admin, member, api, viewer")))
    }
}

/// A member's name: 1–64 of `a-z A-Z 0-9 . _ -`, so it prints safely anywhere.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberName(String);

impl MemberName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for MemberName {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self, Error> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if text.is_empty() || text.len() > 64 || !text.chars().all(allowed) {
            return Err(Error::Governance(format!(
                "member name {:?}: use 1 to 64 letters, digits, '.', '_' or '-'",
                text.chars().take(80).collect::<String>()
            )));
        }
        Ok(MemberName(text.to_owned()))
    }
}

impl fmt::Display for MemberName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for MemberName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MemberName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for MemberKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_openssh().map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> Deserialize<'de> for MemberKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

/// One member: who, what they may do, and the key their approvals verify under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Unique in the organisation.
    pub name: MemberName,
    /// What they may do.
    pub role: Role,
    /// Their `ssh-ed25519` key, unique in the organisation.
    pub public_key: MemberKey,
}
