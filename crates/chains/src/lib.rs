//! Chains: addresses from derived public keys, and the transactions and
//! messages each chain's keys sign. Pure: no I/O.
//!
//! Each format comes from the chain's own rules, through a maintained crate
//! where one exists: `bitcoin` for P2WPKH and P2TR (BIP86 key-path tweak),
//! base58check and hash160; `alloy-primitives` for EIP-55; `sui-sdk-types`
//! for Sui; Solana (base58 of the key), Aptos (`0x` ‖ hex(sha3-256(pk ‖
//! 0x00))), Tron (base58check of 0x41 ‖ the EVM address) and Cosmos (bech32
//! of hash160(pk)) are a line or two each.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]
#![warn(missing_docs)]

pub mod aptos;
pub mod cosmos;
pub mod evm;
pub mod message;
pub mod psbt;
pub mod sample;
pub mod solana;
pub mod sui;
pub mod transaction;
pub mod tron;
pub mod tx;

pub use message::MessageFormat;
pub use transaction::{Transaction, Unsigned};

use std::fmt;
use std::str::FromStr;

use bitcoin::secp256k1::{PublicKey, Secp256k1, XOnlyPublicKey};
use serde::{Deserialize, Serialize};
use sha3::{Digest, Sha3_256};

/// Errors from address derivation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The chain is not known.
    #[error(
        "unknown chain {0:?}; supported: bitcoin, litecoin, ethereum, bsc, polygon, arbitrum, optimism, base, avalanche, \
         solana, aptos, tron, cosmos, sui"
    )]
    UnknownChain(String),
    /// The key type cannot be used on this chain.
    #[error("{chain} has no address for {key} keys")]
    Unsupported {
        /// Chain name.
        chain: &'static str,
        /// Key type.
        key: KeyType,
    },
    /// An EVM transaction that cannot be signed as given.
    #[error("EVM transaction: {0}")]
    Evm(String),
    /// A transaction that cannot be signed as given.
    #[error("{chain} transaction: {detail}")]
    Transaction {
        /// Chain name.
        chain: &'static str,
        /// Why.
        detail: String,
    },
    /// A PSBT that cannot be signed as given.
    #[error("PSBT: {0}")]
    Psbt(String),
    /// A message that cannot be signed in the format asked for, or a format
    /// that is not this key's or this path's chain's.
    #[error("message signing: {0}")]
    Message(String),
    /// Bitcoin message signing takes UTF-8 text.
    #[error("this message format signs UTF-8 text; the message is not valid UTF-8")]
    NotText,
    /// The public key bytes are not a valid key of their type.
    #[error("invalid {key} public key: {detail}")]
    InvalidKey {
        /// Key type.
        key: KeyType,
        /// Why.
        detail: String,
    },
}

pub use shardvault_types::KeyType;

/// A chain family shardvault derives addresses for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Chain {
    /// Bitcoin mainnet: P2WPKH for ECDSA keys, P2TR (BIP86) for BIP340 keys.
    Bitcoin,
    /// Litecoin mainnet: P2WPKH (`ltc1q…`) for ECDSA keys, P2TR (`ltc1p…`) for BIP340 keys.
    Litecoin,
    /// Ethereum and EVM chains: EIP-55 checksummed address.
    Ethereum,
    /// Solana: base58 of the Ed25519 key.
    Solana,
    /// Aptos: single-key Ed25519 authentication key.
    Aptos,
    /// Tron: base58check of 0x41 ‖ the key's EVM address.
    Tron,
    /// Cosmos SDK chains (Cosmos Hub addresses): bech32 `cosmos` of hash160(pk).
    Cosmos,
    /// Sui: blake2b-256(0x00 ‖ pk).
    Sui,
}

impl Chain {
    /// Every chain, in a stable order.
    pub const ALL: [Chain; 8] = [
        Chain::Bitcoin,
        Chain::Litecoin,
        Chain::Ethereum,
        Chain::Solana,
        Chain::Aptos,
        Chain::Tron,
        Chain::Cosmos,
        Chain::Sui,
    ];

