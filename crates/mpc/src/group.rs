//! Group helpers for the protocols. The group arithmetic itself lives in
//! `shardvault-types` (public derivation needs it too); what only the
//! threshold protocols use is here.

pub(crate) use shardvault_types::group::{Ed25519, Group, Secp256k1};

/// Lagrange coefficient of `x_i` at zero over the set `xs`.
pub(crate) fn lagrange_at_zero<G: Group>(x_i: u8, xs: &[u8]) -> Option<G::Scalar> {
    let mut num = G::scalar_from_u64(1);
    let mut den = G::scalar_from_u64(1);
    let xi = G::scalar_from_u64(u64::from(x_i));
    for &x_j in xs.iter().filter(|&&x| x != x_i) {
        let xj = G::scalar_from_u64(u64::from(x_j));
        num = num * xj;
        den = den * (xj + G::scalar_neg(&xi));
    }
    G::scalar_invert(&den).map(|inv| num * inv)
}

/// Σ_j x^j · C_j: a committed polynomial evaluated in the exponent.
pub(crate) fn eval_commitment<G: Group>(commitments: &[G::Point], x: u8) -> G::Point {
    let x = G::scalar_from_u64(u64::from(x));
    let mut power = G::scalar_from_u64(1);
    let mut sum = G::identity();
    for c in commitments {
        sum = sum + G::mul(c, &power);
        power = power * x;
    }
    sum
}
