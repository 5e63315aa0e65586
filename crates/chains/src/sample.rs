//! Sample unsigned transactions: one small transfer from a key's own address
//! per chain, built the way each chain's SDK builds them. `shardvault demo`
//! signs these through the cluster; the chain tests build theirs with the
//! chains' own SDKs instead (`tests/chain_sdks.rs`). The inputs they spend
//! (UTXOs, gas coins, block references) are made up, so they are valid
//! transactions that no network would accept as they stand.

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_primitives::{TxKind, U256};
use bitcoin::hashes::Hash;
use sui_sdk_types::{
    Argument, Command, GasPayment, Input, ObjectReference, ProgrammableTransaction, SplitCoins, TransactionExpiration,
    TransactionKind, TransferObjects,
};

use crate::{aptos, cosmos, cosmos_address, solana, tron, Chain, Error, KeyType};

/// Where the samples send to: BIP84's "abandon … about" address, the
/// private-key-1 Ethereum address, and fixed keys elsewhere.
const RECIPIENT: [u8; 32] = [0x35; 32];

/// A sample transaction for `chain`, and the network it is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The network to name when signing it.
    pub network: &'static str,
    /// The unsigned transaction: a binary PSBT for Bitcoin, the signing
    /// preimage for EVM, the SDK's bytes elsewhere.
    pub unsigned: Vec<u8>,
}

/// A transfer from `public_key`'s address on `chain`.
pub fn transfer(chain: Chain, key: KeyType, public_key: &[u8]) -> Result<Sample, Error> {
    let address = chain.address(key, public_key)?;
    let bad_key = |detail: &str| Error::InvalidKey { key, detail: detail.into() };
    let key32 = || <[u8; 32]>::try_from(public_key).map_err(|_| bad_key("expected 32 bytes"));
    Ok(match chain {
        Chain::Bitcoin | Chain::Litecoin => {
            Sample { network: chain.default_network(), unsigned: utxo_psbt(key, public_key)? }
        }
        Chain::Ethereum => {
            let tx = TxEip1559 {
                chain_id: 1,
                nonce: 0,
                gas_limit: 21_000,
                max_fee_per_gas: 30_000_000_000,
                max_priority_fee_per_gas: 1_000_000_000,
                to: TxKind::Call(alloy_primitives::address!("0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf")),
                value: U256::from(10_000_000_000_000_000u64),
                access_list: Default::default(),
                input: Default::default(),
            };
            let mut preimage = Vec::new();
            tx.encode_for_signing(&mut preimage);
            Sample { network: "mainnet", unsigned: preimage }
        }
        Chain::Solana => {
            Sample { network: "mainnet", unsigned: solana::transfer(&key32()?, &RECIPIENT, 1_000_000, &[0x0b; 32]) }
        }
        Chain::Aptos => {
            let sender = hex::decode(address.trim_start_matches("0x")).map_err(|_| bad_key("address"))?;
            let sender = <[u8; 32]>::try_from(sender.as_slice()).map_err(|_| bad_key("address"))?;
            let unsigned = aptos::transfer(sender, 0, RECIPIENT, 100_000, 2)
                .map_err(|e| Error::Transaction { chain: chain.name(), detail: e.0 })?;
            Sample { network: "testnet", unsigned }
        }
        Chain::Sui => Sample { network: "mainnet", unsigned: sui_payment(&key32()?)? },
        Chain::Tron => {
            let owner = bitcoin::base58::decode_check(&address).map_err(|_| bad_key("address"))?;
            let mut to = vec![0x41];
            to.extend_from_slice(&RECIPIENT[..20]);
            let unsigned =
                tron::transfer(&owner, &to, 1_000_000, [0x0a, 0x1b, 1, 2, 3, 4, 5, 6, 7, 8], 1_900_000_000_000);
            Sample { network: "mainnet", unsigned }
        }
        Chain::Cosmos => {
            let to = cosmos_address(&[&[2u8][..], &RECIPIENT[..]].concat(), "cosmos")?;
            let send = cosmos::Send {
                public_key,
                from: &address,
                to: &to,
                amount: 1_500,
                denom: "uatom",
                chain_id: "cosmoshub-4",
                account_number: 0,
                sequence: 0,
            };
            Sample { network: "cosmoshub-4", unsigned: send.sign_doc() }
        }
    })
}