    /// The chain's name as used on the command line and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Chain::Bitcoin => "bitcoin",
            Chain::Litecoin => "litecoin",
            Chain::Ethereum => "ethereum",
            Chain::Solana => "solana",
            Chain::Aptos => "aptos",
            Chain::Tron => "tron",
            Chain::Cosmos => "cosmos",
            Chain::Sui => "sui",
        }
    }

    /// The network a transaction is checked against when none is named
    /// (for Cosmos, the SignDoc's chain id).
    pub const fn default_network(self) -> &'static str {
        match self {
            Chain::Bitcoin => "bitcoin",
            Chain::Cosmos => "cosmoshub-4",
            _ => "mainnet",
        }
    }

    /// SLIP-44 coin type, the third component of MPCVault's path.
    pub const fn coin_type(self) -> u32 {
        match self {
            Chain::Bitcoin => 0,
            Chain::Litecoin => 2,
            Chain::Ethereum => 60,
            Chain::Solana => 501,
            Chain::Aptos => 637,
            Chain::Tron => 195,
            Chain::Cosmos => 118,
            Chain::Sui => 784,
        }
    }

    /// Whether this chain has addresses for `key`.
    pub const fn accepts(self, key: KeyType) -> bool {
        matches!(
            (self, key),
            (Chain::Bitcoin | Chain::Litecoin, KeyType::EcdsaSecp256k1 | KeyType::SchnorrSecp256k1)
                | (Chain::Ethereum | Chain::Tron | Chain::Cosmos, KeyType::EcdsaSecp256k1)
                | (Chain::Solana | Chain::Aptos | Chain::Sui, KeyType::Ed25519)
        )
    }

    /// The address of `public_key` on this chain.
    pub fn address(self, key: KeyType, public_key: &[u8]) -> Result<String, Error> {
        if !self.accepts(key) {
            return Err(Error::Unsupported { chain: self.name(), key });
        }
        match (self, key) {
            (Chain::Bitcoin, KeyType::EcdsaSecp256k1) => p2wpkh(public_key, bitcoin::Network::Bitcoin),
            (Chain::Bitcoin, _) => p2tr(public_key, bitcoin::Network::Bitcoin),
            (Chain::Litecoin, KeyType::EcdsaSecp256k1) => litecoin(KeyType::EcdsaSecp256k1, public_key),
            (Chain::Litecoin, _) => litecoin(KeyType::SchnorrSecp256k1, public_key),
            (Chain::Ethereum, _) => eip55(public_key),
            (Chain::Solana, _) => ed25519_key(public_key).map(|k| bs58::encode(k).into_string()),
            (Chain::Aptos, _) => aptos(public_key),
            (Chain::Tron, _) => tron_address(public_key),
            (Chain::Cosmos, _) => cosmos_address(public_key, "cosmos"),
            (Chain::Sui, _) => Ok(sui::address(ed25519_key(public_key)?)),
        }
    }
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// EVM chains by name: all use Ethereum's addresses and keys (coin type 60);
/// the name selects the chain id ([`evm::chain_id`]).
pub const EVM_CHAINS: [&str; 7] = ["ethereum", "bsc", "polygon", "arbitrum", "optimism", "base", "avalanche"];

impl FromStr for Chain {
    type Err = Error;
    /// A chain by name; the EVM chains of [`EVM_CHAINS`] are [`Chain::Ethereum`].
    fn from_str(s: &str) -> Result<Self, Error> {
        if EVM_CHAINS.contains(&s) {
            return Ok(Chain::Ethereum);
        }
        Chain::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| Error::UnknownChain(s.to_string()))
    }
}

fn secp_key(key: KeyType, bytes: &[u8]) -> Result<PublicKey, Error> {
    if bytes.len() != 33 {
        return Err(Error::InvalidKey {
            key,
            detail: format!("expected 33 bytes (SEC1 compressed), got {}", bytes.len()),
        });
    }
    PublicKey::from_slice(bytes).map_err(|e| Error::InvalidKey { key, detail: e.to_string() })
}

fn ed25519_key(bytes: &[u8]) -> Result<&[u8; 32], Error> {
    bytes.try_into().map_err(|_| Error::InvalidKey {
        key: KeyType::Ed25519,
        detail: format!("expected 32 bytes, got {}", bytes.len()),
    })
}

/// BIP84 native SegWit v0 address of a compressed key.
pub fn p2wpkh(public_key: &[u8], network: bitcoin::Network) -> Result<String, Error> {
    let key = bitcoin::CompressedPublicKey(secp_key(KeyType::EcdsaSecp256k1, public_key)?);
    Ok(bitcoin::Address::p2wpkh(&key, network).to_string())
}

