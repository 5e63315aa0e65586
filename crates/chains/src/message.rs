//! Message signing: only each chain's own domain-separated message format.
//!
//! A format turns a user's message into what the key signs, and the prefix
//! or structure it adds is what keeps that signature from being valid for a
//! transaction of any chain the key could also sign for. There is no "hash
//! it" or "sign it as is" format: a raw digest or raw bytes are their own,
//! explicitly named kinds of request (the wire's `SignPayload::RawDigest` and
//! `RawBytes`), gated on the node.
//!
//! Each format belongs to one chain ([`MessageFormat::chain`]) and one key
//! type ([`MessageFormat::key_type`]); [`MessageFormat::check`] refuses it for
//! another chain's key or an MPCVault-shaped path of another chain
//! (`m/9'/0'/coin'/…`, coin from [`Chain::coin_type`]). docs/FORMATS.md
//! ("Message formats") specifies each format with its vectors.

use bitcoin::hashes::{sha256, sha256d, Hash};
use shardvault_types::{DerivationPath, HARDENED};

use crate::{Chain, Error, KeyType};

/// A chain's message-signing format.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum MessageFormat {
    /// EIP-191 `personal_sign`: keccak256("\x19Ethereum Signed Message:\n" ‖ len ‖ message).
    Eip191,
    /// EIP-712 typed data (`eth_signTypedData_v4` JSON): the typed-data signing hash.
    Eip712,
    /// Bitcoin Core's `signmessage` (ECDSA keys): sha256d("\x18Bitcoin Signed Message:\n" ‖ varint(len) ‖ message).
    BitcoinSignedMessage,
    /// BIP-322 "simple" for a BIP86 Taproot key: the BIP341 key-path sighash
    /// (SIGHASH_DEFAULT) of the virtual `to_sign` transaction.
    Bip322Simple,
    /// Litecoin Core's `signmessage`: sha256d(varstr("Litecoin Signed Message:\n") ‖ varstr(message)).
    LitecoinSignedMessage,
    /// TIP-191 (TronWeb `signMessageV2`): keccak256("\x19TRON Signed Message:\n" ‖ len ‖ message).
    TronSignedMessage,
    /// Solana off-chain message, header version 0 (agave's proposal, crate
    /// `solana-offchain-message` 3.x, `@solana/offchain-messages`): Ed25519
    /// signs the serialized message with this key as its one signer.
    SolanaOffchain,
    /// Aptos AIP-62 sign-message: Ed25519 signs the UTF-8 full message
    /// `APTOS\n[address: …\n][application: …\n][chainId: …\n]message: …\nnonce: …`.
    AptosSignMessage,
    /// Sui personal message: blake2b-256(intent 0x030000 ‖ bcs(message)); Ed25519 signs this digest.
    SuiPersonalMessage,
    /// Cosmos ADR-036: sha256 of the sorted amino JSON sign doc holding one
    /// `sign/MsgSignData` from this key's address (with `bech32_prefix`).
    CosmosAdr36 {
        /// The signer address's bech32 prefix (`cosmos`, `osmo`, …).
        bech32_prefix: String,
    },
}

/// Solana off-chain messages: the signing domain (0xff cannot start a transaction message).
pub const SOLANA_SIGNING_DOMAIN: &[u8; 16] = b"\xffsolana offchain";
/// Solana off-chain messages up to this size (preamble and body) are limited to formats 0 and 1.
const SOLANA_LEDGER_LIMIT: usize = 1232;

impl MessageFormat {
    /// Every format's name, as the API and reports spell it.
    pub const NAMES: [&'static str; 10] = [
        "eip191-personal-sign",
        "eip712-typed-data",
        "bitcoin-signed-message",
        "bip322-simple",
        "litecoin-signed-message",
        "tron-signed-message",
        "solana-offchain-message",
        "aptos-sign-message",
        "sui-personal-message",
        "cosmos-adr036",
    ];

