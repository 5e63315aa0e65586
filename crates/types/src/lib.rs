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
//! let root = root_extended_public_key(&[2; 33]);
//! let path: DerivationPath = "m/0/1".parse()?;
//! # let _ = (root, path, Scheme::EcdsaSecp256k1);
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
