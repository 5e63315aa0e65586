//! What split and combine refuse (the refusals of Vault's `shamir` package,
//! plus an x coordinate of 0, which no split makes).

use shardvault_shamir::{combine, split, Error};

#[test]
fn split_refuses_a_bad_threshold_or_an_empty_secret() {
    assert_eq!(split(b"test", 3, 1), Err(Error::Threshold { parts: 3, threshold: 1 }));
    assert_eq!(split(b"test", 0, 0), Err(Error::Threshold { parts: 0, threshold: 0 }));
    assert_eq!(split(b"test", 2, 3), Err(Error::Threshold { parts: 2, threshold: 3 }));
    assert_eq!(split(b"test", 1, 1), Err(Error::Threshold { parts: 1, threshold: 1 }));
    assert_eq!(split(b"", 3, 2), Err(Error::EmptySecret));
}

#[test]
fn combine_refuses_fewer_than_two_shares() {
    assert_eq!(combine(&[]), Err(Error::TooFewShares { given: 0 }));
    assert_eq!(combine(&[b"ab"]), Err(Error::TooFewShares { given: 1 }));
}

#[test]
fn combine_refuses_shares_of_different_lengths() {
    assert_eq!(combine(&[b"foo", b"ba"]), Err(Error::LengthMismatch { position: 2, len: 2, expected: 3 }));
}

#[test]
fn combine_refuses_shares_shorter_than_two_bytes() {
    assert_eq!(combine(&[b"f", b"b"]), Err(Error::ShareTooShort { position: 1, len: 1 }));
    assert_eq!(combine(&[b"", b""]), Err(Error::ShareTooShort { position: 1, len: 0 }));
}

#[test]
fn combine_refuses_a_repeated_x() {
    assert_eq!(combine(&[b"foo", b"foo"]), Err(Error::DuplicateX { position: 2, x: b'o' }));
    assert_eq!(combine(&[b"ab", b"cd", b"eb"]), Err(Error::DuplicateX { position: 3, x: b'b' }));
    // 256 shares cannot all have distinct non-zero x coordinates.
    let many: Vec<[u8; 2]> = (0..=255u8).map(|x| [1, x.max(1)]).collect();
    let many: Vec<&[u8]> = many.iter().map(|s| s.as_slice()).collect();
    assert!(matches!(combine(&many), Err(Error::DuplicateX { .. })));
}

#[test]
fn combine_refuses_x_zero() {
    assert_eq!(combine(&[b"a\x01", b"b\x00"]), Err(Error::ZeroX { position: 2 }));
}

#[test]
fn refusals_say_what_is_wrong() {
    let message = combine(&[b"foo", b"ba"]).unwrap_err().to_string();
    assert!(message.contains("share 2 is 2 bytes long but share 1 is 3"), "{message}");
    let message = split(b"x", 3, 4).unwrap_err().to_string();
    assert!(message.contains("threshold 4"), "{message}");
}
