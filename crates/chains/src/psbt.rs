//! Bitcoin and Litecoin transactions as PSBTs (BIP174/BIP371): decode an
//! unsigned PSBT into a summary, compute each input's signature hash (P2WPKH
//! with SIGHASH_ALL, P2TR key path with SIGHASH_DEFAULT), check that the input
//! pays to the key about to sign it, and finalise with the signatures.
//! `bitcoin` does the encoding and the sighash algorithms; Litecoin's SegWit
//! and Taproot rules and PSBT format are Bitcoin's, only its address prefixes
//! differ (`ltc`, `tltc`, `rltc`).

use base64::Engine;
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{Secp256k1, XOnlyPublicKey};
use bitcoin::sighash::{EcdsaSighashType, Prevouts, SighashCache, TapSighashType};
use bitcoin::{Address, CompressedPublicKey, ScriptBuf, TxOut, Witness};
use serde::Serialize;

use crate::{Error, KeyType};

pub use bitcoin::Network;

use crate::Chain;

/// A UTXO chain's network: which addresses its outputs show as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UtxoNetwork {
    /// Bitcoin: mainnet, testnet, signet or regtest.
    Bitcoin(Network),
    /// Litecoin: mainnet (`ltc`), testnet (`tltc`) or regtest (`rltc`).
    Litecoin(&'static str),
}

impl UtxoNetwork {
    /// The SegWit address of `script`, where it is a witness program.
    pub fn address(self, script: &bitcoin::Script) -> Option<String> {
        match self {
            UtxoNetwork::Bitcoin(network) => Address::from_script(script, network).ok().map(|a| a.to_string()),
            UtxoNetwork::Litecoin(hrp) => segwit_address(script, hrp),
        }
    }
}

/// `hrp`'s bech32/bech32m encoding of a witness-program script.
pub(crate) fn segwit_address(script: &bitcoin::Script, hrp: &str) -> Option<String> {
    let version = script.witness_version()?;
    let program = script.as_bytes().get(2..)?;
    let hrp = bitcoin::bech32::Hrp::parse(hrp).ok()?;
    bitcoin::bech32::segwit::encode(hrp, version.into(), program).ok()
}

/// The output script holding a key's coins: P2WPKH for an ECDSA key, the
/// BIP86 key-path P2TR for a BIP340 (internal) key.
pub fn key_script(key: KeyType, public_key: &[u8]) -> Result<ScriptBuf, Error> {
    let point = crate::secp_key(key, public_key)?;
    match key {
        KeyType::EcdsaSecp256k1 => Ok(ScriptBuf::new_p2wpkh(&CompressedPublicKey(point).wpubkey_hash())),
        KeyType::SchnorrSecp256k1 => {
            Ok(ScriptBuf::new_p2tr(&Secp256k1::verification_only(), XOnlyPublicKey::from(point), None))
        }
        KeyType::Ed25519 => Err(Error::Unsupported { chain: "bitcoin", key }),
    }
}

/// A network by name: for Bitcoin `bitcoin` (or `mainnet`), `testnet`,
/// `signet`, `regtest`; for Litecoin `mainnet` (or `litecoin`), `testnet`, `regtest`.
pub fn network(chain: Chain, name: &str) -> Result<UtxoNetwork, Error> {
    match (chain, name) {
        (Chain::Bitcoin, "bitcoin" | "mainnet") => Ok(UtxoNetwork::Bitcoin(Network::Bitcoin)),
        (Chain::Bitcoin, "testnet") => Ok(UtxoNetwork::Bitcoin(Network::Testnet)),
        (Chain::Bitcoin, "signet") => Ok(UtxoNetwork::Bitcoin(Network::Signet)),
        (Chain::Bitcoin, "regtest") => Ok(UtxoNetwork::Bitcoin(Network::Regtest)),
        (Chain::Litecoin, "litecoin" | "mainnet") => Ok(UtxoNetwork::Litecoin("ltc")),
        (Chain::Litecoin, "testnet") => Ok(UtxoNetwork::Litecoin("tltc")),
        (Chain::Litecoin, "regtest") => Ok(UtxoNetwork::Litecoin("rltc")),
        (Chain::Bitcoin, other) => {
            Err(Error::Psbt(format!("unknown network {other:?}; use bitcoin, testnet, signet or regtest")))
        }
        (Chain::Litecoin, other) => {
            Err(Error::Psbt(format!("unknown Litecoin network {other:?}; use mainnet, testnet or regtest")))
        }
        (other, _) => Err(Error::Psbt(format!("{other} does not use PSBTs"))),
    }
}

