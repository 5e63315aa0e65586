//! Known answers from an independent implementation of Vault's format:
//! shares made by Privy's `shamir-secret-sharing` (tests/vectors/shamir-js.json,
//! see its `note`) combine here to the secret they were made from.

use shardvault_shamir::combine;

struct Vector {
    threshold: usize,
    secret: Vec<u8>,
    shares: Vec<Vec<u8>>,
}

fn vectors() -> Vec<Vector> {
    let file: serde_json::Value = serde_json::from_str(include_str!("vectors/shamir-js.json")).unwrap();
    let bytes = |v: &serde_json::Value| hex::decode(v.as_str().unwrap()).unwrap();
    let vectors: Vec<Vector> = file["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| Vector {
            threshold: v["threshold"].as_u64().unwrap() as usize,
            secret: bytes(&v["secret"]),
            shares: v["shares"].as_array().unwrap().iter().map(bytes).collect(),
        })
        .collect();
    assert!(vectors.len() >= 9, "the vector file lost entries");
    vectors
}

fn combined(shares: &[&Vec<u8>]) -> Vec<u8> {
    let shares: Vec<&[u8]> = shares.iter().map(|s| s.as_slice()).collect();
    combine(&shares).unwrap().to_vec()
}

#[test]
fn every_share_together_gives_the_secret() {
    for v in vectors() {
        assert_eq!(combined(&v.shares.iter().collect::<Vec<_>>()), v.secret);
    }
}

#[test]
fn any_threshold_of_them_gives_the_secret() {
    for v in vectors() {
        let n = v.shares.len();
        // The first t, the last t, and t spread over the whole set.
        let first: Vec<_> = v.shares.iter().take(v.threshold).collect();
        let last: Vec<_> = v.shares.iter().skip(n - v.threshold).collect();
        let step = n / v.threshold;
        let spread: Vec<_> = v.shares.iter().step_by(step).take(v.threshold).rev().collect();
        for subset in [first, last, spread] {
            assert_eq!(subset.len(), v.threshold);
            assert_eq!(combined(&subset), v.secret, "threshold {} of {n}", v.threshold);
        }
    }
}

#[test]
fn one_share_fewer_does_not() {
    // Fixed data, so this is deterministic; one-byte secrets are left out
    // (t - 1 shares hit them by chance one time in 256).
    for v in vectors().into_iter().filter(|v| v.secret.len() >= 4) {
        let subset: Vec<_> = v.shares.iter().take(v.threshold - 1).collect();
        if subset.len() >= 2 {
            assert_ne!(combined(&subset), v.secret, "threshold {}", v.threshold);
        }
    }
}
