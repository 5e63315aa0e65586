//! One interface for every transaction family: Bitcoin and Litecoin PSBTs
//! ([`crate::psbt`]), EVM preimages ([`crate::evm`]) and the single-signer
//! families ([`crate::tx`]: Solana, Aptos, Sui, Tron, Cosmos).
//!
//! Whoever handles a transaction — the coordinator reviewing and assembling
//! it, a node deciding what it signs — walks the same steps, whatever the
//! family: [`Transaction::parse`] the bytes the chain's SDK produced (strictly,
//! refusing a network or chain id they contradict), check the key
//! ([`Transaction::check_key`]), show the [`Transaction::summary`], take what
//! the key signs ([`Transaction::signing_input`], one per signature: a PSBT
//! needs one per input, the others one), and [`Transaction::assemble`] the
//! signatures into the signed transaction. A signing input is only handed out
//! together with the key check, so no caller can sign without it.

use serde::Serialize;
use shardvault_types::Signature;

use crate::evm::{EvmSummary, SignedEvmTx, UnsignedEvmTx};
use crate::psbt::{PsbtSummary, SignedTransaction, UnsignedPsbt};
use crate::tx::{SignedTx, UnsignedTx};
use crate::{Chain, Error, KeyType};

/// An unsigned transaction as a signer is handed it: its family, what it
/// must be for, and the bytes the chain's SDK produced (never a digest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsigned<'a> {
    /// A Bitcoin or Litecoin PSBT, binary or base64.
    Psbt {
        /// Bitcoin or Litecoin.
        chain: Chain,
        /// The network, by a name [`crate::psbt::network`] knows.
        network: &'a str,
        /// The PSBT.
        psbt: &'a [u8],
    },
    /// An EVM transaction's signing preimage (EIP-1559 or legacy EIP-155).
    Evm {
        /// The chain id it must be for.
        chain_id: u64,
        /// The preimage.
        preimage: &'a [u8],
    },
    /// A Solana, Aptos, Sui, Tron or Cosmos transaction.
    SingleSigner {
        /// The chain.
        chain: Chain,
        /// The network it must be for (Cosmos: the chain id).
        network: &'a str,
        /// The unsigned transaction bytes.
        bytes: &'a [u8],
    },
}

#[derive(Clone, Debug)]
enum Family {
    Psbt { chain: Chain, network: String, bytes: Vec<u8>, psbt: Box<UnsignedPsbt> },
    Evm { chain_id: u64, preimage: Vec<u8>, tx: Box<UnsignedEvmTx> },
    SingleSigner { chain: Chain, network: String, bytes: Vec<u8>, tx: Box<UnsignedTx> },
}

/// A decoded unsigned transaction of any family.
#[derive(Clone, Debug)]
pub struct Transaction {
    family: Family,
}

/// What a transaction does, for review: the family's own summary, serialised
/// as that summary alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Summary {
    /// Inputs, outputs and fee of a PSBT.
    Psbt(PsbtSummary),
    /// An EVM transaction's fields.
    Evm(EvmSummary),
    /// A single-signer transaction's sender, transfer, fee and calls.
    SingleSigner(crate::tx::Summary),
}

/// A signed transaction, ready to broadcast, in its family's forms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signed {
    /// The finalised PSBT, the network transaction and its txid.
    Psbt(SignedTransaction),
    /// The raw EVM transaction and its hash.
    Evm(SignedEvmTx),
    /// The transaction in the chain's wire format, its signature and its id.
    SingleSigner(SignedTx),
}

impl Signed {
    /// The transaction in the chain's wire format, hex (for Sui the
    /// unchanged `TransactionData`, broadcast with its signature).
    pub fn transaction_hex(&self) -> String {
        match self {
            Signed::Psbt(signed) => signed.tx_hex.clone(),
            Signed::Evm(signed) => signed.raw.trim_start_matches("0x").to_string(),
            Signed::SingleSigner(signed) => hex::encode(&signed.transaction),
        }
    }