/// BIP86 Taproot key-path address: the internal key tweaked with an empty script tree.
pub fn p2tr(internal_key: &[u8], network: bitcoin::Network) -> Result<String, Error> {
    let key = XOnlyPublicKey::from(secp_key(KeyType::SchnorrSecp256k1, internal_key)?);
    Ok(bitcoin::Address::p2tr(&Secp256k1::verification_only(), key, None, network).to_string())
}

/// EIP-55 checksummed Ethereum address: last 20 bytes of keccak256 of the uncompressed key.
pub fn eip55(public_key: &[u8]) -> Result<String, Error> {
    let key = secp_key(KeyType::EcdsaSecp256k1, public_key)?;
    let [_, xy @ ..] = key.serialize_uncompressed();
    let address = alloy_primitives::Address::from_raw_public_key(&xy);
    Ok(address.to_checksum(None))
}

/// Litecoin mainnet address: P2WPKH (ECDSA) or BIP86 P2TR (BIP340), hrp `ltc`.
pub fn litecoin(key: KeyType, public_key: &[u8]) -> Result<String, Error> {
    let script = psbt::key_script(key, public_key)?;
    psbt::segwit_address(&script, "ltc").ok_or_else(|| Error::InvalidKey { key, detail: "no address".into() })
}

/// Tron address: base58check of 0x41 ‖ the last 20 bytes of keccak256 of the uncompressed key.
pub fn tron_address(public_key: &[u8]) -> Result<String, Error> {
    let key = secp_key(KeyType::EcdsaSecp256k1, public_key)?;
    let [_, xy @ ..] = key.serialize_uncompressed();
    let evm = alloy_primitives::Address::from_raw_public_key(&xy);
    let mut payload = vec![0x41];
    payload.extend_from_slice(evm.as_slice());
    Ok(bitcoin::base58::encode_check(&payload))
}

/// Cosmos SDK address: bech32 with human-readable part `hrp` of ripemd160(sha256(pk)).
pub fn cosmos_address(public_key: &[u8], hrp: &str) -> Result<String, Error> {
    use bitcoin::hashes::{hash160, Hash};
    let key = secp_key(KeyType::EcdsaSecp256k1, public_key)?;
    let hrp = bitcoin::bech32::Hrp::parse(hrp).map_err(|e| Error::UnknownChain(format!("bech32 prefix: {e}")))?;
    let hash = hash160::Hash::hash(&key.serialize());
    bitcoin::bech32::encode::<bitcoin::bech32::Bech32>(hrp, hash.as_byte_array())
        .map_err(|e| Error::UnknownChain(format!("bech32: {e}")))
}

