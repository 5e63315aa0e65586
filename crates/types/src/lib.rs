//! shardvault's share-free vocabulary: the identifiers, parameters and public
//! values every component speaks — [`KeyId`], [`PartyId`], [`SessionId`],
//! [`Epoch`], [`Scheme`], [`Threshold`], [`DerivationPath`], [`Signature`],
//! [`KeyType`] — and public key derivation ([`derive_public`], BIP32
//! CKDpub, [`ExtendedPublicKey`]).
//!
//! Nothing here is, holds or reconstructs a key share. The coordinator, the
//! wire protocol, the chains and the vault depend on this crate and not on
//! `shardvault-mpc`, so Cargo itself keeps them from naming a share, a
//! hardened tweak or a recovered key, and from linking the protocol
//! libraries.
//!
//! ```
//! use shardvault_types::{derive_public, root_extended_public_key, DerivationPath, Scheme};
//!
//! // A watch-only derivation: the public key at m/9'/0'/60'/0'/0/7 from the
//! // extended public key its hardened prefix was given (here, a made-up one).
//! let path: DerivationPath = "m/9'/0'/60'/0'/0/7".parse()?;
//! assert_eq!(path.hardened_prefix().to_string(), "m/9'/0'/60'/0'");
//! let generator = hex::decode("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798").unwrap();
//! let base = root_extended_public_key(&generator);
//! let child = derive_public(Scheme::EcdsaSecp256k1, &base, path.normal_suffix())?;
//! assert_eq!(child.public_key.len(), 33);
//! assert_ne!(child.public_key, generator);
//! // Hardened indices need the threshold protocol, never public derivation.
//! assert!(derive_public(Scheme::EcdsaSecp256k1, &base, &[1 << 31]).is_err());
//! # Ok::<(), shardvault_types::Error>(())
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]
#![warn(missing_docs)]

pub mod derive;
mod error;
pub mod group;
mod ids;
mod key_type;
mod path;
mod secret;
mod signature;

pub use derive::{child_chain_code, derive_public, root_extended_public_key, ExtendedPublicKey};
pub use error::Error;
pub use ids::{Epoch, KeyId, PartyId, Scheme, SessionId, Threshold, MAX_PARTIES};
pub use key_type::KeyType;
pub use path::{DerivationPath, HARDENED, MAX_DEPTH};
pub use secret::Secret32;
pub use signature::Signature;