    /// The transaction id in the chain's customary text form.
    pub fn id(&self) -> &str {
        match self {
            Signed::Psbt(signed) => &signed.txid,
            Signed::Evm(signed) => &signed.hash,
            Signed::SingleSigner(signed) => &signed.id,
        }
    }
}

impl Transaction {
    /// Decodes `unsigned` strictly: malformed input, trailing bytes, a PSBT
    /// input this wallet cannot sign or whose amount is unproven, an EVM
    /// chain id other than the one named, and a network the transaction
    /// contradicts are refused.
    pub fn parse(unsigned: Unsigned<'_>) -> Result<Self, Error> {
        let family = match unsigned {
            Unsigned::Psbt { chain, network, psbt } => {
                let utxo_network = crate::psbt::network(chain, network)?;
                let psbt = UnsignedPsbt::parse(psbt, utxo_network)?;
                Family::Psbt { chain, network: network.to_string(), bytes: psbt.to_bytes(), psbt: Box::new(psbt) }
            }
            Unsigned::Evm { chain_id, preimage } => {
                let tx = UnsignedEvmTx::parse(preimage, chain_id)?;
                Family::Evm { chain_id, preimage: preimage.to_vec(), tx: Box::new(tx) }
            }
            Unsigned::SingleSigner { chain, network, bytes } => {
                let tx = UnsignedTx::parse(chain, Some(network), bytes)?;
                Family::SingleSigner { chain, network: network.to_string(), bytes: bytes.to_vec(), tx: Box::new(tx) }
            }
        };
        Ok(Transaction { family })
    }

    /// The chain family ([`Chain::Ethereum`] for every EVM chain).
    pub fn chain(&self) -> Chain {
        match &self.family {
            Family::Psbt { chain, .. } | Family::SingleSigner { chain, .. } => *chain,
            Family::Evm { .. } => Chain::Ethereum,
        }
    }

