//! The little group arithmetic public derivation (and, in `shardvault-mpc`,
//! hardened derivation and recovery) needs, for secp256k1 (`k256`) and
//! edwards25519 (`curve25519-dalek`). Encodings are each curve's
//! canonical ones, the same the signing libraries use: SEC1 compressed points
//! and big-endian scalars for secp256k1; compressed Edwards points and
//! little-endian scalars for ed25519.

use std::ops::{Add, Mul};

use zeroize::Zeroize;

/// A prime-order group with the operations the derivation protocol uses.
pub trait Group {
    /// A scalar modulo the group order.
    type Scalar: Copy + Zeroize + PartialEq + Add<Output = Self::Scalar> + Mul<Output = Self::Scalar>;
    /// A group element.
    type Point: Copy + PartialEq + Add<Output = Self::Point>;

    /// Uniform scalar from 64 bytes (wide reduction).
    fn scalar_from_wide(bytes: &[u8; 64]) -> Self::Scalar;
    /// A small integer as a scalar.
    fn scalar_from_u64(value: u64) -> Self::Scalar;
    /// The inverse, `None` for zero.
    fn scalar_invert(value: &Self::Scalar) -> Option<Self::Scalar>;
    /// The additive inverse.
    fn scalar_neg(value: &Self::Scalar) -> Self::Scalar;
    /// The canonical 32-byte encoding.
    fn scalar_to_bytes(value: &Self::Scalar) -> [u8; 32];
    /// Canonical scalar encoding only.
    fn scalar_from_bytes(bytes: &[u8]) -> Option<Self::Scalar>;
    /// BIP32's `I_L` to a tweak: `None` where BIP32 calls the index invalid.
    fn bip32_tweak(il: &[u8; 32]) -> Option<Self::Scalar>;

    /// The neutral element.
    fn identity() -> Self::Point;
    /// `scalar·B`.
    fn mul_base(scalar: &Self::Scalar) -> Self::Point;
    /// `scalar·point`.
    fn mul(point: &Self::Point, scalar: &Self::Scalar) -> Self::Point;
    /// The canonical compressed encoding.
    fn point_to_bytes(point: &Self::Point) -> Vec<u8>;
    /// Canonical encodings of prime-order-subgroup points only.
    fn point_from_bytes(bytes: &[u8]) -> Option<Self::Point>;
    /// Decompression only, for points this library validated with
    /// [`Group::point_from_bytes`] when they entered it (stored shares,
    /// derivation results): it skips ed25519's subgroup check, a full scalar
    /// multiplication that would otherwise dominate FROST signing.
    fn point_from_trusted_bytes(bytes: &[u8]) -> Option<Self::Point> {
        Self::point_from_bytes(bytes)
    }
}

/// secp256k1.
#[derive(Debug)]
pub enum Secp256k1 {}

impl Group for Secp256k1 {
    type Scalar = k256::Scalar;
    type Point = k256::ProjectivePoint;

    // k256 0.13 still speaks generic-array 0.14, which is deprecated upstream.
    #[allow(deprecated)]
    fn scalar_from_wide(bytes: &[u8; 64]) -> k256::Scalar {
        use k256::elliptic_curve::bigint::U512;
        use k256::elliptic_curve::generic_array::GenericArray;
        use k256::elliptic_curve::ops::Reduce;
        <k256::Scalar as Reduce<U512>>::reduce_bytes(GenericArray::from_slice(bytes))
    }

    /// A small integer as a scalar.
    fn scalar_from_u64(value: u64) -> k256::Scalar {
        k256::Scalar::from(value)
    }

    fn scalar_invert(value: &k256::Scalar) -> Option<k256::Scalar> {
        Option::from(value.invert())
    }

    fn scalar_neg(value: &k256::Scalar) -> k256::Scalar {
        -*value
    }

    fn scalar_to_bytes(value: &k256::Scalar) -> [u8; 32] {
        value.to_bytes().into()
    }

    fn scalar_from_bytes(bytes: &[u8]) -> Option<k256::Scalar> {
        use k256::elliptic_curve::PrimeField;
        let bytes: [u8; 32] = bytes.try_into().ok()?;
        Option::from(k256::Scalar::from_repr(bytes.into()))
    }

