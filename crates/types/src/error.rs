//! The one error this crate returns: a value that is not a valid id, scheme,
//! threshold, path or public key.

/// Input that does not make a valid value of this crate's types.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// What was wrong, in words a caller can show.
    #[error("invalid input: {0}")]
    InvalidInput(String),
}