/// A PSBT spending a made-up 100 000-sat output of the key (P2WPKH for ECDSA,
/// BIP86 P2TR for BIP340) to BIP84's "abandon … about" key. The made-up
/// previous transaction travels along as `non_witness_utxo` for P2WPKH, as
/// every node requires (a SegWit v0 signature does not commit to it).
fn utxo_psbt(key: KeyType, public_key: &[u8]) -> Result<Vec<u8>, Error> {
    use bitcoin::{absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence, TxIn, TxOut, Txid};
    let spent = crate::psbt::key_script(key, public_key)?;
    let bip84 = hex::decode("0330d54fd0dd420a6e5f8d3624f5f3482cae350f79d5f0753bf5beef9c2d91af3c")
        .map_err(|_| Error::InvalidKey { key: KeyType::EcdsaSecp256k1, detail: "BIP84 recipient".into() })?;
    let destination = crate::psbt::key_script(KeyType::EcdsaSecp256k1, &bip84)?;
    let utxo = TxOut { value: Amount::from_sat(100_000), script_pubkey: spent.clone() };
    let input = |previous_output| TxIn {
        previous_output,
        script_sig: ScriptBuf::new(),
        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
        witness: bitcoin::Witness::new(),
    };
    // A made-up previous transaction, different for every key.
    let previous = bitcoin::Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![input(OutPoint {
            txid: Txid::from_raw_hash(bitcoin::hashes::sha256d::Hash::hash(spent.as_bytes())),
            vout: 0,
        })],
        output: vec![utxo.clone()],
    };
    let tx = bitcoin::Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![input(OutPoint { txid: previous.compute_txid(), vout: 0 })],
        output: vec![TxOut { value: Amount::from_sat(90_000), script_pubkey: destination }],
    };
    let mut psbt = bitcoin::Psbt::from_unsigned_tx(tx).map_err(|e| Error::Psbt(e.to_string()))?;
    if let Some(input) = psbt.inputs.first_mut() {
        input.witness_utxo = Some(utxo);
        if key == KeyType::EcdsaSecp256k1 {
            input.non_witness_utxo = Some(previous);
        }
    }
    Ok(psbt.serialize())
}

/// `SplitCoins(gas, [1 SUI/1000]) → TransferObjects(recipient)`, paid from a made-up gas coin.
fn sui_payment(public_key: &[u8; 32]) -> Result<Vec<u8>, Error> {
    let sender = sui_sdk_types::Ed25519PublicKey::new(*public_key).derive_address();
    let tx = sui_sdk_types::Transaction {
        kind: TransactionKind::ProgrammableTransaction(ProgrammableTransaction {
            inputs: vec![Input::Pure(1_000_000u64.to_le_bytes().to_vec()), Input::Pure(RECIPIENT.to_vec())],
            commands: vec![
                Command::SplitCoins(SplitCoins { coin: Argument::Gas, amounts: vec![Argument::Input(0)] }),
                Command::TransferObjects(TransferObjects {
                    objects: vec![Argument::Result(0)],
                    address: Argument::Input(1),
                }),
            ],
        }),
        sender,
        gas_payment: GasPayment {
            objects: vec![ObjectReference::new(
                sui_sdk_types::Address::new([0x5a; 32]),
                42,
                sui_sdk_types::Digest::new([0x17; 32]),
            )],
            owner: sender,
            price: 1_000,
            budget: 5_000_000,
        },
        expiration: TransactionExpiration::None,
    };
    bcs::to_bytes(&tx).map_err(|e| Error::Transaction { chain: "sui", detail: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::UnsignedTx;

    /// Every sample decodes, names its own key as signer, and says what it moves.
    #[test]
    fn samples_decode_and_pass_the_signer_check() {
        let ed = [0x3b; 32];
        let ec = hex::decode("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798").unwrap();
        for (chain, key, pk) in [
            (Chain::Solana, KeyType::Ed25519, &ed[..]),
            (Chain::Aptos, KeyType::Ed25519, &ed[..]),
            (Chain::Sui, KeyType::Ed25519, &ed[..]),
            (Chain::Tron, KeyType::EcdsaSecp256k1, &ec[..]),
            (Chain::Cosmos, KeyType::EcdsaSecp256k1, &ec[..]),
        ] {
            let sample = transfer(chain, key, pk).unwrap();
            let tx = UnsignedTx::parse(chain, Some(sample.network), &sample.unsigned).unwrap();
            tx.check_key(key, pk).unwrap();
            let summary = tx.summary();
            assert!(summary.amount.is_some() && summary.to.is_some(), "{chain}: {summary:?}");
        }
        for (chain, key) in [Chain::Bitcoin, Chain::Litecoin]
            .into_iter()
            .flat_map(|c| [(c, KeyType::EcdsaSecp256k1), (c, KeyType::SchnorrSecp256k1)])
        {
            let psbt = transfer(chain, key, &ec).unwrap();
            let network = crate::psbt::network(chain, psbt.network).unwrap();
            let parsed = crate::psbt::UnsignedPsbt::parse(&psbt.unsigned, network).unwrap();
            parsed.input_digest(0).unwrap().check_key(key, &ec).unwrap();
            let to = parsed.summary().unwrap().outputs[0].address.clone().unwrap();
            assert!(to.starts_with(if chain == Chain::Bitcoin { "bc1q" } else { "ltc1q" }), "{to}");
        }
        let evm = transfer(Chain::Ethereum, KeyType::EcdsaSecp256k1, &ec).unwrap();
        crate::evm::UnsignedEvmTx::parse(&evm.unsigned, 1).unwrap();
    }
}