    /// The name used in the API and in reports.
    pub const fn name(&self) -> &'static str {
        match self {
            MessageFormat::Eip191 => "eip191-personal-sign",
            MessageFormat::Eip712 => "eip712-typed-data",
            MessageFormat::BitcoinSignedMessage => "bitcoin-signed-message",
            MessageFormat::Bip322Simple => "bip322-simple",
            MessageFormat::LitecoinSignedMessage => "litecoin-signed-message",
            MessageFormat::TronSignedMessage => "tron-signed-message",
            MessageFormat::SolanaOffchain => "solana-offchain-message",
            MessageFormat::AptosSignMessage => "aptos-sign-message",
            MessageFormat::SuiPersonalMessage => "sui-personal-message",
            MessageFormat::CosmosAdr36 { .. } => "cosmos-adr036",
        }
    }

    /// A format by name (or its short alias: `eip191`, `eip712`, `bip322`,
    /// `tip191`, `solana-offchain`, `aip62`, `adr036`); `bech32_prefix` is for
    /// ADR-036 only (default `cosmos`).
    pub fn parse(name: &str, bech32_prefix: Option<&str>) -> Result<Self, Error> {
        let format = match name {
            "eip191-personal-sign" | "eip191" => MessageFormat::Eip191,
            "eip712-typed-data" | "eip712" => MessageFormat::Eip712,
            "bitcoin-signed-message" => MessageFormat::BitcoinSignedMessage,
            "bip322-simple" | "bip322" => MessageFormat::Bip322Simple,
            "litecoin-signed-message" => MessageFormat::LitecoinSignedMessage,
            "tron-signed-message" | "tip191" => MessageFormat::TronSignedMessage,
            "solana-offchain-message" | "solana-offchain" => MessageFormat::SolanaOffchain,
            "aptos-sign-message" | "aip62" => MessageFormat::AptosSignMessage,
            "sui-personal-message" => MessageFormat::SuiPersonalMessage,
            "cosmos-adr036" | "adr036" => {
                MessageFormat::CosmosAdr36 { bech32_prefix: bech32_prefix.unwrap_or("cosmos").to_string() }
            }
            other => {
                return Err(Error::Message(format!(
                    "unknown message format {other:?}; known: {}",
                    MessageFormat::NAMES.join(", ")
                )))
            }
        };
        if bech32_prefix.is_some() && !matches!(format, MessageFormat::CosmosAdr36 { .. }) {
            return Err(Error::Message("a bech32 prefix is only for cosmos-adr036 messages".into()));
        }
        Ok(format)
    }

    /// The chain whose wallets define and verify this format.
    pub const fn chain(&self) -> Chain {
        match self {
            MessageFormat::Eip191 | MessageFormat::Eip712 => Chain::Ethereum,
            MessageFormat::BitcoinSignedMessage | MessageFormat::Bip322Simple => Chain::Bitcoin,
            MessageFormat::LitecoinSignedMessage => Chain::Litecoin,
            MessageFormat::TronSignedMessage => Chain::Tron,
            MessageFormat::SolanaOffchain => Chain::Solana,
            MessageFormat::AptosSignMessage => Chain::Aptos,
            MessageFormat::SuiPersonalMessage => Chain::Sui,
            MessageFormat::CosmosAdr36 { .. } => Chain::Cosmos,
        }
    }

    /// The one key type that signs in this format.
    pub const fn key_type(&self) -> KeyType {
        match self {
            MessageFormat::Bip322Simple => KeyType::SchnorrSecp256k1,
            MessageFormat::SolanaOffchain | MessageFormat::AptosSignMessage | MessageFormat::SuiPersonalMessage => {
                KeyType::Ed25519
            }
            _ => KeyType::EcdsaSecp256k1,
        }
    }

    /// Whether the key signs a 32-byte digest ([`Self::signing_input`] is one),
    /// rather than the bytes themselves (Solana, Aptos).
    pub const fn signs_digest(&self) -> bool {
        !matches!(self, MessageFormat::SolanaOffchain | MessageFormat::AptosSignMessage)
    }

    /// Refuses this format for a key of another type, or for a path of
    /// MPCVault's shape (`m/9'/0'/coin'/…`) whose coin type is another chain's.
    pub fn check(&self, key: KeyType, path: &DerivationPath) -> Result<(), Error> {
        if key != self.key_type() {
            return Err(Error::Message(format!(
                "{} messages are signed by {} keys, not {key} keys",
                self.name(),
                self.key_type()
            )));
        }
        if let Some(coin) = mpcvault_coin_type(path) {
            let chain = self.chain();
            if coin != chain.coin_type() {
                return Err(Error::Message(format!(
                    "{} messages are {chain}'s (coin type {}); path {path} is for coin type {coin}",
                    self.name(),
                    chain.coin_type()
                )));
            }
        }
        Ok(())
    }

    /// What the key at `public_key` signs for `message` in this format.
    ///
    /// `public_key` is the key that signs (SEC1 compressed for secp256k1,
    /// the BIP86 internal key for BIP-322, 32 bytes for Ed25519): Solana's
    /// message names it as its signer, ADR-036 its address, BIP-322 its
    /// output script, AIP-62 its address if the message has an address line.
    pub fn signing_input(&self, public_key: &[u8], message: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(match self {
            MessageFormat::Eip191 => alloy_primitives::eip191_hash_message(message).to_vec(),
            MessageFormat::Eip712 => {
                let typed: alloy_dyn_abi::TypedData =
                    serde_json::from_slice(message).map_err(|e| Error::Evm(format!("EIP-712 typed data: {e}")))?;
                typed.eip712_signing_hash().map_err(|e| Error::Evm(format!("EIP-712 typed data: {e}")))?.to_vec()
            }
            MessageFormat::BitcoinSignedMessage => {
                let text = std::str::from_utf8(message).map_err(|_| Error::NotText)?;
                bitcoin::sign_message::signed_msg_hash(text).to_byte_array().to_vec()
            }
            MessageFormat::Bip322Simple => {
                bip322_sighash(public_key, message, bitcoin::TapSighashType::Default)?.to_vec()
            }
            MessageFormat::LitecoinSignedMessage => {
                let magic = b"Litecoin Signed Message:\n";
                let mut data = vec![magic.len() as u8];
                data.extend_from_slice(magic);
                data.extend(bitcoin::consensus::encode::serialize(&bitcoin::VarInt(message.len() as u64)));
                data.extend_from_slice(message);
                sha256d::Hash::hash(&data).to_byte_array().to_vec()
            }
            MessageFormat::TronSignedMessage => {
                let prefix = format!("\x19TRON Signed Message:\n{}", message.len());
                alloy_primitives::keccak256([prefix.as_bytes(), message].concat()).to_vec()
            }
            MessageFormat::SolanaOffchain => solana_offchain_message(&[0; 32], public_key, message)?,
            MessageFormat::AptosSignMessage => {
                check_aptos_full_message(public_key, message)?;
                message.to_vec()
            }
            MessageFormat::SuiPersonalMessage => {
                sui_sdk_types::PersonalMessage(std::borrow::Cow::Borrowed(message)).signing_digest().to_vec()
            }
            MessageFormat::CosmosAdr36 { bech32_prefix } => {
                sha256::Hash::hash(&adr036_sign_doc(public_key, bech32_prefix, message)?).to_byte_array().to_vec()
            }
        })
    }
}

