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
    /// A policy that cannot be put in force (docs/POLICY.md): malformed
    /// values, names that do not exist, or a rule nobody could ever satisfy.
    #[error("invalid policy: {0}; fix the policy file and propose it again")]
    Policy(String),
    /// What is to be signed could not be decoded, so no rule can be
    /// evaluated on it.
    #[error("cannot decode what is to be signed: {0}; check the payload (chain, network, bytes) and create the request again")]
    Decode(String),
    /// The policy refuses the request: a rule named `rule` denies it, or no
    /// rule matches it (`rule` is `None`).
    #[error("{}", denied(.rule.as_deref(), .reason))]
    Denied {
        /// The rule that denied it; `None` when no rule matched.
        rule: Option<String>,
        /// Why.
        reason: String,
    },
    /// The rule that matched is not satisfied by the approvals given.
    #[error("not yet approved under rule {rule:?}: {shortfall}; ask those members to approve the request")]
    NotApproved {
        /// The rule that matched.
        rule: String,
        /// Which groups still lack approvals, and how many.
        shortfall: String,
    },
    /// The node's spend ledger could not be read, so a period limit cannot
    /// be evaluated (fail closed).
    #[error("the spend ledger cannot be read: {0}; check the node's database and retry")]
    Ledger(String),
}

fn denied(rule: Option<&str>, reason: &str) -> String {
    match rule {
        Some(rule) => format!(
            "denied by policy rule {rule:?}: {reason}; nobody's approval changes that — ask the owners to change the \
             policy if this should be allowed"
        ),
        None => format!(
            "denied: no policy rule matches ({reason}); ask the owners to add a rule for this request if it should be \
             allowed"
        ),
    }
}
