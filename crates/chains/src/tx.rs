//! Unsigned transactions of the single-signer families (Solana, Aptos, Sui,
//! Tron, Cosmos): decode the bytes the chain's SDK hands a signer, check the
//! signer is the key being used and the network is the named one, give a
//! review summary and exactly what the key signs, and assemble the signed
//! transaction in the chain's wire format with its id. Bitcoin PSBTs and EVM
//! transactions have their own modules ([`crate::psbt`], [`crate::evm`]);
//! [`crate::transaction`] puts all three behind one interface.

use serde::Serialize;

use crate::{aptos, cosmos, solana, sui, tron, Chain, Error, KeyType};

/// Why a transaction was refused (carried into [`Error::Transaction`]).
#[derive(Debug)]
pub struct TxError(pub(crate) String);

impl TxError {
    pub(crate) fn new(detail: impl Into<String>) -> Self {
        TxError(detail.into())
    }
}

/// What a transaction does, for review. Amounts and fees are in the chain's
/// smallest unit, as decimal strings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Format, e.g. `solana-v0`, `aptos-entry-function`, `cosmos-direct`.
    pub kind: String,
    /// The network it is for, as the transaction states it where it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The signer/sender.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The recipient of a transfer, or the contract called.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The asset moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    /// The amount moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    /// The fee, or the most the transaction may pay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fee: Option<String>,
    /// Nonce or sequence number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Every call or message in it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<String>,
}

/// A signed transaction, ready to broadcast.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedTx {
    /// The transaction in the chain's wire format (for Sui, the unchanged
    /// `TransactionData`, broadcast together with [`SignedTx::signature`]).
    pub transaction: Vec<u8>,
    /// The signature in the chain's encoding (Sui: flag ‖ sig ‖ pk).
    pub signature: Vec<u8>,
    /// The transaction id in the chain's customary text form.
    pub id: String,
}

#[derive(Clone, Debug)]
enum Parsed {
    Solana(solana::Message),
    Aptos(aptos::RawTransaction),
    Sui(Box<sui::Transaction>),
    Tron(tron::Unsigned),
    Cosmos(cosmos::Direct),
}

/// A decoded unsigned transaction of one of the single-signer families.
#[derive(Clone, Debug)]
pub struct UnsignedTx {
    chain: Chain,
    network: String,
    bytes: Vec<u8>,
    parsed: Parsed,
    signing_input: Vec<u8>,
}

impl UnsignedTx {
    /// Decodes `bytes` as `chain`'s unsigned transaction for `network`
    /// (`None`: the chain's mainnet). Malformed input, trailing bytes and a
    /// network the transaction contradicts are refused.
    pub fn parse(chain: Chain, network: Option<&str>, bytes: &[u8]) -> Result<Self, Error> {
        let fail = |e: TxError| Error::Transaction { chain: chain.name(), detail: e.0 };
        let network = network.unwrap_or(chain.default_network()).to_string();
        let (parsed, signing_input) = match chain {
            Chain::Solana => {
                check_network(&network, &["mainnet", "mainnet-beta", "devnet", "testnet", "localnet"]).map_err(fail)?;
                (Parsed::Solana(solana::Message::parse(bytes).map_err(fail)?), bytes.to_vec())
            }
            Chain::Aptos => {
                let raw = aptos::RawTransaction::parse(bytes, &network).map_err(fail)?;
                (Parsed::Aptos(raw), aptos::signing_message(bytes))
            }
            Chain::Sui => {
                check_network(&network, &["mainnet", "testnet", "devnet", "localnet"]).map_err(fail)?;
                let tx = sui::parse(bytes).map_err(fail)?;
                let digest = tx.signing_digest().to_vec();
                (Parsed::Sui(Box::new(tx)), digest)
            }
            Chain::Tron => {
                check_network(&network, &["mainnet", "shasta", "nile"]).map_err(fail)?;
                (Parsed::Tron(tron::Unsigned::parse(bytes).map_err(fail)?), tron::digest(bytes).to_vec())
            }
            Chain::Cosmos => {
                let doc = cosmos::Direct::parse(bytes, &network).map_err(fail)?;
                (Parsed::Cosmos(doc), cosmos::digest(bytes).to_vec())
            }
            Chain::Bitcoin | Chain::Litecoin | Chain::Ethereum => {
                return Err(fail(TxError::new("signed through the PSBT and EVM transaction paths")))
            }
        };
        Ok(UnsignedTx { chain, network, bytes: bytes.to_vec(), parsed, signing_input })
    }