impl Chain {
    /// The format a plain message is signed in by a `key` key on this chain,
    /// if the chain has one for that key type.
    pub fn message_format(self, key: KeyType) -> Option<MessageFormat> {
        let format = match self {
            Chain::Ethereum => MessageFormat::Eip191,
            Chain::Bitcoin if key == KeyType::SchnorrSecp256k1 => MessageFormat::Bip322Simple,
            Chain::Bitcoin => MessageFormat::BitcoinSignedMessage,
            Chain::Litecoin => MessageFormat::LitecoinSignedMessage,
            Chain::Tron => MessageFormat::TronSignedMessage,
            Chain::Solana => MessageFormat::SolanaOffchain,
            Chain::Aptos => MessageFormat::AptosSignMessage,
            Chain::Sui => MessageFormat::SuiPersonalMessage,
            Chain::Cosmos => MessageFormat::CosmosAdr36 { bech32_prefix: "cosmos".into() },
        };
        (format.key_type() == key).then_some(format)
    }
}

/// The coin type of a path of MPCVault's shape `m/9'/0'/coin'/…`, if it has that shape.
pub fn mpcvault_coin_type(path: &DerivationPath) -> Option<u32> {
    match path.components() {
        [purpose, vault, coin, ..] if *purpose == 9 | HARDENED && *vault == HARDENED && *coin >= HARDENED => {
            Some(coin - HARDENED)
        }
        _ => None,
    }
}