    /// The transaction as the nodes are handed it (a PSBT in its binary encoding).
    pub fn unsigned(&self) -> Unsigned<'_> {
        match &self.family {
            Family::Psbt { chain, network, bytes, .. } => Unsigned::Psbt { chain: *chain, network, psbt: bytes },
            Family::Evm { chain_id, preimage, .. } => Unsigned::Evm { chain_id: *chain_id, preimage },
            Family::SingleSigner { chain, network, bytes, .. } => {
                Unsigned::SingleSigner { chain: *chain, network, bytes }
            }
        }
    }

    /// How many signatures it takes: one per input of a PSBT, one otherwise.
    pub fn signature_count(&self) -> usize {
        match &self.family {
            Family::Psbt { psbt, .. } => psbt.input_count(),
            Family::Evm { .. } | Family::SingleSigner { .. } => 1,
        }
    }

    /// What the key signs for signature `index` (a PSBT's input `index`: its
    /// BIP143 or BIP341 sighash; EVM: keccak256 of the preimage; the others:
    /// [`UnsignedTx::signing_input`]) — refused unless `public_key`, of type
    /// `key`, may sign it: the input pays to it, the transaction's signer is
    /// it, or (EVM, whose preimage names no sender) it is an ECDSA key.
    pub fn signing_input(&self, index: usize, key: KeyType, public_key: &[u8]) -> Result<Vec<u8>, Error> {
        match &self.family {
            Family::Psbt { psbt, .. } => {
                let input = psbt.input_digest(index)?;
                input.check_key(key, public_key)?;
                Ok(input.digest.to_vec())
            }
            Family::Evm { tx, .. } => {
                only_one(index, || Error::Evm(format!("a transaction has one signature, not number {index}")))?;
                evm_key(key)?;
                Ok(tx.digest().to_vec())
            }
            Family::SingleSigner { chain, tx, .. } => {
                only_one(index, || Error::Transaction {
                    chain: chain.name(),
                    detail: format!("a transaction has one signature, not number {index}"),
                })?;
                tx.check_key(key, public_key)?;
                Ok(tx.signing_input().to_vec())
            }
        }
    }

    /// Every signing input, in order, each checked as by
    /// [`Transaction::signing_input`] (a PSBT's sighashes through one cache).
    pub fn signing_inputs(&self, key: KeyType, public_key: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
        match &self.family {
            Family::Psbt { psbt, .. } => psbt
                .input_digests()?
                .into_iter()
                .map(|input| input.check_key(key, public_key).map(|()| input.digest.to_vec()))
                .collect(),
            Family::Evm { .. } | Family::SingleSigner { .. } => Ok(vec![self.signing_input(0, key, public_key)?]),
        }
    }

    /// Refuses the transaction unless `public_key` (of type `key`) may make
    /// every one of its signatures.
    pub fn check_key(&self, key: KeyType, public_key: &[u8]) -> Result<(), Error> {
        self.signing_inputs(key, public_key).map(|_| ())
    }

    /// What the transaction does.
    pub fn summary(&self) -> Result<Summary, Error> {
        Ok(match &self.family {
            Family::Psbt { psbt, .. } => Summary::Psbt(psbt.summary()?),
            Family::Evm { tx, .. } => Summary::Evm(tx.summary()),
            Family::SingleSigner { tx, .. } => Summary::SingleSigner(tx.summary()),
        })
    }

    /// The signed transaction from one signature per signing input, in order.
    /// A PSBT's witnesses take each signature's own public key; the
    /// single-signer families embed `public_key` where their format carries
    /// the key (Aptos, Sui); EVM and Tron need the ECDSA recovery id.
    pub fn assemble(self, public_key: &[u8], signatures: &[Signature]) -> Result<Signed, Error> {
        let count = self.signature_count();
        if signatures.len() != count {
            let detail = format!("{} signatures for a transaction that takes {count}", signatures.len());
            return Err(match &self.family {
                Family::Psbt { .. } => Error::Psbt(detail),
                Family::Evm { .. } => Error::Evm(detail),
                Family::SingleSigner { chain, .. } => Error::Transaction { chain: chain.name(), detail },
            });
        }
        match (self.family, signatures) {
            (Family::Psbt { mut psbt, .. }, signatures) => {
                for (index, signature) in signatures.iter().enumerate() {
                    psbt.add_signature(index, &signature.bytes, &signature.public_key)?;
                }
                Ok(Signed::Psbt(psbt.finalize()?))
            }
            (Family::Evm { tx, .. }, [signature]) => {
                let recovery_id = signature.recovery_id.ok_or_else(|| Error::Evm("no recovery id".into()))?;
                Ok(Signed::Evm(tx.assemble(&signature.bytes, recovery_id)?))
            }
            (Family::SingleSigner { tx, .. }, [signature]) => {
                Ok(Signed::SingleSigner(tx.assemble(public_key, &signature.bytes, signature.recovery_id)?))
            }
            (Family::Evm { .. }, _) => Err(Error::Evm("expected one signature".into())),
            (Family::SingleSigner { chain, .. }, _) => {
                Err(Error::Transaction { chain: chain.name(), detail: "expected one signature".into() })
            }
        }
    }
}

fn only_one(index: usize, error: impl FnOnce() -> Error) -> Result<(), Error> {
    match index {
        0 => Ok(()),
        _ => Err(error()),
    }
}

