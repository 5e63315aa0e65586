//! What can go wrong with a member's key or an approval.

/// A key or an approval that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not an OpenSSH public key line, or not an ed25519 one.
    #[error("not a member key: {0}")]
    MemberKey(String),
    /// Not an OpenSSH private key, a wrong passphrase, or not ed25519.
    #[error("cannot use the identity: {0}")]
    Identity(String),
    /// Not an armored SSHSIG (`-----BEGIN SSH SIGNATURE-----`).
    #[error("not an SSH signature: {0}")]
    Malformed(String),
    /// A well-formed signature that does not approve these bytes.
    #[error("the approval does not verify: {0}")]
    Invalid(String),
    /// A governance object (member, request, log entry, policy) that is
    /// malformed or not allowed.
    #[error("{0}")]
    Governance(String),
    /// A request past its expiry.
    #[error("{0}")]
    Expired(String),
}