/// A Solana off-chain message, header version 0, with one signer:
/// `"\xffsolana offchain"` ‖ version 0 ‖ application domain (32) ‖ format ‖
/// signer count 1 ‖ signer (32) ‖ u16-LE length ‖ message. The format is 0
/// (restricted ASCII: 0x20–0x7e) or 1 (UTF-8) when the whole message fits
/// 1232 bytes, else 2 (UTF-8, up to 65535 bytes).
pub fn solana_offchain_message(application_domain: &[u8; 32], signer: &[u8], message: &[u8]) -> Result<Vec<u8>, Error> {
    let signer = crate::ed25519_key(signer)?;
    let refused = |why: &str| Error::Message(format!("Solana off-chain message: {why}"));
    if message.is_empty() {
        return Err(refused("the message is empty"));
    }
    if std::str::from_utf8(message).is_err() {
        return Err(refused("the message is not UTF-8"));
    }
    let total = SOLANA_SIGNING_DOMAIN.len() + 37 + signer.len() + message.len();
    let format = match (message.iter().all(|b| (0x20..=0x7e).contains(b)), total) {
        (true, ..=SOLANA_LEDGER_LIMIT) => 0u8,
        (false, ..=SOLANA_LEDGER_LIMIT) => 1,
        (_, ..=0xffff) => 2,
        _ => return Err(refused("the message is longer than 65535 bytes with its preamble")),
    };
    let length = u16::try_from(message.len()).map_err(|_| refused("too long"))?;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(SOLANA_SIGNING_DOMAIN);
    out.push(0);
    out.extend_from_slice(application_domain);
    out.push(format);
    out.push(1);
    out.extend_from_slice(signer);
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(message);
    Ok(out)
}

/// Checks an AIP-62 full message: UTF-8, `APTOS\n`, then optional
/// `address: `, `application: `, `chainId: ` lines in that order (an address
/// must be this key's), `message: …` (may span lines) and a last line
/// `nonce: …`.
fn check_aptos_full_message(public_key: &[u8], full: &[u8]) -> Result<(), Error> {
    let refused = |why: &str| Error::Message(format!("Aptos full message: {why}"));
    let text = std::str::from_utf8(full).map_err(|_| refused("not UTF-8"))?;
    let mut rest = text.strip_prefix("APTOS\n").ok_or_else(|| refused("must start with \"APTOS\\n\""))?;
    if let Some(after) = rest.strip_prefix("address: ") {
        let (address, next) = after.split_once('\n').ok_or_else(|| refused("no message line"))?;
        if address != crate::aptos(public_key)? {
            return Err(refused("the address line is not this key's address"));
        }
        rest = next;
    }
    for field in ["application: ", "chainId: "] {
        if let Some(after) = rest.strip_prefix(field) {
            rest = after.split_once('\n').ok_or_else(|| refused("no message line"))?.1;
        }
    }
    let body = rest.strip_prefix("message: ").ok_or_else(|| refused("no \"message: \" line"))?;
    let (_, nonce) = body.rsplit_once("\nnonce: ").ok_or_else(|| refused("no last \"nonce: \" line"))?;
    if nonce.contains('\n') {
        return Err(refused("the nonce line must be the last"));
    }
    Ok(())
}

