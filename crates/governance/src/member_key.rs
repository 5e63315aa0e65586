//! A member's public key: one OpenSSH `ssh-ed25519 AAAA… comment` line.

use std::fmt;
use std::str::FromStr;

use ssh_key::{HashAlg, PublicKey};

use crate::{Approval, Error, NAMESPACE};

/// An `ssh-ed25519` public key. Other algorithms (RSA, ECDSA, security keys)
/// are refused: one algorithm keeps every node's check the same and small.
/// Two keys are equal when their key bytes are; the comment is a label.
#[derive(Clone)]
pub struct MemberKey {
    key: PublicKey,
    ed25519: [u8; 32],
}

impl MemberKey {
    /// The key in OpenSSH's one-line form, comment included.
    pub fn to_openssh(&self) -> Result<String, Error> {
        self.key.to_openssh().map_err(|e| Error::MemberKey(format!("cannot encode the key: {e}")))
    }

    /// OpenSSH's fingerprint, as `ssh-keygen -l` prints it: `SHA256:…`.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }

    /// The 32 raw Ed25519 key bytes.
    pub fn ed25519_bytes(&self) -> [u8; 32] {
        self.ed25519
    }

    /// The key's comment (often an e-mail address or a name).
    pub fn comment(&self) -> &str {
        self.key.comment()
    }

    /// Checks that `approval` is this key's SSHSIG over exactly `message`
    /// under [`NAMESPACE`].
    pub fn verify(&self, message: &[u8], approval: &Approval) -> Result<(), Error> {
        self.verify_in(NAMESPACE, message, approval)
    }

    /// Checks a signature under `namespace` (a rejection, a login).
    pub fn verify_in(&self, namespace: &str, message: &[u8], approval: &Approval) -> Result<(), Error> {
        let signature = approval.ssh_sig();
        if signature.namespace() != namespace {
            return Err(Error::Invalid(format!(
                "it was made for the namespace {:?}, not {namespace:?}",
                signature.namespace()
            )));
        }
        if signature.public_key() != self.key.key_data() {
            return Err(Error::Invalid(format!("it was made by another key than {}", self.fingerprint())));
        }
        self.key.verify(namespace, message, signature).map_err(|e| Error::Invalid(e.to_string()))
    }

    pub(crate) fn from_public(key: PublicKey) -> Result<Self, Error> {
        check_comment(key.comment()).map_err(Error::MemberKey)?;
        let Some(ed25519) = key.key_data().ed25519().map(|k| k.0) else {
            return Err(Error::MemberKey(format!(
                "{} keys are not accepted; use an ssh-ed25519 key (ssh-keygen -t ed25519)",
                key.algorithm()
            )));
        };
        Ok(Self { key, ed25519 })
    }
}

/// A comment is a one-line label: no control characters, so a key printed
/// back is exactly one line (a comment holding a newline could smuggle a
/// second key into a file written from `Display`; found by review).
pub(crate) fn check_comment(comment: &str) -> Result<(), String> {
    match comment.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!("the key's comment holds the control character {c:?}; a comment is one line of text")),
        None => Ok(()),
    }
}

impl FromStr for MemberKey {
    type Err = Error;
    fn from_str(line: &str) -> Result<Self, Error> {
        let Some(algorithm) = line.split_whitespace().next() else {
            return Err(Error::MemberKey("the line is empty; expected \"ssh-ed25519 AAAA… name@example\"".into()));
        };
        if algorithm != "ssh-ed25519" {
            return Err(Error::MemberKey(format!(
                "{algorithm:?} keys are not accepted; use an ssh-ed25519 key (ssh-keygen -t ed25519)"
            )));
        }
        let key = PublicKey::from_openssh(line.trim()).map_err(|e| {
            Error::MemberKey(format!("{e}; expected one line such as \"ssh-ed25519 AAAA… name@example\""))
        })?;
        Self::from_public(key)
    }
}

impl PartialEq for MemberKey {
    fn eq(&self, other: &Self) -> bool {
        self.ed25519 == other.ed25519
    }
}

impl Eq for MemberKey {}

impl fmt::Debug for MemberKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemberKey({})", self.fingerprint())
    }
}

impl fmt::Display for MemberKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_openssh() {
            Ok(line) => f.write_str(&line),
            Err(_) => write!(f, "ssh-ed25519 key {}", self.fingerprint()),
        }
    }
}
