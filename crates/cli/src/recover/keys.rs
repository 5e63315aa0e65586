//! A recovered child key as a chain's wallets take it: its address (the
//! nodes' own address code, `shardvault_chains`) and its private key in the
//! chain's import format (docs/RECOVERY.md, "What is printed").

use anyhow::{Context, Result};
use serde::Serialize;
use shardvault_chains::psbt::{self, UtxoNetwork};
use shardvault_chains::{Chain, KeyType};
use shardvault_mpc::RecoveredKey;
use zeroize::Zeroizing;

/// Which chain, by the name given (an EVM chain by its own name), and for
/// Bitcoin and Litecoin which network (addresses and WIF prefixes differ).
#[derive(Clone, Debug)]
pub struct Target {
    /// As given: `bitcoin`, `polygon`, …
    pub name: String,
    /// Its family.
    pub chain: Chain,
    /// `--network`, if given.
    pub network: Option<String>,
    /// Cosmos: the bech32 prefix (default `cosmos`).
    pub bech32_prefix: Option<String>,
}

impl Target {
    /// A chain by name.
    pub fn new(name: &str, network: Option<&str>, bech32_prefix: Option<&str>) -> Result<Self> {
        let chain: Chain = name.parse()?;
        Ok(Self {
            name: name.to_string(),
            chain,
            network: network.map(str::to_string),
            bech32_prefix: bech32_prefix.map(str::to_string),
        })
    }

    /// The address of `public_key` (a child key of type `key`), as the nodes derive it.
    pub fn address(&self, key: KeyType, public_key: &[u8]) -> Result<String> {
        match self.chain {
            Chain::Bitcoin | Chain::Litecoin => {
                let script = psbt::key_script(key, public_key)?;
                self.utxo_network()?.address(&script).with_context(|| format!("no {} address for the key", self.chain))
            }
            Chain::Cosmos => {
                Ok(shardvault_chains::cosmos_address(public_key, self.bech32_prefix.as_deref().unwrap_or("cosmos"))?)
            }
            chain => Ok(chain.address(key, public_key)?),
        }
    }

    fn utxo_network(&self) -> Result<UtxoNetwork> {
        Ok(psbt::network(self.chain, self.network.as_deref().unwrap_or(self.chain.default_network()))?)
    }
}

/// One entry of `keys` in the output.
#[derive(Serialize)]
pub struct KeyOutput {
    /// The chain, as named.
    pub chain: String,
    /// The derivation path.
    pub path: String,
    /// The key's address on the chain.
    pub address: String,
    /// The public key: SEC1 compressed (secp256k1; for BIP340 the untweaked
    /// internal key), 32 bytes (Ed25519), hex.
    pub public_key: String,
    /// The private key in `private_key_format`.
    #[serde(serialize_with = "secret_str")]
    pub private_key: Zeroizing<String>,
    /// What `private_key` is: `wif`, `hex`, `ed25519-scalar-le`.
    pub private_key_format: &'static str,
    /// How to import it.
    pub import: &'static str,
}

impl std::fmt::Debug for KeyOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyOutput")
            .field("chain", &self.chain)
            .field("path", &self.path)
            .field("address", &self.address)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

fn secret_str<S: serde::Serializer>(value: &Zeroizing<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(value)
}

/// The key at one path, for one chain.
pub fn output(target: &Target, key: &RecoveredKey) -> Result<KeyOutput> {
    let key_type = KeyType::from(key.scheme);
    anyhow::ensure!(
        target.chain.accepts(key_type),
        "{} has no addresses for {key_type} keys; choose another --chain",
        target.name
    );
    let address = target.address(key_type, &key.public_key)?;
    let (private_key, private_key_format, import) = match (target.chain, key_type) {
        (Chain::Bitcoin | Chain::Litecoin, KeyType::EcdsaSecp256k1) => (
            wif(wif_prefix(target)?, key.expose_secret()),
            "wif",
            "a compressed-key WIF: the wallet's import (Bitcoin Core: importdescriptors with wpkh(WIF))",
        ),
        (Chain::Bitcoin | Chain::Litecoin, _) => (
            wif(wif_prefix(target)?, key.expose_secret()),
            "wif",
            "the untweaked Taproot internal key as WIF: import it as the descriptor tr(WIF) (BIP86 key path), \
             which applies the tweak; it is not the output key",
        ),
        (Chain::Solana | Chain::Aptos | Chain::Sui, _) => (
            Zeroizing::new(hex::encode(key.expose_secret())),
            "ed25519-scalar-le",
            "an Ed25519 secret scalar (32 bytes, little-endian as RFC 8032 encodes scalars), not an RFC 8032 seed: \
             no wallet imports it; move the funds with `shardvault recover --sign`",
        ),
        _ => (
            Zeroizing::new(format!("0x{}", hex::encode(key.expose_secret()))),
            "hex",
            "the 32-byte private key, 0x-hex (big-endian), as the chain's wallets import a raw key",
        ),
    };
    Ok(KeyOutput {
        chain: target.name.clone(),
        path: key.path.to_string(),
        address,
        public_key: hex::encode(&key.public_key),
        private_key,
        private_key_format,
        import,
    })
}

/// The WIF version byte: Bitcoin 0x80 on mainnet, Litecoin 0xb0; every test
/// network of either 0xef.
fn wif_prefix(target: &Target) -> Result<u8> {
    Ok(match target.utxo_network()? {
        UtxoNetwork::Bitcoin(psbt::Network::Bitcoin) => 0x80,
        UtxoNetwork::Litecoin("ltc") => 0xb0,
        UtxoNetwork::Bitcoin(_) | UtxoNetwork::Litecoin(_) => 0xef,
    })
}

/// Wallet import format of a compressed key: base58check(version ‖ key ‖ 0x01).
fn wif(version: u8, secret: &[u8; 32]) -> Zeroizing<String> {
    let mut payload = Zeroizing::new(Vec::with_capacity(34));
    payload.push(version);
    payload.extend_from_slice(secret);
    payload.push(0x01);
    Zeroizing::new(bitcoin::base58::encode_check(&payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The WIF of private key 1, compressed, as Bitcoin's documentation and
    /// every wallet give it; Litecoin's version byte 0xb0 gives `T…`.
    #[test]
    fn wif_of_key_one() {
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(wif(0x80, &one).as_str(), "KwDiBf89QgGbjEhKnhXJuH7LrciVrZi3qYjgd9M7rFU73sVHnoWn");
        assert_eq!(wif(0xef, &one).as_str(), "cMahea7zqjxrtgAbB7LSGbcQUr1uX1ojuat9jZodMN87JcbXMTcA");
        assert!(wif(0xb0, &one).starts_with('T'));
    }
}