/// The AIP-62 full message for `message` and `nonce`, without the optional lines.
pub fn aptos_full_message(message: &str, nonce: &str) -> String {
    format!("APTOS\nmessage: {message}\nnonce: {nonce}")
}

/// The ADR-036 amino sign doc (sorted, compact JSON) for `data` signed by
/// the key's `bech32_prefix` address.
pub fn adr036_sign_doc(public_key: &[u8], bech32_prefix: &str, data: &[u8]) -> Result<Vec<u8>, Error> {
    use base64::Engine;
    let signer = crate::cosmos_address(public_key, bech32_prefix)?;
    let data = base64::engine::general_purpose::STANDARD.encode(data);
    // Keys in sorted order; both values are base64 and bech32, so nothing needs escaping.
    Ok(format!(
        "{{\"account_number\":\"0\",\"chain_id\":\"\",\"fee\":{{\"amount\":[],\"gas\":\"0\"}},\"memo\":\"\",\
         \"msgs\":[{{\"type\":\"sign/MsgSignData\",\"value\":{{\"data\":\"{data}\",\"signer\":\"{signer}\"}}}}],\
         \"sequence\":\"0\"}}"
    )
    .into_bytes())
}

/// The BIP-322 message hash: the BIP340 tagged hash "BIP0322-signed-message" of the message.
fn bip322_message_hash(message: &[u8]) -> [u8; 32] {
    let tag = sha256::Hash::hash(b"BIP0322-signed-message");
    let mut engine = sha256::Hash::engine();
    bitcoin::hashes::HashEngine::input(&mut engine, tag.as_byte_array());
    bitcoin::hashes::HashEngine::input(&mut engine, tag.as_byte_array());
    bitcoin::hashes::HashEngine::input(&mut engine, message);
    sha256::Hash::from_engine(engine).to_byte_array()
}

