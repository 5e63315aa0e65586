//! Derivation paths: `m/9'/0'/60'/0'/0/0`, hardened components first.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Bit 31 marks a hardened component, as in BIP32.
pub const HARDENED: u32 = 1 << 31;

/// The deepest path accepted.
pub const MAX_DEPTH: usize = 32;

/// A derivation path: a hardened prefix (derived by the MPC protocol of
/// docs/HD-DERIVATION.md) followed by non-hardened components (BIP32 public
/// derivation). A hardened component after a non-hardened one is refused:
/// no participant holds the non-hardened parent's private key to harden from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DerivationPath(Vec<u32>);

impl DerivationPath {
    /// The root (`m`).
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// Builds a path from raw components (bit 31 = hardened).
    pub fn from_components(components: Vec<u32>) -> Result<Self, Error> {
        if components.len() > MAX_DEPTH {
            return Err(Error::InvalidInput(format!("derivation path is deeper than {MAX_DEPTH}")));
        }
        let first_normal = components.iter().position(|c| c & HARDENED == 0);
        if let Some(first_normal) = first_normal {
            if components.iter().skip(first_normal).any(|c| c & HARDENED != 0) {
                return Err(Error::InvalidInput("a hardened component cannot follow a non-hardened one".into()));
            }
        }
        Ok(Self(components))
    }

    /// MPCVault's shape: `m/9'/vault'/coin'/account'/change/index`.
    pub fn mpcvault(vault: u32, coin_type: u32, account: u32, change: u32, index: u32) -> Result<Self, Error> {
        for (name, value) in
            [("vault", vault), ("coin type", coin_type), ("account", account), ("change", change), ("index", index)]
        {
            if value & HARDENED != 0 {
                return Err(Error::InvalidInput(format!("{name} {value} must be below 2^31")));
            }
        }
        Self::from_components(vec![
            9 | HARDENED,
            vault | HARDENED,
            coin_type | HARDENED,
            account | HARDENED,
            change,
            index,
        ])
    }

    /// Refuses a root-based path: `m` itself, or one whose first level is
    /// not hardened (`m/0/…`). Its chain code is a public function of the
    /// root public key (docs/HD-DERIVATION.md's `cc'` of the empty path), so
    /// anyone holding the root public key can enumerate its addresses, and
    /// one leaked child private key gives the root private key. Nodes and
    /// the API accept only paths that pass this check.
    pub fn require_hardened_start(&self) -> Result<(), Error> {
        match self.0.first() {
            Some(first) if first & HARDENED != 0 => Ok(()),
            _ => Err(Error::InvalidInput(format!(
                "path {self} is root-based: its chain code is public, so a leaked child key would reveal the \
                 root key; start the path with a hardened level, e.g. m/9'/0'/60'/0'/0/0"
            ))),
        }
    }

    /// Every component.
    pub fn components(&self) -> &[u32] {
        &self.0
    }

    /// The hardened prefix (the part the MPC protocol derives).
    pub fn hardened_prefix(&self) -> DerivationPath {
        DerivationPath(self.0.iter().copied().take_while(|c| c & HARDENED != 0).collect())
    }

    /// The non-hardened components after the prefix.
    pub fn normal_suffix(&self) -> &[u32] {
        let mut rest = self.0.as_slice();
        while let Some((first, tail)) = rest.split_first() {
            if first & HARDENED == 0 {
                break;
            }
            rest = tail;
        }
        rest
    }

    /// Big-endian u32 per component: the `enc(path)` of docs/HD-DERIVATION.md.
    pub fn encode(&self) -> Vec<u8> {
        self.0.iter().flat_map(|c| c.to_be_bytes()).collect()
    }
}

impl fmt::Display for DerivationPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("m")?;
        for c in &self.0 {
            if c & HARDENED != 0 {
                write!(f, "/{}'", c & !HARDENED)?;
            } else {
                write!(f, "/{c}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for DerivationPath {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::InvalidInput(format!("derivation path {s:?}: {why}"));
        let mut parts = s.split('/');
        if parts.next() != Some("m") {
            return Err(bad("must start with \"m\""));
        }
        let mut components = Vec::new();
        for part in parts {
            let (digits, hardened) = match part.strip_suffix(['\'', 'h', 'H']) {
                Some(digits) => (digits, true),
                None => (part, false),
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("each component is a number, optionally followed by '"));
            }
            let value: u32 = digits.parse().map_err(|_| bad("component too large"))?;
            if value & HARDENED != 0 {
                return Err(bad("component must be below 2^31"));
            }
            components.push(if hardened { value | HARDENED } else { value });
        }
        Self::from_components(components)
    }
}

impl TryFrom<String> for DerivationPath {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<DerivationPath> for String {
    fn from(path: DerivationPath) -> String {
        path.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_mpcvault_paths() {
        let path: DerivationPath = "m/9'/0'/60'/0'/0/7".parse().unwrap();
        assert_eq!(path, DerivationPath::mpcvault(0, 60, 0, 0, 7).unwrap());
        assert_eq!(path.to_string(), "m/9'/0'/60'/0'/0/7");
        assert_eq!(path.hardened_prefix().to_string(), "m/9'/0'/60'/0'");
        assert_eq!(path.normal_suffix(), &[0, 7]);
        assert_eq!("m/1h/2H".parse::<DerivationPath>().unwrap().to_string(), "m/1'/2'");
    }

    #[test]
    fn root_based_paths_are_refused_by_the_check() {
        for root_based in ["m", "m/0", "m/0/1", "m/44/0/0"] {
            let path: DerivationPath = root_based.parse().unwrap();
            let error = path.require_hardened_start().unwrap_err().to_string();
            assert!(error.contains("root-based"), "{root_based}: {error}");
        }
        for hardened in ["m/0'", "m/9'/0'/60'/0'/0/7", "m/1h/2"] {
            hardened.parse::<DerivationPath>().unwrap().require_hardened_start().unwrap();
        }
    }

    #[test]
    fn refuses_bad_paths() {
        for bad in ["", "n/1", "m/", "m/1/2'", "m/-1", "m/2147483648", "m/1''", "m/x", "m/ 1"] {
            assert!(bad.parse::<DerivationPath>().is_err(), "{bad:?} should be refused");
        }
    }
}
