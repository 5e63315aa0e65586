//! Aptos: BCS `RawTransaction` in; the signing message
//! `sha3-256("APTOS::RawTransaction") ‖ bcs(raw)`; BCS `SignedTransaction`
//! (single Ed25519 authenticator) out, with the transaction hash
//! `sha3-256(sha3-256("APTOS::Transaction") ‖ 0x00 ‖ bcs(signed))`.
//!
//! The Aptos Rust SDK is not published on crates.io, so the types are
//! declared here from the Move/Aptos definitions and encoded by the `bcs`
//! crate; the Aptos TypeScript SDK rebuilding the same bytes and verifying
//! our signature is the proof (`tests/chain_sdks.rs`). Payloads other than
//! entry functions and scripts are refused.

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use sha3::{Digest, Sha3_256};

use crate::tx::{SignedTx, Summary, TxError};

/// A decoded `RawTransaction`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RawTransaction {
    sender: [u8; 32],
    sequence_number: u64,
    payload: TransactionPayload,
    max_gas_amount: u64,
    gas_unit_price: u64,
    expiration_timestamp_secs: u64,
    chain_id: u8,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum TransactionPayload {
    Script(Script),
    ModuleBundle(Unsupported),
    EntryFunction(EntryFunction),
    Multisig(Unsupported),
    Versioned(Unsupported),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Script {
    code: Vec<u8>,
    ty_args: Vec<TypeTag>,
    args: Vec<ScriptArgument>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum ScriptArgument {
    U8(u8),
    U64(u64),
    U128(u128),
    Address([u8; 32]),
    U8Vector(Vec<u8>),
    Bool(bool),
    U16(u16),
    U32(u32),
    U256([u8; 32]),
    Serialized(Vec<u8>),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct EntryFunction {
    module: ModuleId,
    function: String,
    ty_args: Vec<TypeTag>,
    args: Vec<Vec<u8>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ModuleId {
    address: [u8; 32],
    name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum TypeTag {
    Bool,
    U8,
    U64,
    U128,
    Address,
    Signer,
    Vector(Box<TypeTag>),
    Struct(Box<StructTag>),
    U16,
    U32,
    U256,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct StructTag {
    address: [u8; 32],
    module: String,
    name: String,
    type_args: Vec<TypeTag>,
}

/// A payload kind this wallet does not sign: decoding it fails with a clear reason.
#[derive(Clone, Debug)]
struct Unsupported;

impl<'de> Deserialize<'de> for Unsupported {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(de::Error::custom("payload kind not supported (entry functions and scripts are)"))
    }
}

impl Serialize for Unsupported {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("unsupported payload"))
    }
}

fn hex_address(bytes: &[u8; 32]) -> String {
    format!("0x{}", hex::encode(bytes))
}

/// Short form of an address for names (`0x1` for the framework).
fn short_address(bytes: &[u8; 32]) -> String {
    let trimmed = hex::encode(bytes).trim_start_matches('0').to_string();
    format!("0x{}", if trimmed.is_empty() { "0" } else { &trimmed })
}

fn chain_id(network: &str) -> Result<u8, TxError> {
    match network {
        "mainnet" => Ok(1),
        "testnet" => Ok(2),
        "local" | "localnet" => Ok(4),
        other => other.parse().map_err(|_| {
            TxError::new(format!("unknown network {other:?}; use mainnet, testnet, local or a numeric chain id"))
        }),
    }
}

/// The domain-separated message Ed25519 signs.
pub fn signing_message(raw: &[u8]) -> Vec<u8> {
    let mut message = Sha3_256::digest(b"APTOS::RawTransaction").to_vec();
    message.extend_from_slice(raw);
    message
}

impl RawTransaction {
    /// Decodes BCS bytes (no trailing bytes) and checks the chain id is `network`'s.
    pub fn parse(bytes: &[u8], network: &str) -> Result<Self, TxError> {
        let raw: RawTransaction = bcs::from_bytes(bytes).map_err(|e| TxError::new(format!("RawTransaction: {e}")))?;
        let expected = chain_id(network)?;
        if raw.chain_id != expected {
            return Err(TxError::new(format!(
                "the transaction is for chain id {}, not {network} (chain id {expected})",
                raw.chain_id
            )));
        }
        Ok(raw)
    }

    /// The sender must be `address` (the key's single-key Ed25519 address).
    pub fn check_sender(&self, address: &str) -> Result<(), TxError> {
        let sender = hex_address(&self.sender);
        match sender == address {
            true => Ok(()),
            false => Err(TxError::new(format!("the sender {sender} is not this key's address"))),
        }
    }

    /// For review.
    pub fn summary(&self) -> Summary {
        let mut summary = Summary {
            kind: "aptos-script".into(),
            network: Some(format!("chain id {}", self.chain_id)),
            from: Some(hex_address(&self.sender)),
            fee: Some(format!(
                "at most {} octas ({} gas × {})",
                u128::from(self.max_gas_amount) * u128::from(self.gas_unit_price),
                self.max_gas_amount,
                self.gas_unit_price
            )),
            nonce: Some(self.sequence_number.to_string()),
            ..Summary::default()
        };
        match &self.payload {
            TransactionPayload::EntryFunction(f) => {
                summary.kind = "aptos-entry-function".into();
                let name = format!("{}::{}::{}", short_address(&f.module.address), f.module.name, f.function);
                let transfer = matches!(
                    name.as_str(),
                    "0x1::aptos_account::transfer" | "0x1::coin::transfer" | "0x1::aptos_account::transfer_coins"
                );
                if let (true, [to, amount]) = (transfer, f.args.as_slice()) {
                    summary.to = <[u8; 32]>::try_from(to.as_slice()).ok().map(|a| hex_address(&a));
                    summary.amount =
                        <[u8; 8]>::try_from(amount.as_slice()).ok().map(|a| u64::from_le_bytes(a).to_string());
                    summary.asset = Some(match f.ty_args.first() {
                        Some(TypeTag::Struct(s)) => format!("{}::{}::{}", short_address(&s.address), s.module, s.name),
                        _ => "0x1::aptos_coin::AptosCoin".into(),
                    });
                }
                summary.calls = vec![format!("{name} ({} arguments)", f.args.len())];
            }
            TransactionPayload::Script(s) => summary.calls = vec![format!("script of {} bytes", s.code.len())],
            TransactionPayload::ModuleBundle(_)
            | TransactionPayload::Multisig(_)
            | TransactionPayload::Versioned(_) => {}
        }
        summary
    }
}

/// A `RawTransaction` calling `0x1::aptos_account::transfer(to, octas)`.
pub fn transfer(
    sender: [u8; 32],
    sequence_number: u64,
    to: [u8; 32],
    octas: u64,
    chain_id: u8,
) -> Result<Vec<u8>, TxError> {
    let mut framework = [0u8; 32];
    framework[31] = 1;
    let raw = RawTransaction {
        sender,
        sequence_number,
        payload: TransactionPayload::EntryFunction(EntryFunction {
            module: ModuleId { address: framework, name: "aptos_account".into() },
            function: "transfer".into(),
            ty_args: vec![],
            args: vec![to.to_vec(), octas.to_le_bytes().to_vec()],
        }),
        max_gas_amount: 2_000,
        gas_unit_price: 100,
        expiration_timestamp_secs: 1_900_000_000,
        chain_id,
    };
    bcs::to_bytes(&raw).map_err(|e| TxError::new(format!("the transfer does not encode: {e}")))
}

/// `SignedTransaction` = raw ‖ Ed25519 authenticator (variant 0, pk, sig), and its hash.
pub fn assemble(raw: &[u8], public_key: &[u8], signature: &[u8]) -> SignedTx {
    let mut signed = raw.to_vec();
    signed.push(0); // TransactionAuthenticator::Ed25519
    signed.push(32);
    signed.extend_from_slice(public_key);
    signed.push(64);
    signed.extend_from_slice(signature);
    let hash = Sha3_256::new()
        .chain_update(Sha3_256::digest(b"APTOS::Transaction"))
        .chain_update([0]) // Transaction::UserTransaction
        .chain_update(&signed)
        .finalize();
    SignedTx { transaction: signed, signature: signature.to_vec(), id: format!("0x{}", hex::encode(hash)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer() -> Vec<u8> {
        super::transfer([7; 32], 3, [9; 32], 1_000, 2).unwrap()
    }

    #[test]
    fn transfer_is_summarised_and_network_checked() {
        let bytes = transfer();
        let raw = RawTransaction::parse(&bytes, "testnet").unwrap();
        let s = raw.summary();
        assert_eq!(s.amount.as_deref(), Some("1000"));
        assert_eq!(s.to, Some(hex_address(&[9; 32])));
        assert_eq!(s.calls, vec!["0x1::aptos_account::transfer (2 arguments)".to_string()]);
        assert!(RawTransaction::parse(&bytes, "mainnet").is_err());
        raw.check_sender(&hex_address(&[7; 32])).unwrap();
        assert!(raw.check_sender(&hex_address(&[8; 32])).is_err());
    }

    #[test]
    fn malformed_is_refused() {
        let mut bytes = transfer();
        bytes.push(0);
        assert!(RawTransaction::parse(&bytes, "testnet").is_err());
        let mut multisig = transfer();
        multisig[40] = 3;
        let err = RawTransaction::parse(&multisig, "testnet").unwrap_err();
        assert!(err.0.contains("not supported"), "{}", err.0);
    }
}