/// The BIP-322 simple sighash for the P2TR (BIP86) address of `internal_key`:
/// `to_spend` (version 0, the null prevout, scriptSig OP_0 ‖ push32(message
/// hash), one output of 0 to the address) and `to_sign` (version 0, spending
/// `to_spend:0`, sequence 0, one output of 0 to OP_RETURN); the BIP341
/// key-path sighash of `to_sign`'s input.
pub fn bip322_sighash(
    internal_key: &[u8],
    message: &[u8],
    sighash_type: bitcoin::TapSighashType,
) -> Result<[u8; 32], Error> {
    use bitcoin::{
        absolute::LockTime, script::Builder, transaction::Version, Amount, OutPoint, Sequence, TxIn, TxOut, Witness,
    };
    let challenge = crate::psbt::key_script(KeyType::SchnorrSecp256k1, internal_key)?;
    let hash = bip322_message_hash(message);
    let script_sig = Builder::new().push_opcode(bitcoin::opcodes::OP_0).push_slice(hash).into_script();
    let to_spend = bitcoin::Transaction {
        version: Version(0),
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig,
            sequence: Sequence::ZERO,
            witness: Witness::new(),
        }],
        output: vec![TxOut { value: Amount::ZERO, script_pubkey: challenge.clone() }],
    };
    let to_sign = bitcoin::Transaction {
        version: Version(0),
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: to_spend.compute_txid(), vout: 0 },
            script_sig: bitcoin::ScriptBuf::new(),
            sequence: Sequence::ZERO,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::ZERO,
            script_pubkey: Builder::new().push_opcode(bitcoin::opcodes::all::OP_RETURN).into_script(),
        }],
    };
    let spent = [TxOut { value: Amount::ZERO, script_pubkey: challenge }];
    let sighash = bitcoin::sighash::SighashCache::new(&to_sign)
        .taproot_key_spend_signature_hash(0, &bitcoin::sighash::Prevouts::All(&spent), sighash_type)
        .map_err(|e| Error::Message(format!("BIP-322: {e}")))?;
    Ok(sighash.to_byte_array())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardvault_testkit as tk;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// `@solana/offchain-messages` 8.4 (tools/chain-sdks/message-vectors.mjs)
    /// serialized these v0 messages (formats 0 and 1) and signed them with
    /// the Ed25519 seed 0x01×32: the same bytes here, and its signature
    /// verifies over them with ed25519-dalek.
    #[test]
    fn solana_offchain_vectors_from_solana_kit() {
        let key = h("8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c");
        for (text, serialized, signature) in [
            (
                "Hello, shardvault",
                "ff736f6c616e61206f6666636861696e00000000000000000000000000000000000000000000000000000000000000000000018a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c110048656c6c6f2c2073686172647661756c74",
                "2e599df964224be1283d4dc21ccda9bd16e74ca3737153cd4644468f301dabf493246543db7189501ddd19a455d1fdcf2b68adde5a690c8c3326b15738176400",
            ),
            (
                "Grüße, shardvault",
                "ff736f6c616e61206f6666636861696e00000000000000000000000000000000000000000000000000000000000000000001018a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c13004772c3bcc39f652c2073686172647661756c74",
                "b0b1a9d770b8f4b26fc6dead248884b624ef515f13f8512919ddce77ca5c3a3d86f1a2d5732a793ccce3dd81dc28e7b95a9b6d91690d13eb8227b2be6b25eb0a",
            ),
        ] {
            let ours = MessageFormat::SolanaOffchain.signing_input(&key, text.as_bytes()).unwrap();
            assert_eq!(hex::encode(&ours), serialized);
            tk::verify_ed25519(&key, &ours, &h(signature)).unwrap();
        }
    }

    /// The `solana-offchain-message` 3.x crate's own test: the UTF-8 message
    /// "Тестовое сообщение" with the zero domain and the zero (dummy) signer
    /// hashes (sha256, base58) to E5tkTdEzcYTe5deSvw5jqzwPUEVBT83P4aHCYxjtzEW8.
    #[test]
    fn solana_offchain_vector_from_the_rust_crate() {
        let serialized = solana_offchain_message(&[0; 32], &[0; 32], "Тестовое сообщение".as_bytes()).unwrap();
        assert_eq!(bs58::encode(tk::sha256(&serialized)).into_string(), "E5tkTdEzcYTe5deSvw5jqzwPUEVBT83P4aHCYxjtzEW8");
        assert!(solana_offchain_message(&[0; 32], &[0; 32], b"").is_err());
        assert!(solana_offchain_message(&[0; 32], &[0; 32], &[0xff, 0xfe]).is_err());
        // Over 1232 bytes with the preamble: format 2 (extended UTF-8).
        let long = solana_offchain_message(&[0; 32], &[0; 32], &[b'a'; 1200]).unwrap();
        assert_eq!(long[49], 2);
        assert!(solana_offchain_message(&[0; 32], &[0; 32], &vec![b'a'; 65535]).is_err());
    }

    /// cosmjs's `makeSignDoc` + `serializeSignDoc` (Keplr's ADR-036 algorithm)
    /// built this sign doc for the secp256k1 secret 0x02×32, and cosmjs's
    /// signature over its sha256 verifies with libsecp256k1 over ours.
    #[test]
    fn cosmos_adr036_vector_from_cosmjs() {
        let key = h("024d4b6cd1361032ca9bd2aeb9d900aa4d45d9ead80ac9423374c451a7254d0766");
        let doc = adr036_sign_doc(&key, "cosmos", b"Hello, shardvault").unwrap();
        assert_eq!(
            String::from_utf8(doc).unwrap(),
            r#"{"account_number":"0","chain_id":"","fee":{"amount":[],"gas":"0"},"memo":"","msgs":[{"type":"sign/MsgSignData","value":{"data":"SGVsbG8sIHNoYXJkdmF1bHQ=","signer":"cosmos1a0qwuze2h85zw7nqpsj3ga0z9geyrgwphl8j6w"}}],"sequence":"0"}"#
        );
        let format = MessageFormat::CosmosAdr36 { bech32_prefix: "cosmos".into() };
        let digest = format.signing_input(&key, b"Hello, shardvault").unwrap();
        assert_eq!(hex::encode(&digest), "2ec7e51bea3bbe53a8bb29fc16041ba40acd3ed755c60b3677e2f60ad1139017");
        let signature = h("d6e7a38aa18666b075aba753f9614372e3b235054961a00b605bd77db9a514f63b55edda50249cee0d57020a8fcfab02de1c3cb8abf2b44d484e315a598d8c2d");
        assert!((0..2).any(|rid| tk::verify_ecdsa(&key, &digest, &signature, rid).is_ok()));
    }

    /// The Aptos TypeScript SDK's Ed25519 key (seed 0x01×32) signed this
    /// AIP-62 full message; the node checks its shape and signs it as is.
    #[test]
    fn aptos_full_message_vector_and_shape() {
        let key = h("8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c");
        let full = aptos_full_message("Hello, shardvault", "42");
        assert_eq!(full, "APTOS\nmessage: Hello, shardvault\nnonce: 42");
        let signed = MessageFormat::AptosSignMessage.signing_input(&key, full.as_bytes()).unwrap();
        assert_eq!(signed, full.as_bytes());
        let signature = h("0ae694183ddcda43f1525ec179e3a649a727760d8c5099711325f905fd701534dec361f58d67ef37a0e4043422ca716b5e00a1c675775e6be7044b679f8ae90e");
        tk::verify_ed25519(&key, &signed, &signature).unwrap();
        let address = crate::aptos(&key).unwrap();
        let with_lines =
            format!("APTOS\naddress: {address}\napplication: https://x.test\nchainId: 1\nmessage: a\nb\nnonce: 7");
        assert!(MessageFormat::AptosSignMessage.signing_input(&key, with_lines.as_bytes()).is_ok());
        for bad in [
            "hello".to_string(),
            "APTOS\nmessage: no nonce".into(),
            "APTOS\nnonce: 1\nmessage: x".into(),
            "APTOS\naddress: 0x01\nmessage: x\nnonce: 1".into(),
            "APTOS\nmessage: x\nnonce: 1\n".into(),
        ] {
            assert!(MessageFormat::AptosSignMessage.signing_input(&key, bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    /// BIP-322's vectors: the message hashes, and the Taproot "Hello World"
    /// signature (SIGHASH_ALL) of bc1ppv609…q8lt3, which verifies with
    /// libsecp256k1 over our sighash of `to_sign`.
    #[test]
    fn bip322_vectors() {
        assert_eq!(
            hex::encode(bip322_message_hash(b"")),
            "c90c269c4f8fcbe6880f72a721ddfbf1914268a794cbb21cfafee13770ae19f1"
        );
        assert_eq!(
            hex::encode(bip322_message_hash(b"Hello World")),
            "f0eb03b1a75ac6d9847f55c624a99169b5dccba2a31f5b23bea77ba270de0a7a"
        );
        // WIF L3VFeEujGtevx9w18HD1fhRbCH67Az2dpCymeRE1SoPK6XQtaN2k.
        let internal =
            tk::secp256k1_public_key(&h("bb051cd0dda0246f33c5a9e133ebd8e7bc02a92af6c41adc131ccd7826c5b004")).unwrap();
        let address = "bc1ppv609nr0vr25u07u95waq5lucwfm6tde4nydujnu8npg4q75mr5sxq8lt3";
        assert_eq!(Chain::Bitcoin.address(KeyType::SchnorrSecp256k1, &internal).unwrap(), address);
        use base64::Engine;
        let witness = base64::engine::general_purpose::STANDARD
            .decode("AUHd69PrJQEv+oKTfZ8l+WROBHuy9HKrbFCJu7U1iK2iiEy1vMU5EfMtjc+VSHM7aU0SDbak5IUZRVno2P5mjSafAQ==")
            .unwrap();
        assert_eq!((witness[0], witness[1], witness[66]), (1, 65, 1), "one 65-byte item, SIGHASH_ALL");
        let (_, output_key) = tk::bitcoin_witness_program(address).unwrap();
        let all = bip322_sighash(&internal, b"Hello World", bitcoin::TapSighashType::All).unwrap();
        tk::verify_bip340(&output_key, &all, &witness[2..66]).unwrap();
        let other = bip322_sighash(&internal, b"Hello World!", bitcoin::TapSighashType::All).unwrap();
        assert!(tk::verify_bip340(&output_key, &other, &witness[2..66]).is_err());
    }

    /// The testkit's write-ups from the specifications (plain sha2, no
    /// `bitcoin` sighash code) agree with what the nodes compute.
    #[test]
    fn independent_write_ups_agree() {
        let secp = tk::secp256k1_public_key(&[7; 32]).unwrap();
        let output_key = tk::bip86_output_key(&secp).unwrap();
        let ed = [9u8; 32];
        for message in [&b"hello"[..], "Grüße".as_bytes(), &[b'x'; 1300]] {
            let ours = MessageFormat::Bip322Simple.signing_input(&secp, message).unwrap();
            assert_eq!(ours, tk::bip322_taproot_sighash(&output_key, message).unwrap());
            let ours = MessageFormat::SolanaOffchain.signing_input(&ed, message).unwrap();
            assert_eq!(ours, tk::solana_offchain_message(&ed, message));
            let adr036 = MessageFormat::CosmosAdr36 { bech32_prefix: "osmo".into() };
            assert_eq!(
                adr036.signing_input(&secp, message).unwrap(),
                tk::adr036_digest(&secp, "osmo", message).unwrap()
            );
        }
    }

    #[test]
    fn formats_are_refused_for_other_keys_and_other_chains_paths() {
        let path = |s: &str| s.parse::<DerivationPath>().unwrap();
        let eth = path("m/9'/0'/60'/0'/0'/0'");
        assert!(MessageFormat::Eip191.check(KeyType::EcdsaSecp256k1, &eth).is_ok());
        assert!(MessageFormat::Eip191.check(KeyType::SchnorrSecp256k1, &eth).is_err());
        for (format, key) in [
            (MessageFormat::TronSignedMessage, KeyType::EcdsaSecp256k1),
            (MessageFormat::CosmosAdr36 { bech32_prefix: "cosmos".into() }, KeyType::EcdsaSecp256k1),
            (MessageFormat::BitcoinSignedMessage, KeyType::EcdsaSecp256k1),
            (MessageFormat::SolanaOffchain, KeyType::Ed25519),
        ] {
            let err = format.check(key, &eth).unwrap_err().to_string();
            assert!(err.contains("coin type 60"), "{err}");
        }
        let sui = path("m/9'/0'/784'/0'/0/1");
        assert!(MessageFormat::SuiPersonalMessage.check(KeyType::Ed25519, &sui).is_ok());
        assert!(MessageFormat::AptosSignMessage.check(KeyType::Ed25519, &sui).is_err());
        assert!(MessageFormat::SuiPersonalMessage.check(KeyType::EcdsaSecp256k1, &sui).is_err());
        // Paths of another shape are not MPCVault's: only the key type is checked.
        assert_eq!(mpcvault_coin_type(&path("m/44'/60'/0'/0/0")), None);
        assert!(MessageFormat::Eip191.check(KeyType::EcdsaSecp256k1, &DerivationPath::root()).is_ok());
    }

    #[test]
    fn names_parse_back() {
        for name in MessageFormat::NAMES {
            assert_eq!(MessageFormat::parse(name, None).unwrap().name(), name);
        }
        assert!(MessageFormat::parse("sha256", None).is_err());
        assert!(MessageFormat::parse("raw", None).is_err());
        assert!(MessageFormat::parse("eip191", Some("osmo")).is_err());
        assert_eq!(
            MessageFormat::parse("adr036", Some("osmo")).unwrap(),
            MessageFormat::CosmosAdr36 { bech32_prefix: "osmo".into() }
        );
    }
}
