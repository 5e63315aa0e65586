//! Canonical JSON: the one byte form of a genesis, a request or a policy.
//!
//! The encoding is serde_json's compact output of the Rust types, fields in
//! declaration order (docs/GOVERNANCE.md lists the order). Decoding re-encodes
//! what it decoded and refuses bytes that differ, so one value has one
//! encoding and one hash, and a signature over the bytes signs exactly what
//! every reader decodes.

use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::Error;

/// The largest canonical object read (a request carrying a large unsigned
/// transaction stays well below it).
pub const MAX_CANONICAL: usize = 1024 * 1024;

/// The canonical bytes of `value`.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| Error::Governance(format!("cannot encode: {e}")))
}

/// Decodes `bytes`, refusing anything but the canonical encoding of the result.
pub fn decode<T: Serialize + DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Error> {
    if bytes.len() > MAX_CANONICAL {
        return Err(Error::Governance(format!("{what}: {} bytes, more than the {MAX_CANONICAL} allowed", bytes.len())));
    }
    let value: T = serde_json::from_slice(bytes).map_err(|e| Error::Governance(format!("{what}: {e}")))?;
    if encode(&value)? != bytes {
        return Err(Error::Governance(format!(
            "{what}: not in canonical form (compact JSON, fields in the documented order, no extra fields)"
        )));
    }
    Ok(value)
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Serde as lowercase hex.
pub(crate) mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(serde::de::Error::custom("hex must be lowercase"));
        }
        hex::decode(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde through `Display` and `FromStr` (ids, paths, chains).
pub(crate) mod text {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Display, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub fn deserialize<'de, T, D>(deserializer: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Serde of a list through `Display` and `FromStr` (a list of ids).
pub(crate) mod text_list {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Display, S: Serializer>(values: &[T], serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(values.len()))?;
        for value in values {
            seq.serialize_element(&value.to_string())?;
        }
        seq.end()
    }

    pub fn deserialize<'de, T, D>(deserializer: D) -> Result<Vec<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        Vec::<String>::deserialize(deserializer)?
            .into_iter()
            .map(|text| text.parse().map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Thing {
        a: u64,
        #[serde(with = "hex_bytes")]
        b: Vec<u8>,
    }

    #[test]
    fn only_the_canonical_bytes_decode() {
        let thing = Thing { a: 7, b: vec![0xab] };
        let bytes = encode(&thing).unwrap();
        assert_eq!(bytes, br#"{"a":7,"b":"ab"}"#);
        assert_eq!(decode::<Thing>("thing", &bytes).unwrap(), thing);
        for other in [
            &br#"{"b":"ab","a":7}"#[..],
            br#"{"a":7, "b":"ab"}"#,
            br#"{"a":7,"b":"AB"}"#,
            br#"{"a":7,"b":"ab","c":1}"#,
            br#"{"a":7.0,"b":"ab"}"#,
            br#"{"a":7,"b":"ab"} "#,
        ] {
            assert!(decode::<Thing>("thing", other).is_err(), "{}", String::from_utf8_lossy(other));
        }
    }
}