/// The spending conditions this wallet signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// Native SegWit v0, one key.
    P2wpkh,
    /// Taproot key path (BIP86 key, no script tree).
    P2tr,
}

/// What an unsigned PSBT does, for review before anyone signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PsbtSummary {
    /// Inputs: previous outpoint, amount, kind.
    pub inputs: Vec<InputSummary>,
    /// Outputs: address on the given network (if standard), amount.
    pub outputs: Vec<OutputSummary>,
    /// Σ inputs − Σ outputs, in satoshi.
    pub fee_sat: u64,
}

/// One input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InputSummary {
    /// `txid:vout`.
    pub outpoint: String,
    /// Amount spent, in satoshi.
    pub amount_sat: u64,
    /// Its spending condition.
    pub kind: InputKind,
}

/// One output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutputSummary {
    /// The address, where the script is a standard one.
    pub address: Option<String>,
    /// Amount, in satoshi.
    pub amount_sat: u64,
}

/// The digest one input needs signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputDigest {
    /// Input index.
    pub index: usize,
    /// Its spending condition.
    pub kind: InputKind,
    /// BIP143 (P2WPKH) or BIP341 (P2TR) signature hash.
    pub digest: [u8; 32],
    script_pubkey: ScriptBuf,
}

impl InputDigest {
    /// Refuses to sign unless this input pays to `public_key` (SEC1
    /// compressed; for P2TR the internal key, BIP86-tweaked here).
    pub fn check_key(&self, key: KeyType, public_key: &[u8]) -> Result<(), Error> {
        let expected = match (self.kind, key) {
            (InputKind::P2wpkh, KeyType::EcdsaSecp256k1) | (InputKind::P2tr, KeyType::SchnorrSecp256k1) => {
                key_script(key, public_key)?
            }
            _ => {
                return Err(Error::Psbt(format!(
                    "input {} is {:?} and cannot be signed by a {key} key",
                    self.index, self.kind
                )))
            }
        };
        if expected != self.script_pubkey {
            return Err(Error::Psbt(format!("input {} does not pay to this key; refusing to sign it", self.index)));
        }
        Ok(())
    }
}

