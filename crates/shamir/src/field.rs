//! GF(2^8) with the AES reduction polynomial x^8 + x^4 + x^3 + x + 1 (0x11b),
//! the field HashiCorp Vault's `shamir` package works in.
//!
//! Vault multiplies and divides through log/exp tables, whose lookups are
//! indexed by secret bytes and so can leak them through the cache. Here
//! multiplication is the shift-and-add ("Russian peasant") loop with masks
//! instead of branches, always eight rounds, and the inverse is a^254 (by
//! Fermat: a^255 = 1 for every a != 0) computed by one fixed chain of
//! squarings and multiplications. Neither branches on nor indexes by its
//! operands, so the time taken does not depend on them. The two give the
//! same field elements as Vault's tables (unit tests below check Vault's own
//! field examples and the whole multiplication table against a plain
//! reference), so shares are byte-for-byte the same format.

/// Sum (and difference: the field has characteristic 2).
pub(crate) fn add(a: u8, b: u8) -> u8 {
    a ^ b
}

/// Product, in constant time.
pub(crate) fn mul(a: u8, b: u8) -> u8 {
    let (mut a, mut b, mut product) = (a, b, 0u8);
    for _ in 0..8 {
        // All ones when b's low bit is set, else zero.
        product ^= a & 0u8.wrapping_sub(b & 1);
        // a * x, reduced by 0x11b when the x^7 term overflows.
        let carry = 0u8.wrapping_sub(a >> 7);
        a = (a << 1) ^ (carry & 0x1b);
        b >>= 1;
    }
    product
}

/// Multiplicative inverse, a^254, in constant time; 0 for 0 (callers never
/// invert 0: denominators are differences of distinct x coordinates).
pub(crate) fn inverse(a: u8) -> u8 {
    // 254 = 0b1111_1110: a^2, a^4, …, a^128 multiplied together.
    let mut square = mul(a, a);
    let mut power = square;
    for _ in 0..6 {
        square = mul(square, square);
        power = mul(power, square);
    }
    power
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Schoolbook carry-less product reduced bit by bit: an independent
    /// reference for `mul`.
    fn reference_mul(a: u8, b: u8) -> u8 {
        let mut wide: u16 = 0;
        for bit in 0..8 {
            if b >> bit & 1 == 1 {
                wide ^= u16::from(a) << bit;
            }
        }
        for bit in (8..16).rev() {
            if wide >> bit & 1 == 1 {
                wide ^= 0x11b << (bit - 8);
            }
        }
        wide as u8
    }

    #[test]
    fn vaults_field_examples() {
        // The examples in Vault's shamir_test.go: add(16,16)=0, add(3,4)=7,
        // mult(3,7)=9, mult(3,0)=0, div(3,3)=1, div(6,3)=2.
        assert_eq!(add(16, 16), 0);
        assert_eq!(add(3, 4), 7);
        assert_eq!(mul(3, 7), 9);
        assert_eq!(mul(3, 0), 0);
        assert_eq!(mul(0, 3), 0);
        assert_eq!(mul(3, inverse(3)), 1);
        assert_eq!(mul(6, inverse(3)), 2);
        // FIPS-197 section 4.2: {57} * {83} = {c1}, {57} * {13} = {fe}.
        assert_eq!(mul(0x57, 0x83), 0xc1);
        assert_eq!(mul(0x57, 0x13), 0xfe);
    }

    #[test]
    fn vaults_tables_are_this_field() {
        // Vault's tables.go: exp table of generator 0xe5, starting 01 e5 4c
        // b5 fb 9f fc 12 03 34 (these products do reduce by 0x11b, so they
        // tell this field from GF(2^8) under another polynomial).
        let mut power = 1u8;
        let mut powers = Vec::new();
        for _ in 0..10 {
            powers.push(power);
            power = mul(power, 0xe5);
        }
        assert_eq!(powers, [0x01, 0xe5, 0x4c, 0xb5, 0xfb, 0x9f, 0xfc, 0x12, 0x03, 0x34]);
        // And 0xe5 generates every non-zero element, as a log table needs.
        let mut seen = std::collections::BTreeSet::new();
        let mut power = 1u8;
        for _ in 0..255 {
            seen.insert(power);
            power = mul(power, 0xe5);
        }
        assert_eq!((seen.len(), power), (255, 1));
    }

    #[test]
    fn multiplication_matches_the_reference_everywhere() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                assert_eq!(mul(a, b), reference_mul(a, b), "{a} * {b}");
            }
        }
    }

    #[test]
    fn every_nonzero_element_has_its_inverse() {
        assert_eq!(inverse(0), 0);
        for a in 1..=255u8 {
            assert_eq!(mul(a, inverse(a)), 1, "{a}");
        }
    }
}
