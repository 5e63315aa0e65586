//! Sealing secrets at rest (docs/FORMATS.md, "Secrets at rest").
//!
//! A node's key shares, chain seeds and cached derivation tweaks are sealed
//! with XChaCha20-Poly1305 under a key-encryption key ([`Kek`]) derived with
//! Argon2id from a passphrase, or read from a key file. The AEAD's associated
//! data binds each blob to what it is ([`SealContext`]: node, key, epoch,
//! kind), so a blob copied to another row, node or epoch does not open.
//!
//! Sealed blob: `"SVSL"` ‖ `u8 version = 1` ‖ 24-byte random nonce ‖ ciphertext ‖ 16-byte tag.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]
#![warn(missing_docs)]

use std::fmt;

#[cfg(unix)]
pub mod files;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};
use shardvault_types::{Epoch, KeyId, Secret32};
use zeroize::{Zeroize, Zeroizing};

const MAGIC: &[u8; 4] = b"SVSL";
const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const AAD_TAG: &[u8] = b"shardvault/seal/v1";

/// Errors from sealing and opening.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The blob does not open under this KEK and context: wrong passphrase or
    /// key file, corrupted bytes, or a blob that belongs elsewhere.
    #[error("sealed {kind} for key {key_id} epoch {epoch} does not open: wrong passphrase or key file, corrupted data, or a blob from another node, key or epoch")]
    DoesNotOpen {
        /// What the blob was supposed to be.
        kind: String,
        /// Its key.
        key_id: KeyId,
        /// Its epoch.
        epoch: Epoch,
    },
    /// The passphrase or key file is not the one this node was set up with.
    #[error("the passphrase or key file does not match this node's storage; check SHARDVAULT_PASSPHRASE / --key-file")]
    WrongKek,
    /// Not a sealed blob of a known version.
    #[error("not a sealed blob: {0}")]
    Format(&'static str),
    /// A key file that is not 32 bytes (raw or hex).
    #[error("key file must hold 32 bytes, raw or as 64 hex characters")]
    KeyFile,
    /// Argon2 rejected its parameters.
    #[error("key derivation failed: {0}")]
    Kdf(String),
    /// Encryption failed (a plaintext beyond the AEAD's limit); nothing was sealed.
    #[error("sealing {kind} failed: the plaintext is too large")]
    Seal {
        /// What was being sealed.
        kind: String,
    },
    /// Stored KDF parameters that do not decode or are out of range.
    #[error("stored key-derivation parameters are not usable: {0}")]
    KdfParams(&'static str),
}

/// Argon2id cost parameters, stored next to the salt so a node can open its
/// storage with the parameters it was created with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// The default for new stores: 256 MiB, 3 passes, 1 lane — about 0.8 s of
    /// CPU on the development machine (docs/BENCHMARKS.md, "Passphrase KDF").
    pub const RECOMMENDED: KdfParams = KdfParams { memory_kib: 262_144, iterations: 3, parallelism: 1 };
    /// What every store used before parameters were stored (OWASP's minimum:
    /// 46 MiB, 1 pass, 1 lane). A store without stored parameters was made with these.
    pub const LEGACY_V1: KdfParams = KdfParams { memory_kib: 47_104, iterations: 1, parallelism: 1 };
    /// Cheap parameters for tests only.
    pub const INSECURE_FOR_TESTS: KdfParams = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };
    /// The most memory a stored parameter set may ask for (4 GiB), so a
    /// tampered store cannot make the node allocate without bound.
    pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
    /// The most passes a stored parameter set may ask for.
    pub const MAX_ITERATIONS: u32 = 64;
    /// The most lanes a stored parameter set may ask for.
    pub const MAX_PARALLELISM: u32 = 16;

    /// Encoding stored next to the salt: `u8 version = 1` ‖ memory KiB ‖
    /// passes ‖ lanes, each a big-endian `u32` (13 bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![1u8];
        for value in [self.memory_kib, self.iterations, self.parallelism] {
            out.extend_from_slice(&value.to_be_bytes());
        }
        out
    }

    /// Decodes [`KdfParams::to_bytes`], refusing values beyond the limits above.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let (version, rest) = bytes.split_first().ok_or(Error::KdfParams("empty"))?;
        if *version != 1 {
            return Err(Error::KdfParams("unknown version"));
        }
        if rest.len() != 12 {
            return Err(Error::KdfParams("wrong length"));
        }
        let mut words = rest.chunks_exact(4).map(|chunk| {
            let word: [u8; 4] = chunk.try_into().map_err(|_| Error::KdfParams("wrong length"))?;
            Ok::<u32, Error>(u32::from_be_bytes(word))
        });
        let mut next = || words.next().ok_or(Error::KdfParams("wrong length"))?;
        let params = KdfParams { memory_kib: next()?, iterations: next()?, parallelism: next()? };
        if params.memory_kib > Self::MAX_MEMORY_KIB
            || params.iterations > Self::MAX_ITERATIONS
            || params.parallelism > Self::MAX_PARALLELISM
        {
            return Err(Error::KdfParams("beyond the limits this release accepts"));
        }
        Ok(params)
    }
}