    /// The key type that signs this chain's transactions.
    pub fn key_type(&self) -> KeyType {
        match self.parsed {
            Parsed::Solana(_) | Parsed::Aptos(_) | Parsed::Sui(_) => KeyType::Ed25519,
            Parsed::Tron(_) | Parsed::Cosmos(_) => KeyType::EcdsaSecp256k1,
        }
    }

    /// What the key signs: the message itself for Solana and Aptos (Ed25519
    /// signs messages), the intent digest for Sui, the 32-byte digest for the
    /// ECDSA chains.
    pub fn signing_input(&self) -> &[u8] {
        &self.signing_input
    }

    /// Refuses a transaction whose signer is not `public_key` (of the chain's
    /// key type): a node never signs for someone else's account.
    pub fn check_key(&self, key: KeyType, public_key: &[u8]) -> Result<(), Error> {
        let fail = |e: TxError| Error::Transaction { chain: self.chain.name(), detail: e.0 };
        if key != self.key_type() {
            return Err(Error::Unsupported { chain: self.chain.name(), key });
        }
        let address = self.chain.address(key, public_key)?;
        match &self.parsed {
            Parsed::Solana(m) => m.check_signer(public_key),
            Parsed::Aptos(raw) => raw.check_sender(&address),
            Parsed::Sui(tx) => sui::check_sender(tx, &address),
            Parsed::Tron(raw) => raw.check_owner(&address),
            Parsed::Cosmos(doc) => doc.check_signer(public_key),
        }
        .map_err(fail)
    }

    /// What the transaction does.
    pub fn summary(&self) -> Summary {
        let mut summary = match &self.parsed {
            Parsed::Solana(m) => m.summary(),
            Parsed::Aptos(raw) => raw.summary(),
            Parsed::Sui(tx) => sui::summary(tx),
            Parsed::Tron(raw) => raw.summary(),
            Parsed::Cosmos(doc) => doc.summary(),
        };
        summary.network.get_or_insert_with(|| self.network.clone());
        summary
    }

    /// The signed transaction from the key's signature over
    /// [`UnsignedTx::signing_input`] (ECDSA: 64-byte r ‖ s and the recovery id).
    pub fn assemble(&self, public_key: &[u8], signature: &[u8], recovery_id: Option<u8>) -> Result<SignedTx, Error> {
        let fail = |e: TxError| Error::Transaction { chain: self.chain.name(), detail: e.0 };
        if signature.len() != 64 {
            return Err(fail(TxError::new(format!("expected a 64-byte signature, got {}", signature.len()))));
        }
        Ok(match &self.parsed {
            Parsed::Solana(_) => SignedTx {
                transaction: solana::Message::assemble(&self.bytes, signature),
                signature: signature.to_vec(),
                id: bs58::encode(signature).into_string(),
            },
            Parsed::Aptos(_) => aptos::assemble(&self.bytes, public_key, signature),
            Parsed::Sui(tx) => sui::assemble(tx, &self.bytes, public_key, signature),
            Parsed::Tron(_) => {
                let recovery_id =
                    recovery_id.ok_or_else(|| fail(TxError::new("Tron signatures need a recovery id")))?;
                tron::assemble(&self.bytes, signature, recovery_id)
            }
            Parsed::Cosmos(doc) => doc.assemble(signature).map_err(fail)?,
        })
    }
}

/// Decodes protobuf `T` from `bytes`, which must be exactly its canonical
/// encoding: unknown fields and alternative encodings are refused, so the
/// bytes reviewed are the bytes signed (Tron, Cosmos).
pub(crate) fn strict<T: prost::Message + Default>(bytes: &[u8], what: &str) -> Result<T, TxError> {
    let value = T::decode(bytes).map_err(|e| TxError::new(format!("{what}: {e}")))?;
    if value.encode_to_vec() != bytes {
        return Err(TxError::new(format!("{what}: unknown fields or a non-canonical encoding")));
    }
    Ok(value)
}

fn check_network(network: &str, known: &[&str]) -> Result<(), TxError> {
    match known.contains(&network) {
        true => Ok(()),
        false => Err(TxError::new(format!("unknown network {network:?}; known: {}", known.join(", ")))),
    }
}
