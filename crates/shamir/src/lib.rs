//! Shamir secret sharing in HashiCorp Vault's share format
//! (docs/FORMATS.md, "Shamir shares (Vault format)").
//!
//! [`split`] cuts a secret into `parts` shares of which any `threshold`
//! [`combine`] back into it; fewer reveal nothing about it. The bytes are
//! those of Vault's `shamir` package: each secret byte is the constant term
//! of its own random polynomial of degree `threshold - 1` over GF(2^8) (AES
//! polynomial), and a share is that polynomial's value at the share's x for
//! every secret byte, followed by the x byte itself. A share made here
//! combines in Vault (and in other implementations of its format, such as
//! Privy's `shamir-secret-sharing`) and theirs combine here.
//!
//! The format carries no checksum: [`combine`] given shares from different
//! splits, or a changed share, returns wrong bytes without any error. The
//! consumer must check the result (for a backup identity: that it decrypts).
//!
//! Field arithmetic runs in constant time (see the `field` module); x
//! coordinates are public and are not hidden.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]
#![warn(missing_docs)]

mod field;

use rand_core::{CryptoRng, OsRng, RngCore};
use zeroize::Zeroizing;

/// Most shares a split can make: one per non-zero x coordinate.
pub const MAX_PARTS: u8 = 255;

/// Why a split or a combination was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// There is nothing to split.
    #[error("the secret is empty: give at least one byte to split")]
    EmptySecret,
    /// The threshold is below 2 or above the number of parts.
    #[error("cannot split into {parts} parts with threshold {threshold}: need 2 <= threshold <= parts <= 255")]
    Threshold {
        /// Shares asked for.
        parts: u8,
        /// Shares asked to be needed.
        threshold: u8,
    },
    /// Fewer than two shares were given.
    #[error("combining needs at least 2 shares, {given} given")]
    TooFewShares {
        /// How many were given.
        given: usize,
    },
    /// A share has no room for a y byte and its x byte.
    #[error("share {position} is {len} byte(s) long; a share is at least 2 bytes (the secret's bytes and an x byte)")]
    ShareTooShort {
        /// Its place among the shares given, counting from 1.
        position: usize,
        /// Its length.
        len: usize,
    },
    /// Shares of one split all have the same length.
    #[error("share {position} is {len} bytes long but share 1 is {expected}: shares of one secret have equal lengths")]
    LengthMismatch {
        /// Its place among the shares given, counting from 1.
        position: usize,
        /// Its length.
        len: usize,
        /// The first share's length.
        expected: usize,
    },
    /// No split gives a share the x coordinate 0 (its y bytes would be the secret).
    #[error("share {position} has x coordinate 0, which no split produces: it is not a share")]
    ZeroX {
        /// Its place among the shares given, counting from 1.
        position: usize,
    },
    /// Two shares have the same x coordinate.
    #[error("share {position} has the same x coordinate ({x}) as an earlier one: a share given twice, or shares of different splits")]
    DuplicateX {
        /// Its place among the shares given, counting from 1.
        position: usize,
        /// The repeated x coordinate.
        x: u8,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Randomness(String),
}

/// Splits `secret` into `parts` shares, any `threshold` of which
/// [`combine`] into it. Each share is `secret.len() + 1` bytes: the y byte
/// for each secret byte, then the share's x coordinate (distinct, non-zero,
/// random). Randomness comes from the operating system.
pub fn split(secret: &[u8], parts: u8, threshold: u8) -> Result<Vec<Zeroizing<Vec<u8>>>, Error> {
    split_with(&mut OsRng, secret, parts, threshold)
}

fn split_with<R: RngCore + CryptoRng>(
    rng: &mut R,
    secret: &[u8],
    parts: u8,
    threshold: u8,
) -> Result<Vec<Zeroizing<Vec<u8>>>, Error> {
    if secret.is_empty() {
        return Err(Error::EmptySecret);
    }
    if threshold < 2 || threshold > parts {
        return Err(Error::Threshold { parts, threshold });
    }
    let xs = x_coordinates(rng, parts)?;
    let mut shares: Vec<Zeroizing<Vec<u8>>> =
        xs.iter().map(|_| Zeroizing::new(Vec::with_capacity(secret.len() + 1))).collect();
    // The polynomial of one secret byte: coefficients[0] is the byte, the
    // other threshold - 1 are random (any value, 0 included, as in Vault).
    let mut coefficients = Zeroizing::new(vec![0u8; usize::from(threshold)]);
    for &byte in secret {
        if let Some((constant, random)) = coefficients.split_first_mut() {
            *constant = byte;
            fill(rng, random)?;
        }
        for (share, &x) in shares.iter_mut().zip(&xs) {
            share.push(evaluate(&coefficients, x));
        }
    }
    for (share, &x) in shares.iter_mut().zip(&xs) {
        share.push(x);
    }
    Ok(shares)
}

