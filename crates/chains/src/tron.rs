//! Tron: the `raw_data` protobuf of a `protocol.Transaction` in; the key
//! signs sha256(raw_data), which is also the txid; out, the `Transaction`
//! protobuf with the 65-byte signature r ‖ s ‖ (27 + recovery id).
//!
//! No maintained Rust crate carries Tron's protobuf schema, so the few
//! messages needed are declared here from `core/Tron.proto` and
//! `core/contract/*.proto` and encoded by `prost`; decoding must re-encode to
//! the same bytes, which refuses unknown fields and non-canonical encodings.
//! TronWeb rebuilding the bytes and recovering our signature is the proof.

use prost::Message;
use sha2::{Digest, Sha256};

use crate::tx::{strict, SignedTx, Summary, TxError};

const TRANSFER: i32 = 1;
const TRIGGER_SMART_CONTRACT: i32 = 31;
const TRANSFER_URL: &str = "type.googleapis.com/protocol.TransferContract";
const TRIGGER_URL: &str = "type.googleapis.com/protocol.TriggerSmartContract";

/// `Transaction.raw`.
#[derive(Clone, PartialEq, Message)]
struct Raw {
    #[prost(bytes = "vec", tag = "1")]
    ref_block_bytes: Vec<u8>,
    #[prost(int64, tag = "3")]
    ref_block_num: i64,
    #[prost(bytes = "vec", tag = "4")]
    ref_block_hash: Vec<u8>,
    #[prost(int64, tag = "8")]
    expiration: i64,
    #[prost(bytes = "vec", tag = "10")]
    data: Vec<u8>,
    #[prost(message, repeated, tag = "11")]
    contract: Vec<Contract>,
    #[prost(int64, tag = "14")]
    timestamp: i64,
    #[prost(int64, tag = "18")]
    fee_limit: i64,
}

#[derive(Clone, PartialEq, Message)]
struct Contract {
    #[prost(int32, tag = "1")]
    r#type: i32,
    #[prost(message, optional, tag = "2")]
    parameter: Option<Any>,
    #[prost(int32, tag = "5")]
    permission_id: i32,
}

#[derive(Clone, PartialEq, Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct TransferContract {
    #[prost(bytes = "vec", tag = "1")]
    owner_address: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    to_address: Vec<u8>,
    #[prost(int64, tag = "3")]
    amount: i64,
}

#[derive(Clone, PartialEq, Message)]
struct TriggerSmartContract {
    #[prost(bytes = "vec", tag = "1")]
    owner_address: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    contract_address: Vec<u8>,
    #[prost(int64, tag = "3")]
    call_value: i64,
    #[prost(bytes = "vec", tag = "4")]
    data: Vec<u8>,
}

/// `protocol.Transaction` (the fields a signed transfer carries).
#[derive(Clone, PartialEq, Message)]
struct Transaction {
    #[prost(message, optional, tag = "1")]
    raw_data: Option<Raw>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    signature: Vec<Vec<u8>>,
}

/// What the contract does, decoded.
#[derive(Clone, Debug)]
enum Call {
    Transfer(TransferContract),
    Trigger(TriggerSmartContract),
}

fn address(bytes: &[u8]) -> String {
    bitcoin::base58::encode_check(bytes)
}

/// A TRC-20 `transfer(address,uint256)` call's recipient (0x41-prefixed)
/// and amount (decimal): TRC-20 is ERC-20's ABI.
fn trc20_transfer(data: &[u8]) -> Option<(Vec<u8>, String)> {
    let (to, amount) = crate::evm::erc20_transfer(data)?;
    Some(([&[0x41u8][..], &to].concat(), amount.to_string()))
}

/// The one contract of `raw`, decoded by its type.
fn call(raw: &Raw) -> Result<Call, TxError> {
    let [contract] = raw.contract.as_slice() else {
        return Err(TxError::new(format!("expected one contract, found {}", raw.contract.len())));
    };
    let parameter = contract.parameter.as_ref().ok_or_else(|| TxError::new("contract without parameter"))?;
    match (contract.r#type, parameter.type_url.as_str()) {
        (TRANSFER, TRANSFER_URL) => Ok(Call::Transfer(strict(&parameter.value, "TransferContract")?)),
        (TRIGGER_SMART_CONTRACT, TRIGGER_URL) => Ok(Call::Trigger(strict(&parameter.value, "TriggerSmartContract")?)),
        (t, url) => Err(TxError::new(format!(
            "contract type {t} ({url}) is not supported; TransferContract and TriggerSmartContract are"
        ))),
    }
}

/// sha256(raw_data): what the key signs, and the txid.
pub fn digest(raw: &[u8]) -> [u8; 32] {
    Sha256::digest(raw).into()
}

/// A decoded `raw_data` and its one contract call.
#[derive(Clone, Debug)]
pub struct Unsigned {
    raw: Raw,
    call: Call,
}

impl Unsigned {
    /// Decodes `raw_data`: exactly one transfer or smart-contract call.
    pub fn parse(bytes: &[u8]) -> Result<Self, TxError> {
        let raw: Raw = strict(bytes, "raw_data")?;
        let call = call(&raw)?;
        Ok(Unsigned { raw, call })
    }

