//! Who may approve, and how an approval is checked.
//!
//! A member of an organisation is known by an OpenSSH `ssh-ed25519` public
//! key ([`MemberKey`]), so a key made by `ssh-keygen -t ed25519`, with or
//! without a passphrase, works as is. An approval ([`Approval`]) is that
//! key's signature over the exact bytes of a request in OpenSSH's SSHSIG
//! format under the namespace [`NAMESPACE`]: `ssh-keygen -Y sign -n
//! shardvault-request` makes one, `ssh-keygen -Y verify` checks one this
//! crate made, and [`MemberKey::verify`] checks either. A signature under
//! another namespace (a git commit, a file signature) never counts.
//!
//! Pure: no I/O apart from reading and writing a member's own key file
//! ([`Identity`]).
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]
#![warn(missing_docs)]

mod approval;
mod audit;
pub mod canonical;
mod decode;
mod error;
mod facts;
mod genesis;
mod identity;
mod member;
mod member_key;
mod policy;
mod request;
mod state;

pub use approval::{login_message, Approval, LOGIN_NAMESPACE, NAMESPACE, REJECT_NAMESPACE};
pub use audit::{audit_hash, AUDIT_START};
pub use decode::{facts_of, unsigned};
pub use error::Error;
pub use facts::{Asset, Call, DomainSeen, Facts, Signing, Transfer, NETWORK_BOUND, OPERATIONS};
pub use genesis::{Genesis, OrganisationId, Owner};
pub use identity::Identity;
pub use member::{Member, MemberName, Role};
pub use member_key::MemberKey;
pub use policy::{
    Action, CallPattern, Conditions, Decision, Eip712Domain, Group, Ledger, NothingSpent, PeriodLimit, Policy, Rule,
    Spend, MIN_REFRESH_EVERY_SECS,
};
pub use request::{
    Operation, Payload, Request, RequestId, DEFAULT_LIFETIME_SECS, MAX_BACKUP_KEYS, MAX_CLOCK_SKEW_SECS,
    MAX_LIFETIME_SECS,
};
pub use state::{request_hash_hex, Count, LogEntry, State, MAX_APPROVALS};