/// Recovers the secret from `shares` by Lagrange interpolation at x = 0
/// through all of them (as Vault does: more than the threshold is fine, and
/// fewer gives a wrong answer, not an error). Refuses fewer than two
/// shares, shares of unequal length or shorter than 2 bytes, an x of 0 and
/// a repeated x. A wrong share set is not detected: check the result.
pub fn combine(shares: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let (xs, secret_len) = checked_x_coordinates(shares)?;
    let bases = lagrange_bases_at_zero(&xs);
    let mut secret = Zeroizing::new(vec![0u8; secret_len]);
    for (share, &basis) in shares.iter().zip(&bases) {
        // zip stops at the secret's length, before the share's x byte.
        for (byte, &y) in secret.iter_mut().zip(share.iter()) {
            *byte = field::add(*byte, field::mul(y, basis));
        }
    }
    Ok(secret)
}

/// The shares' x coordinates (their last bytes) and the secret's length,
/// once every refusal is checked.
fn checked_x_coordinates(shares: &[&[u8]]) -> Result<(Vec<u8>, usize), Error> {
    let Some(first) = shares.first() else { return Err(Error::TooFewShares { given: 0 }) };
    if shares.len() < 2 {
        return Err(Error::TooFewShares { given: shares.len() });
    }
    let expected = first.len();
    let mut seen = [false; 256];
    let mut xs = Vec::with_capacity(shares.len());
    for (index, share) in shares.iter().enumerate() {
        let position = index + 1;
        let len = share.len();
        let Some((&x, _)) = share.split_last().filter(|_| len >= 2) else {
            return Err(Error::ShareTooShort { position, len });
        };
        if len != expected {
            return Err(Error::LengthMismatch { position, len, expected });
        }
        if x == 0 {
            return Err(Error::ZeroX { position });
        }
        // `seen` has a slot for every u8, so `get_mut` always finds one.
        if let Some(slot) = seen.get_mut(usize::from(x)) {
            if *slot {
                return Err(Error::DuplicateX { position, x });
            }
            *slot = true;
        }
        xs.push(x);
    }
    // Every share, the first included, passed the `len >= 2` check.
    Ok((xs, expected - 1))
}

/// l_i(0) = prod_{j != i} x_j / (x_i - x_j) for each share i; the same for
/// every byte position, so computed once. Subtraction is XOR in GF(2^8),
/// and the x_i are distinct, so no denominator is 0.
fn lagrange_bases_at_zero(xs: &[u8]) -> Vec<u8> {
    xs.iter()
        .enumerate()
        .map(|(i, &x_i)| {
            xs.iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .fold(1u8, |basis, (_, &x_j)| field::mul(basis, field::mul(x_j, field::inverse(field::add(x_i, x_j)))))
        })
        .collect()
}

/// The polynomial at x, by Horner's rule from the highest coefficient.
fn evaluate(coefficients: &[u8], x: u8) -> u8 {
    coefficients.iter().rev().fold(0u8, |value, &coefficient| field::add(field::mul(value, x), coefficient))
}

/// `parts` distinct x coordinates drawn at random from 1..=255: the first
/// entries of a uniform shuffle (Fisher–Yates) of all 255.
fn x_coordinates<R: RngCore + CryptoRng>(rng: &mut R, parts: u8) -> Result<Vec<u8>, Error> {
    let mut all: Vec<u8> = (1..=MAX_PARTS).collect();
    for last in (1..all.len()).rev() {
        let pick = uniform_below(rng, last + 1)?;
        all.swap(last, pick);
    }
    all.truncate(usize::from(parts));
    Ok(all)
}

/// A uniform index in 0..bound (bound <= 256), by rejection of the bytes
/// that would bias the remainder.
fn uniform_below<R: RngCore + CryptoRng>(rng: &mut R, bound: usize) -> Result<usize, Error> {
    let limit = 256 - 256 % bound;
    loop {
        let mut byte = [0u8];
        fill(rng, &mut byte)?;
        let [value] = byte.map(usize::from);
        if value < limit {
            return Ok(value % bound);
        }
    }
}

fn fill<R: RngCore + CryptoRng>(rng: &mut R, bytes: &mut [u8]) -> Result<(), Error> {
    rng.try_fill_bytes(bytes).map_err(|error| Error::Randomness(error.to_string()))
}