    fn owner(&self) -> &[u8] {
        match &self.call {
            Call::Transfer(t) => &t.owner_address,
            Call::Trigger(t) => &t.owner_address,
        }
    }

    /// The contract's owner must be `address` (the key's `T…` address).
    pub fn check_owner(&self, expected: &str) -> Result<(), TxError> {
        let owner = address(self.owner());
        match owner == expected {
            true => Ok(()),
            false => Err(TxError::new(format!("the owner {owner} is not this key's address"))),
        }
    }

    /// For review.
    pub fn summary(&self) -> Summary {
        let mut summary = Summary {
            kind: "tron-transfer".into(),
            from: Some(address(self.owner())),
            fee: (self.raw.fee_limit > 0).then(|| format!("fee limit {} sun", self.raw.fee_limit)),
            nonce: Some(format!("ref block {}", hex::encode(&self.raw.ref_block_bytes))),
            ..Summary::default()
        };
        match &self.call {
            Call::Transfer(t) => {
                summary.to = Some(address(&t.to_address));
                summary.asset = Some("TRX (sun)".into());
                summary.amount = Some(t.amount.to_string());
            }
            Call::Trigger(t) => match trc20_transfer(&t.data) {
                Some((to, amount)) if t.call_value == 0 => {
                    summary.kind = "tron-trc20-transfer".into();
                    summary.to = Some(address(&to));
                    summary.asset = Some(format!("TRC-20 {}", address(&t.contract_address)));
                    summary.amount = Some(amount);
                    summary.calls = vec![format!("{}: transfer(address,uint256)", address(&t.contract_address))];
                }
                _ => {
                    summary.kind = "tron-trigger-smart-contract".into();
                    summary.to = Some(address(&t.contract_address));
                    summary.asset = Some("TRX (sun)".into());
                    summary.amount = Some(t.call_value.to_string());
                    summary.calls = vec![format!("call data 0x{}", hex::encode(&t.data))];
                }
            },
        }
        summary
    }
}

/// `raw_data` of a TransferContract moving `sun` from `owner` to `to`
/// (21-byte 0x41-prefixed addresses), referencing block `ref_block`.
pub fn transfer(owner: &[u8], to: &[u8], sun: i64, ref_block: [u8; 10], timestamp_ms: i64) -> Vec<u8> {
    let parameter = TransferContract { owner_address: owner.to_vec(), to_address: to.to_vec(), amount: sun };
    let (bytes, hash) = ref_block.split_at(2);
    Raw {
        ref_block_bytes: bytes.to_vec(),
        ref_block_hash: hash.to_vec(),
        expiration: timestamp_ms + 60_000,
        timestamp: timestamp_ms,
        contract: vec![Contract {
            r#type: TRANSFER,
            parameter: Some(Any { type_url: TRANSFER_URL.into(), value: parameter.encode_to_vec() }),
            permission_id: 0,
        }],
        ..Raw::default()
    }
    .encode_to_vec()
}

/// The `Transaction` protobuf with one signature, and its txid.
pub fn assemble(raw: &[u8], signature: &[u8], recovery_id: u8) -> SignedTx {
    let mut sig = signature.to_vec();
    sig.push(27 + recovery_id);
    // raw_data is embedded byte for byte (field 1, length-delimited).
    let mut transaction = vec![0x0a];
    prost::encoding::encode_varint(raw.len() as u64, &mut transaction);
    transaction.extend_from_slice(raw);
    transaction.extend(Transaction { raw_data: None, signature: vec![sig.clone()] }.encode_to_vec());
    SignedTx { transaction, signature: sig, id: hex::encode(digest(raw)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(owner: [u8; 21]) -> Vec<u8> {
        super::transfer(&owner, &[0x41; 21], 1_000_000, [1, 2, 3, 3, 3, 3, 3, 3, 3, 3], 1_700_000_000_000)
    }

    #[test]
    fn transfer_round_trips() {
        let mut owner = [0x41; 21];
        owner[1] = 7;
        let bytes = transfer(owner);
        let raw = Unsigned::parse(&bytes).unwrap();
        raw.check_owner(&address(&owner)).unwrap();
        assert!(raw.check_owner(&address(&[0x41; 21])).is_err());
        assert_eq!(raw.summary().amount.as_deref(), Some("1000000"));
        let signed = assemble(&bytes, &[5; 64], 1);
        let decoded = Transaction::decode(signed.transaction.as_slice()).unwrap();
        assert_eq!(decoded.raw_data.unwrap().encode_to_vec(), bytes);
        assert_eq!(decoded.signature[0][64], 28);
    }

    #[test]
    fn unknown_fields_and_garbage_are_refused() {
        let mut bytes = transfer([0x41; 21]);
        bytes.extend_from_slice(&[0xa8, 0x01, 0x01]); // field 21, varint 1: unknown
        assert!(Unsigned::parse(&bytes).is_err());
        assert!(Unsigned::parse(&[0xff, 0xff]).is_err());
        assert!(Unsigned::parse(&Raw::default().encode_to_vec()).is_err());
    }
}