/// Aptos single-key Ed25519 address: `0x` ‖ hex(sha3-256(pk ‖ 0x00)).
pub fn aptos(public_key: &[u8]) -> Result<String, Error> {
    let key = ed25519_key(public_key)?;
    let digest = Sha3_256::new().chain_update(key).chain_update([0u8]).finalize();
    Ok(format!("0x{}", hex::encode(digest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// BIP84's vector: "abandon ×11 about", m/84'/0'/0'/0/0.
    #[test]
    fn bip84_vector() {
        let key = h("0330d54fd0dd420a6e5f8d3624f5f3482cae350f79d5f0753bf5beef9c2d91af3c");
        assert_eq!(
            Chain::Bitcoin.address(KeyType::EcdsaSecp256k1, &key).unwrap(),
            "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
        );
    }

    /// BIP86's vector: "abandon ×11 about", m/86'/0'/0'/0/0 (internal key given x-only; either parity maps to it).
    #[test]
    fn bip86_vector() {
        let key = h("02cc8a4bc64d897bddc5fbc2f670f7a8ba0b386779106cf1223c6fc5d7cd6fc115");
        assert_eq!(
            Chain::Bitcoin.address(KeyType::SchnorrSecp256k1, &key).unwrap(),
            "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr"
        );
    }

    /// Private key 1 (public key = G) is Ethereum address 0x7E5F…5Bdf.
    #[test]
    fn eip55_vector() {
        let g = h("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798");
        assert_eq!(
            Chain::Ethereum.address(KeyType::EcdsaSecp256k1, &g).unwrap(),
            "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
        );
    }

    /// BIP84 for Litecoin ("abandon ×11 about", m/84'/2'/0'/0/0), as Trezor's
    /// tests and the `bip_utils` library give it.
    #[test]
    fn litecoin_bip84_vector() {
        let key = h("02e49c9b9b5d0f127235dc26a0c252814c52fb333d651a946773f59d72c2da9904");
        assert_eq!(
            Chain::Litecoin.address(KeyType::EcdsaSecp256k1, &key).unwrap(),
            "ltc1qjmxnz78nmc8nq77wuxh25n2es7rzm5c2rkk4wh"
        );
    }

    /// Solana's system program is the all-zero key; the Aptos TypeScript SDK's
    /// Ed25519 test account (tests/unit/helper.ts) has this address.
    #[test]
    fn solana_and_aptos_vectors() {
        assert_eq!(Chain::Solana.address(KeyType::Ed25519, &[0u8; 32]).unwrap(), "11111111111111111111111111111111");
        let key = h("de19e5d1880cac87d57484ce9ed2e84cf0f9599f12e7cc3a52e4e7657a763f2c");
        assert_eq!(
            Chain::Aptos.address(KeyType::Ed25519, &key).unwrap(),
            "0x978c213990c4833df71548df7ce49d54c759d6b6d932de22b24d56060b7af2aa"
        );
    }

    /// The SDKs' own vectors: Sui's TypeScript SDK (ed25519-publickey.test.ts,
    /// generated with the `sui` CLI), cosmjs (`pubkeyToAddress`), and Trust
    /// Wallet's Tron test (the key of a published private key).
    #[test]
    fn sui_cosmos_and_tron_vectors() {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        for (key, address) in [
            (
                "UdGRWooy48vGTs0HBokIis5NK+DUjiWc9ENUlcfCCBE=",
                "0xd77a6cd55073e98d4029b1b0b8bd8d88f45f343dad2732fc9a7965094e635c55",
            ),
            (
                "0PTAfQmNiabgbak9U/stWZzKc5nsRqokda2qnV2DTfg=",
                "0x7e8fd489c3d3cd9cc7cbcc577dc5d6de831e654edd9997d95c412d013e6eea23",
            ),
        ] {
            assert_eq!(Chain::Sui.address(KeyType::Ed25519, &b64(key)).unwrap(), address);
        }
        let cosmos = b64("AtQaCqFnshaZQp6rIkvAPyzThvCvXSDO+9AzbxVErqJP");
        assert_eq!(
            Chain::Cosmos.address(KeyType::EcdsaSecp256k1, &cosmos).unwrap(),
            "cosmos1h806c7khnvmjlywdrkdgk2vrayy2mmvf9rxk2r"
        );
        let secret = bitcoin::secp256k1::SecretKey::from_slice(&h(
            "BE88DF1D0BF30A923CB39C3BB953178BAAF3726E8D3CE81E7C8462E046E0D835",
        ))
        .unwrap();
        let tron = PublicKey::from_secret_key(&Secp256k1::new(), &secret).serialize();
        assert_eq!(Chain::Tron.address(KeyType::EcdsaSecp256k1, &tron).unwrap(), "THRF3GuPnvvPzKoaT8pJex5XHmo8NNbCb3");
    }

    /// EIP-191 of "hello world" is the value ethers.js documents for `hashMessage`.
    #[test]
    fn message_digests() {
        let eip191 = MessageFormat::Eip191.signing_input(&[], b"hello world").unwrap();
        assert_eq!(hex::encode(eip191), "d9eba16ed0ecae432b71fe008c98cc872bb4cc214d3220a36f365326cf807d68");
        assert!(MessageFormat::BitcoinSignedMessage.signing_input(&[], &[0xff]).is_err());
        assert_eq!(Chain::Bitcoin.message_format(KeyType::SchnorrSecp256k1), Some(MessageFormat::Bip322Simple));
        assert_eq!(Chain::Litecoin.message_format(KeyType::SchnorrSecp256k1), None);
    }

    #[test]
    fn wrong_keys_are_refused() {
        assert!(Chain::Ethereum.address(KeyType::Ed25519, &[0u8; 32]).is_err());
        assert!(Chain::Solana.address(KeyType::EcdsaSecp256k1, &[2u8; 33]).is_err());
        assert!(Chain::Bitcoin.address(KeyType::EcdsaSecp256k1, &[0u8; 33]).is_err());
        assert!(Chain::Aptos.address(KeyType::Ed25519, &[0u8; 31]).is_err());
        assert!("dogecoin".parse::<Chain>().is_err());
        assert_eq!("polygon".parse::<Chain>().unwrap(), Chain::Ethereum);
    }
}