/// A key-encryption key. Zeroized on drop; `Debug` prints `<redacted>`.
pub struct Kek(Secret32);

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

impl Kek {
    /// Derives the KEK from a passphrase with Argon2id.
    pub fn from_passphrase(passphrase: &[u8], salt: &[u8; 16], params: KdfParams) -> Result<Self, Error> {
        let params = argon2::Params::new(params.memory_kib, params.iterations, params.parallelism, Some(32))
            .map_err(|e| Error::Kdf(e.to_string()))?;
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = [0u8; 32];
        argon.hash_password_into(passphrase, salt, &mut key).map_err(|e| Error::Kdf(e.to_string()))?;
        let kek = Kek(Secret32::new(key));
        key.zeroize();
        Ok(kek)
    }

    /// Reads a KEK from a key file's contents: 32 raw bytes, or 64 hex
    /// characters (surrounding whitespace ignored).
    pub fn from_key_file(contents: &[u8]) -> Result<Self, Error> {
        let mut key = [0u8; 32];
        if contents.len() == 32 {
            key.copy_from_slice(contents);
        } else {
            let text = std::str::from_utf8(contents).map_err(|_| Error::KeyFile)?.trim();
            hex::decode_to_slice(text, &mut key).map_err(|_| Error::KeyFile)?;
        }
        let kek = Kek(Secret32::new(key));
        key.zeroize();
        Ok(kek)
    }

    /// A fresh random salt for [`Kek::from_passphrase`].
    pub fn new_salt() -> [u8; 16] {
        let mut salt = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        salt
    }

    /// A blob that only this KEK opens, stored once at setup so that a wrong
    /// passphrase is reported as such rather than as corrupted shares.
    pub fn verifier(&self) -> Result<Vec<u8>, Error> {
        seal(self, &verifier_context(), b"shardvault kek verifier")
    }

    /// Checks a [`Kek::verifier`] blob.
    pub fn verify(&self, verifier: &[u8]) -> Result<(), Error> {
        open(self, &verifier_context(), verifier).map(drop).map_err(|_| Error::WrongKek)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.expose_secret().into())
    }
}

fn verifier_context() -> SealContext {
    SealContext {
        node_id: String::new(),
        key_id: KeyId::from_bytes([0; 16]),
        epoch: Epoch(0),
        kind: "kek-verifier".into(),
    }
}

/// What a sealed blob is, bound into its associated data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealContext {
    /// The node that sealed it.
    pub node_id: String,
    /// The key it belongs to.
    pub key_id: KeyId,
    /// The key's epoch.
    pub epoch: Epoch,
    /// What it is (`key-share`, `hardened-tweak:m/9'/0'/60'/0'`, …).
    pub kind: String,
}

impl SealContext {
    fn associated_data(&self) -> Vec<u8> {
        let mut aad = AAD_TAG.to_vec();
        for field in
            [self.node_id.as_bytes(), self.key_id.as_bytes(), &self.epoch.0.to_be_bytes(), self.kind.as_bytes()]
        {
            aad.extend_from_slice(&(field.len() as u32).to_be_bytes());
            aad.extend_from_slice(field);
        }
        aad
    }
}

/// Seals `plaintext` under `kek`, bound to `context`. Fails (and returns no
/// blob) if the AEAD refuses the input, so an empty ciphertext is never stored.
pub fn seal(kek: &Kek, context: &SealContext, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let aad = context.associated_data();
    let ciphertext = kek
        .cipher()
        .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: &aad })
        .map_err(|_| Error::Seal { kind: context.kind.clone() })?;
    let mut out = Vec::with_capacity(MAGIC.len() + 1 + NONCE_LEN + ciphertext.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Opens a blob sealed by [`seal`] with the same KEK and context.
pub fn open(kek: &Kek, context: &SealContext, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let rest = sealed.strip_prefix(MAGIC.as_slice()).ok_or(Error::Format("bad magic"))?;
    let (version, rest) = rest.split_first().ok_or(Error::Format("truncated"))?;
    if *version != VERSION {
        return Err(Error::Format("unsupported version"));
    }
    if rest.len() < NONCE_LEN + TAG_LEN {
        return Err(Error::Format("truncated"));
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| Error::Format("truncated"))?;
    let aad = context.associated_data();
    kek.cipher()
        .decrypt(&XNonce::from(nonce), Payload { msg: ciphertext, aad: &aad })
        .map(Zeroizing::new)
        .map_err(|_| Error::DoesNotOpen { kind: context.kind.clone(), key_id: context.key_id, epoch: context.epoch })
}
