//! Properties over random (threshold, parts) up to 255 and random secrets.

use proptest::prelude::*;
use shardvault_shamir::{combine, split};

/// (threshold, parts) with 2 <= threshold <= parts <= 255.
fn threshold_and_parts() -> impl Strategy<Value = (u8, u8)> {
    (2u8..=255).prop_flat_map(|t| (Just(t), t..=255))
}

/// The shares at `count` distinct positions, chosen by `seed`.
fn some(shares: &[zeroize::Zeroizing<Vec<u8>>], count: usize, seed: u64) -> Vec<&[u8]> {
    let mut order: Vec<usize> = (0..shares.len()).collect();
    let mut state = seed | 1;
    for last in (1..order.len()).rev() {
        // xorshift64: only picks which shares, no secret depends on it.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        order.swap(last, (state % (last as u64 + 1)) as usize);
    }
    order.into_iter().take(count).map(|i| shares[i].as_slice()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_threshold_of_the_shares_gives_the_secret(
        (t, n) in threshold_and_parts(),
        secret in prop::collection::vec(any::<u8>(), 1..=32),
        seed in any::<u64>(),
    ) {
        let shares = split(&secret, n, t).unwrap();
        prop_assert_eq!(shares.len(), usize::from(n));
        let mut xs: Vec<u8> = shares.iter().map(|s| *s.last().unwrap()).collect();
        prop_assert!(shares.iter().all(|s| s.len() == secret.len() + 1));
        prop_assert!(xs.iter().all(|&x| x != 0));
        xs.sort_unstable();
        xs.dedup();
        prop_assert_eq!(xs.len(), usize::from(n), "x coordinates repeat");
        let from_t = combine(&some(&shares, usize::from(t), seed)).unwrap();
        prop_assert_eq!(from_t.as_slice(), secret.as_slice());
        let from_all = combine(&some(&shares, usize::from(n), seed)).unwrap();
        prop_assert_eq!(from_all.as_slice(), secret.as_slice());
    }

    #[test]
    fn one_share_fewer_than_the_threshold_does_not(
        (t, n) in threshold_and_parts().prop_filter("t - 1 >= 2 shares to combine", |(t, _)| *t >= 3),
        secret in prop::collection::vec(any::<u8>(), 32),
        seed in any::<u64>(),
    ) {
        // t - 1 shares interpolate to a uniformly random 32 bytes: equal to
        // the secret with probability 2^-256.
        let shares = split(&secret, n, t).unwrap();
        let from_fewer = combine(&some(&shares, usize::from(t) - 1, seed)).unwrap();
        prop_assert_ne!(from_fewer.as_slice(), secret.as_slice());
    }
}

#[test]
fn the_extremes() {
    let secret = [0x5a; 32];
    for (t, n) in [(2, 2), (2, 255), (255, 255), (128, 255)] {
        let shares = split(&secret, n, t).unwrap();
        let all: Vec<&[u8]> = shares.iter().map(|s| s.as_slice()).collect();
        assert_eq!(combine(&all).unwrap().as_slice(), secret, "{t} of {n}");
        assert_eq!(combine(&all[all.len() - usize::from(t)..]).unwrap().as_slice(), secret, "{t} of {n}");
    }
}

#[test]
fn two_splits_of_one_secret_differ() {
    let secret = [7u8; 32];
    let (a, b) = (split(&secret, 3, 2).unwrap(), split(&secret, 3, 2).unwrap());
    assert_ne!(a, b, "split must draw fresh randomness");
}
