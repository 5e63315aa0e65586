//! Sui: BCS `TransactionData` in (decoded by Mysten's `sui-sdk-types`); the
//! key signs the intent digest blake2b-256(0x000000 ‖ bcs(data)); out, the
//! serialized signature flag(0x00) ‖ sig ‖ pk and the transaction digest
//! base58(blake2b-256("TransactionData::" ‖ bcs(data))).

use sui_sdk_types::{Argument, Command, Ed25519PublicKey, Input, TransactionKind};

use crate::tx::{SignedTx, Summary, TxError};

/// A decoded `TransactionData`.
pub type Transaction = sui_sdk_types::Transaction;

/// Decodes BCS bytes; they must be exactly the canonical encoding.
pub fn parse(bytes: &[u8]) -> Result<Transaction, TxError> {
    let tx: Transaction = bcs::from_bytes(bytes).map_err(|e| TxError::new(format!("TransactionData: {e}")))?;
    if bcs::to_bytes(&tx).ok().as_deref() != Some(bytes) {
        return Err(TxError::new("TransactionData is not in canonical form"));
    }
    Ok(tx)
}

/// The sender and the gas owner must both be `address` (sponsored
/// transactions need a second signature, which this wallet does not make).
pub fn check_sender(tx: &Transaction, address: &str) -> Result<(), TxError> {
    let (sender, owner) = (tx.sender.to_string(), tx.gas_payment.owner.to_string());
    if sender != address {
        return Err(TxError::new(format!("the sender {sender} is not this key's address")));
    }
    if owner != address {
        return Err(TxError::new(format!("gas is paid by {owner}; sponsored transactions are not signed here")));
    }
    Ok(())
}

/// For review: a `SplitCoins(gas, [amounts]) → TransferObjects(…, recipient)`
/// payment is recognised; every command is listed.
pub fn summary(tx: &Transaction) -> Summary {
    let mut summary = Summary {
        kind: "sui-transaction".into(),
        from: Some(tx.sender.to_string()),
        fee: Some(format!("at most {} MIST (gas price {})", tx.gas_payment.budget, tx.gas_payment.price)),
        ..Summary::default()
    };
    let TransactionKind::ProgrammableTransaction(ptb) = &tx.kind else {
        summary.calls = vec!["system transaction".into()];
        return summary;
    };
    summary.kind = "sui-programmable".into();
    let pure = |arg: &Argument| match arg {
        Argument::Input(i) => match ptb.inputs.get(usize::from(*i)) {
            Some(Input::Pure(bytes)) => Some(bytes.as_slice()),
            _ => None,
        },
        _ => None,
    };
    // `None` once any amount split from gas is not a plain u64 (an input
    // computed on chain): the total is then unknown, never understated.
    let mut split_from_gas = Some(0u128);
    for command in &ptb.commands {
        let name = match command {
            Command::MoveCall(c) => format!("{}::{}::{}", c.package, c.module, c.function),
            Command::TransferObjects(t) => {
                if let Some(to) = pure(&t.address).and_then(|b| <[u8; 32]>::try_from(b).ok()) {
                    summary.to = Some(sui_sdk_types::Address::new(to).to_string());
                }
                "TransferObjects".into()
            }
            Command::SplitCoins(s) => {
                if s.coin == Argument::Gas {
                    for amount in &s.amounts {
                        let value = pure(amount).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes);
                        split_from_gas = split_from_gas.zip(value).map(|(sum, v)| sum + u128::from(v));
                    }
                }
                "SplitCoins".into()
            }
            Command::MergeCoins(_) => "MergeCoins".into(),
            Command::Publish(_) => "Publish".into(),
            Command::MakeMoveVector(_) => "MakeMoveVector".into(),
            Command::Upgrade(_) => "Upgrade".into(),
            _ => "other".into(),
        };
        summary.calls.push(name);
    }
    match split_from_gas {
        Some(0) => {}
        Some(total) => {
            summary.asset = Some("SUI (MIST)".into());
            summary.amount = Some(total.to_string());
        }
        None => summary.asset = Some("SUI (MIST), amount not readable from the transaction".into()),
    }
    summary
}

/// The serialized signature (Ed25519 flag 0x00 ‖ sig ‖ pk) and the digest.
pub fn assemble(tx: &Transaction, bytes: &[u8], public_key: &[u8], signature: &[u8]) -> SignedTx {
    let mut serialized = vec![0u8];
    serialized.extend_from_slice(signature);
    serialized.extend_from_slice(public_key);
    SignedTx { transaction: bytes.to_vec(), signature: serialized, id: tx.digest().to_string() }
}

/// Sui's Ed25519 address: `0x` ‖ hex(blake2b-256(0x00 ‖ pk)).
pub fn address(public_key: &[u8; 32]) -> String {
    Ed25519PublicKey::new(*public_key).derive_address().to_string()
}

#[cfg(test)]
mod tests {
    use sui_sdk_types::{
        Address, Digest, GasPayment, ObjectReference, ProgrammableTransaction, SplitCoins, TransactionExpiration,
    };

    use super::*;

    fn payment(amounts: Vec<Argument>) -> Transaction {
        let sender = Address::new([7; 32]);
        Transaction {
            kind: TransactionKind::ProgrammableTransaction(ProgrammableTransaction {
                inputs: vec![Input::Pure(1_000u64.to_le_bytes().to_vec())],
                commands: vec![Command::SplitCoins(SplitCoins { coin: Argument::Gas, amounts })],
            }),
            sender,
            gas_payment: GasPayment {
                objects: vec![ObjectReference::new(Address::new([1; 32]), 1, Digest::new([2; 32]))],
                owner: sender,
                price: 1,
                budget: 1,
            },
            expiration: TransactionExpiration::None,
        }
    }

    #[test]
    fn an_amount_split_from_gas_that_is_not_a_plain_number_is_unknown_not_zero() {
        let plain = summary(&payment(vec![Argument::Input(0), Argument::Input(0)]));
        assert_eq!(plain.amount.as_deref(), Some("2000"));
        // The second amount is another command's result: the total cannot be
        // read from the bytes, so none is shown (it used to show 1000).
        let computed = summary(&payment(vec![Argument::Input(0), Argument::Result(0)]));
        assert_eq!(computed.amount, None);
        assert!(computed.asset.as_deref().is_some_and(|a| a.contains("not readable")), "{:?}", computed.asset);
    }
}