thread_local! {
    /// PSBTs decoded on this thread, for tests that count decodes.
    static DECODES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many PSBTs [`UnsignedPsbt::parse`] has decoded on the calling thread:
/// lets a test show that one signing job decodes its PSBT once.
#[doc(hidden)]
pub fn decodes_on_this_thread() -> u64 {
    DECODES.with(|count| count.get())
}

/// A parsed unsigned PSBT on a given network.
#[derive(Clone, Debug)]
pub struct UnsignedPsbt {
    psbt: Psbt,
    network: UtxoNetwork,
}

impl UnsignedPsbt {
    /// Parses a PSBT given as binary or base64. Every input must carry its
    /// `witness_utxo` and be P2WPKH or P2TR; a P2WPKH input must also carry
    /// its previous transaction (`non_witness_utxo`), whose txid must be the
    /// outpoint's and whose output must equal `witness_utxo` (a SegWit v0
    /// signature commits to its own input's amount only, so `witness_utxo`
    /// alone cannot prove the fee). Bytes beyond the PSBT are refused.
    pub fn parse(data: &[u8], network: UtxoNetwork) -> Result<Self, Error> {
        let binary = if data.starts_with(b"psbt\xff") {
            data.to_vec()
        } else {
            let text = std::str::from_utf8(data).map_err(|_| Error::Psbt("neither binary nor base64".into()))?;
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| Error::Psbt(format!("base64: {e}")))?
        };
        DECODES.with(|count| count.set(count.get().saturating_add(1)));
        let psbt = Psbt::deserialize(&binary).map_err(|e| Error::Psbt(e.to_string()))?;
        if psbt.serialize().len() != binary.len() {
            return Err(Error::Psbt("trailing or non-canonical bytes".into()));
        }
        let parsed = UnsignedPsbt { psbt, network };
        for index in 0..parsed.psbt.inputs.len() {
            parsed.check_previous_transaction(index)?;
        }
        Ok(parsed)
    }

    /// Checks input `index`'s `non_witness_utxo` where there is one (it must
    /// be the spent transaction and agree with `witness_utxo`), and requires
    /// it for P2WPKH. Taproot inputs may omit it: a BIP341 signature commits
    /// to every input's amount and script, so a lie there only voids it.
    fn check_previous_transaction(&self, index: usize) -> Result<(), Error> {
        let (utxo, kind) = self.spent(index)?;
        let input = self.psbt.inputs.get(index).ok_or_else(|| Error::Psbt(format!("no input {index}")))?;
        let outpoint = self
            .psbt
            .unsigned_tx
            .input
            .get(index)
            .map(|txin| txin.previous_output)
            .ok_or_else(|| Error::Psbt(format!("no input {index}")))?;
        let Some(previous) = input.non_witness_utxo.as_ref() else {
            return match kind {
                InputKind::P2tr => Ok(()),
                InputKind::P2wpkh => Err(Error::Psbt(format!(
                    "input {index} is P2WPKH: add its previous transaction {} as non_witness_utxo, so that its \
                     amount (and the fee) can be checked; witness_utxo alone can lie about it",
                    outpoint.txid
                ))),
            };
        };
        if previous.compute_txid() != outpoint.txid {
            return Err(Error::Psbt(format!(
                "input {index}: non_witness_utxo is transaction {}, not {} that the input spends",
                previous.compute_txid(),
                outpoint.txid
            )));
        }
        let output =
            usize::try_from(outpoint.vout).ok().and_then(|vout| previous.output.get(vout)).ok_or_else(|| {
                Error::Psbt(format!("input {index}: previous transaction has no output {}", outpoint.vout))
            })?;
        if output != utxo {
            return Err(Error::Psbt(format!(
                "input {index}: witness_utxo ({} sat) does not match output {} of its previous transaction ({} sat{}); \
                 refusing to sign",
                utxo.value.to_sat(),
                outpoint.vout,
                output.value.to_sat(),
                if output.script_pubkey == utxo.script_pubkey { "" } else { ", another script" }
            )));
        }
        Ok(())
    }

    fn spent(&self, index: usize) -> Result<(&TxOut, InputKind), Error> {
        let input = self.psbt.inputs.get(index).ok_or_else(|| Error::Psbt(format!("no input {index}")))?;
        let utxo =
            input.witness_utxo.as_ref().ok_or_else(|| Error::Psbt(format!("input {index} has no witness_utxo")))?;
        let kind = if utxo.script_pubkey.is_p2wpkh() {
            InputKind::P2wpkh
        } else if utxo.script_pubkey.is_p2tr() {
            InputKind::P2tr
        } else {
            return Err(Error::Psbt(format!("input {index} is neither P2WPKH nor P2TR")));
        };
        Ok((utxo, kind))
    }

    /// The summary to review.
    pub fn summary(&self) -> Result<PsbtSummary, Error> {
        let tx = &self.psbt.unsigned_tx;
        let mut inputs = Vec::new();
        let mut total_in: u64 = 0;
        for (index, txin) in tx.input.iter().enumerate() {
            let (utxo, kind) = self.spent(index)?;
            total_in = total_in
                .checked_add(utxo.value.to_sat())
                .ok_or_else(|| Error::Psbt("input amounts overflow".into()))?;
            inputs.push(InputSummary {
                outpoint: txin.previous_output.to_string(),
                amount_sat: utxo.value.to_sat(),
                kind,
            });
        }
        let outputs: Vec<OutputSummary> = tx
            .output
            .iter()
            .map(|o| OutputSummary { address: self.network.address(&o.script_pubkey), amount_sat: o.value.to_sat() })
            .collect();
        let total_out = outputs
            .iter()
            .try_fold(0u64, |sum, o| sum.checked_add(o.amount_sat))
            .ok_or_else(|| Error::Psbt("output amounts overflow".into()))?;
        let fee_sat = total_in.checked_sub(total_out).ok_or_else(|| Error::Psbt("outputs exceed inputs".into()))?;
        Ok(PsbtSummary { inputs, outputs, fee_sat })
    }

    /// The PSBT's binary encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.psbt.serialize()
    }

    /// Number of inputs.
    pub fn input_count(&self) -> usize {
        self.psbt.inputs.len()
    }

    /// The signature hash of input `index`.
    pub fn input_digest(&self, index: usize) -> Result<InputDigest, Error> {
        self.digest_with(&mut SighashCache::new(&self.psbt.unsigned_tx), &mut None, index)
    }

    /// The signature hash of every input, in order, through one sighash
    /// cache: the hashes BIP143 and BIP341 share between inputs (of the
    /// prevouts, sequences, outputs) are computed once, not once per input.
    pub fn input_digests(&self) -> Result<Vec<InputDigest>, Error> {
        let mut cache = SighashCache::new(&self.psbt.unsigned_tx);
        let mut prevouts = None;
        (0..self.psbt.inputs.len()).map(|index| self.digest_with(&mut cache, &mut prevouts, index)).collect()
    }

    /// Input `index`'s sighash through `cache`; `prevouts` (every spent
    /// output, which BIP341 commits to) is filled on the first P2TR input.
    fn digest_with(
        &self,
        cache: &mut SighashCache<&bitcoin::Transaction>,
        prevouts: &mut Option<Vec<TxOut>>,
        index: usize,
    ) -> Result<InputDigest, Error> {
        let (utxo, kind) = self.spent(index)?;
        let digest: [u8; 32] = match kind {
            InputKind::P2wpkh => {
                let hash = cache
                    .p2wpkh_signature_hash(index, &utxo.script_pubkey, utxo.value, EcdsaSighashType::All)
                    .map_err(|e| Error::Psbt(e.to_string()))?;
                *hash.as_ref()
            }
            InputKind::P2tr => {
                let prevouts = match prevouts {
                    Some(prevouts) => prevouts,
                    None => prevouts.insert(
                        (0..self.psbt.inputs.len())
                            .map(|i| self.spent(i).map(|(u, _)| u.clone()))
                            .collect::<Result<_, _>>()?,
                    ),
                };
                let hash = cache
                    .taproot_key_spend_signature_hash(index, &Prevouts::All(prevouts), TapSighashType::Default)
                    .map_err(|e| Error::Psbt(e.to_string()))?;
                *hash.as_ref()
            }
        };
        Ok(InputDigest { index, kind, digest, script_pubkey: utxo.script_pubkey.clone() })
    }

    /// Puts a 64-byte signature (ECDSA `r‖s` or BIP340) and the signing key
    /// into input `index`'s final witness.
    pub fn add_signature(&mut self, index: usize, signature: &[u8], public_key: &[u8]) -> Result<(), Error> {
        let (_, kind) = self.spent(index)?;
        let bad = |e: String| Error::Psbt(format!("input {index}: {e}"));
        let witness = match kind {
            InputKind::P2wpkh => {
                let signature = bitcoin::ecdsa::Signature {
                    signature: bitcoin::secp256k1::ecdsa::Signature::from_compact(signature)
                        .map_err(|e| bad(e.to_string()))?,
                    sighash_type: EcdsaSighashType::All,
                };
                Witness::from_slice(&[signature.to_vec(), public_key.to_vec()])
            }
            InputKind::P2tr => {
                let signature = bitcoin::taproot::Signature {
                    signature: bitcoin::secp256k1::schnorr::Signature::from_slice(signature)
                        .map_err(|e| bad(e.to_string()))?,
                    sighash_type: TapSighashType::Default,
                };
                Witness::from_slice(&[signature.to_vec()])
            }
        };
        let input = self.psbt.inputs.get_mut(index).ok_or_else(|| bad("no such input".into()))?;
        input.final_script_witness = Some(witness);
        Ok(())
    }

    /// The signed PSBT (base64), the network transaction (hex) and its txid,
    /// once every input has its witness.
    pub fn finalize(self) -> Result<SignedTransaction, Error> {
        if let Some(index) = self.psbt.inputs.iter().position(|i| i.final_script_witness.is_none()) {
            return Err(Error::Psbt(format!("input {index} is not signed")));
        }
        let psbt_base64 = base64::engine::general_purpose::STANDARD.encode(self.psbt.serialize());
        let tx = self.psbt.extract_tx().map_err(|e| Error::Psbt(e.to_string()))?;
        Ok(SignedTransaction {
            txid: tx.compute_txid().to_string(),
            tx_hex: bitcoin::consensus::encode::serialize_hex(&tx),
            psbt_base64,
        })
    }
}

/// A finalised Bitcoin transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SignedTransaction {
    /// The transaction id.
    pub txid: String,
    /// The network serialisation, hex.
    pub tx_hex: String,
    /// The signed, finalised PSBT, base64.
    pub psbt_base64: String,
}