fn evm_key(key: KeyType) -> Result<(), Error> {
    match key {
        KeyType::EcdsaSecp256k1 => Ok(()),
        _ => Err(Error::Evm(format!("signed by ECDSA secp256k1 keys, not {key} keys"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;

    fn unsigned(chain: Chain, sample: &sample::Sample) -> Unsigned<'_> {
        match chain {
            Chain::Bitcoin | Chain::Litecoin => {
                Unsigned::Psbt { chain, network: sample.network, psbt: &sample.unsigned }
            }
            Chain::Ethereum => Unsigned::Evm { chain_id: 1, preimage: &sample.unsigned },
            _ => Unsigned::SingleSigner { chain, network: sample.network, bytes: &sample.unsigned },
        }
    }

    /// Every family through the one interface gives what its own module
    /// gives: the same summary (serialised alike), the same signing input,
    /// the same key check; and hands the nodes the same bytes.
    #[test]
    fn every_family_answers_as_its_own_module() {
        let ed = [0x3b; 32];
        let ec = hex::decode("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798").unwrap();
        let mut families = Vec::new();
        for chain in Chain::ALL {
            for key in [KeyType::EcdsaSecp256k1, KeyType::SchnorrSecp256k1, KeyType::Ed25519] {
                if chain.accepts(key) {
                    families.push((chain, key, if key == KeyType::Ed25519 { &ed[..] } else { &ec[..] }));
                }
            }
        }
        assert_eq!(families.len(), 10);
        for (chain, key, public_key) in families {
            let sample = sample::transfer(chain, key, public_key).unwrap();
            let tx = Transaction::parse(unsigned(chain, &sample)).unwrap();
            assert_eq!(tx.chain(), chain);
            assert_eq!(tx.signature_count(), 1);
            let input = tx.signing_input(0, key, public_key).unwrap();
            assert_eq!(tx.signing_inputs(key, public_key).unwrap(), vec![input.clone()]);
            let summary = json(tx.summary().unwrap());
            let (own_summary, own_input) = match chain {
                Chain::Bitcoin | Chain::Litecoin => {
                    let network = crate::psbt::network(chain, sample.network).unwrap();
                    let psbt = UnsignedPsbt::parse(&sample.unsigned, network).unwrap();
                    (json(psbt.summary().unwrap()), psbt.input_digest(0).unwrap().digest.to_vec())
                }
                Chain::Ethereum => {
                    let evm = UnsignedEvmTx::parse(&sample.unsigned, 1).unwrap();
                    (json(evm.summary()), evm.digest().to_vec())
                }
                _ => {
                    let own = UnsignedTx::parse(chain, Some(sample.network), &sample.unsigned).unwrap();
                    own.check_key(key, public_key).unwrap();
                    (json(own.summary()), own.signing_input().to_vec())
                }
            };
            assert_eq!(summary, own_summary, "{chain}");
            assert_eq!(input, own_input, "{chain}");
            assert_eq!(tx.unsigned(), unsigned(chain, &sample), "{chain}");
            // Another key (or another key type) may not sign it — EVM names
            // no sender, so there only the key type is checked.
            let other_ec = hex::decode("02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5").unwrap();
            let (other_key, other): (KeyType, &[u8]) = match key {
                KeyType::Ed25519 => (key, &[0x3c; 32]),
                _ if chain == Chain::Ethereum => (KeyType::Ed25519, &ed),
                _ => (key, &other_ec),
            };
            assert!(tx.check_key(other_key, other).is_err(), "{chain} {key}");
            assert!(tx.signing_input(1, key, public_key).is_err(), "{chain}: only one signature");
        }
    }

    /// An EVM transaction is refused for a key that is not ECDSA, saying so.
    #[test]
    fn evm_transactions_are_for_ecdsa_keys() {
        let ec = hex::decode("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798").unwrap();
        let sample = sample::transfer(Chain::Ethereum, KeyType::EcdsaSecp256k1, &ec).unwrap();
        let tx = Transaction::parse(unsigned(Chain::Ethereum, &sample)).unwrap();
        let error = tx.signing_input(0, KeyType::SchnorrSecp256k1, &ec).unwrap_err().to_string();
        assert!(error.contains("signed by ECDSA secp256k1 keys, not BIP340 secp256k1 keys"), "{error}");
        // Assembling takes exactly the signatures the transaction needs.
        assert!(tx.assemble(&ec, &[]).is_err());
    }

    fn json(value: impl Serialize) -> serde_json::Value {
        serde_json::to_value(value).unwrap()
    }
}