    fn bip32_tweak(il: &[u8; 32]) -> Option<k256::Scalar> {
        // BIP32: parse256(I_L) >= n makes the index invalid.
        Self::scalar_from_bytes(il)
    }

    fn identity() -> k256::ProjectivePoint {
        k256::ProjectivePoint::IDENTITY
    }

    fn mul_base(scalar: &k256::Scalar) -> k256::ProjectivePoint {
        k256::ProjectivePoint::GENERATOR * scalar
    }

    fn mul(point: &k256::ProjectivePoint, scalar: &k256::Scalar) -> k256::ProjectivePoint {
        *point * scalar
    }

    fn point_to_bytes(point: &k256::ProjectivePoint) -> Vec<u8> {
        use k256::elliptic_curve::sec1::ToEncodedPoint;
        point.to_affine().to_encoded_point(true).as_bytes().to_vec()
    }

    fn point_from_bytes(bytes: &[u8]) -> Option<k256::ProjectivePoint> {
        use k256::elliptic_curve::sec1::FromEncodedPoint;
        if bytes.len() != 33 {
            return None;
        }
        let encoded = k256::EncodedPoint::from_bytes(bytes).ok()?;
        let affine: Option<k256::AffinePoint> = Option::from(k256::AffinePoint::from_encoded_point(&encoded));
        affine.map(k256::ProjectivePoint::from)
    }
}

/// edwards25519, prime-order subgroup.
#[derive(Debug)]
pub enum Ed25519 {}

impl Group for Ed25519 {
    type Scalar = curve25519_dalek::Scalar;
    type Point = curve25519_dalek::EdwardsPoint;

    fn scalar_from_wide(bytes: &[u8; 64]) -> curve25519_dalek::Scalar {
        curve25519_dalek::Scalar::from_bytes_mod_order_wide(bytes)
    }

    /// A small integer as a scalar.
    fn scalar_from_u64(value: u64) -> curve25519_dalek::Scalar {
        curve25519_dalek::Scalar::from(value)
    }

    fn scalar_invert(value: &curve25519_dalek::Scalar) -> Option<curve25519_dalek::Scalar> {
        (*value != curve25519_dalek::Scalar::ZERO).then(|| value.invert())
    }

    fn scalar_neg(value: &curve25519_dalek::Scalar) -> curve25519_dalek::Scalar {
        -*value
    }

    fn scalar_to_bytes(value: &curve25519_dalek::Scalar) -> [u8; 32] {
        value.to_bytes()
    }

    fn scalar_from_bytes(bytes: &[u8]) -> Option<curve25519_dalek::Scalar> {
        let bytes: [u8; 32] = bytes.try_into().ok()?;
        Option::from(curve25519_dalek::Scalar::from_canonical_bytes(bytes))
    }

    fn bip32_tweak(il: &[u8; 32]) -> Option<curve25519_dalek::Scalar> {
        // Over edwards25519 every I_L is usable after reduction mod ℓ.
        Some(curve25519_dalek::Scalar::from_bytes_mod_order(*il))
    }

    fn identity() -> curve25519_dalek::EdwardsPoint {
        curve25519_dalek::traits::Identity::identity()
    }

    fn mul_base(scalar: &curve25519_dalek::Scalar) -> curve25519_dalek::EdwardsPoint {
        curve25519_dalek::EdwardsPoint::mul_base(scalar)
    }

    fn mul(
        point: &curve25519_dalek::EdwardsPoint,
        scalar: &curve25519_dalek::Scalar,
    ) -> curve25519_dalek::EdwardsPoint {
        point * scalar
    }

    fn point_to_bytes(point: &curve25519_dalek::EdwardsPoint) -> Vec<u8> {
        point.compress().to_bytes().to_vec()
    }

    fn point_from_bytes(bytes: &[u8]) -> Option<curve25519_dalek::EdwardsPoint> {
        let compressed = curve25519_dalek::edwards::CompressedEdwardsY::from_slice(bytes).ok()?;
        let point = compressed.decompress()?;
        // Refuse non-canonical encodings and points outside the prime-order subgroup.
        (point.compress() == compressed && point.is_torsion_free()).then_some(point)
    }

    fn point_from_trusted_bytes(bytes: &[u8]) -> Option<curve25519_dalek::EdwardsPoint> {
        curve25519_dalek::edwards::CompressedEdwardsY::from_slice(bytes).ok()?.decompress()
    }
}
