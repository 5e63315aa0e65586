//! EVM transactions: the signing preimage an SDK hands a signer —
//! `0x02 ‖ rlp([chainId, nonce, maxPriorityFeePerGas, maxFeePerGas, gas, to,
//! value, data, accessList])` (EIP-1559) or
//! `rlp([nonce, gasPrice, gas, to, value, data, chainId, 0, 0])` (EIP-155) —
//! decoded strictly (the re-encoding must give the same bytes), checked
//! against the expected chain id, hashed with keccak256, and assembled with a
//! signature into the raw transaction. `alloy-consensus` does the RLP.

use alloy_consensus::transaction::{RlpEcdsaDecodableTx, SignableTransaction};
use alloy_consensus::{TxEip1559, TxLegacy};
use alloy_primitives::{keccak256, Signature, U256};
use alloy_rlp::{Decodable, Header};
use serde::Serialize;

use crate::Error;

/// Chain ids of the EVM chains this wallet names, mainnets and common testnets.
pub fn chain_id(chain: &str, network: Option<&str>) -> Result<u64, Error> {
    let id = match (chain, network.unwrap_or("mainnet")) {
        ("ethereum", "mainnet") => 1,
        ("ethereum", "sepolia") => 11_155_111,
        ("ethereum", "holesky") => 17_000,
        ("bsc", "mainnet") => 56,
        ("bsc", "testnet") => 97,
        ("polygon", "mainnet") => 137,
        ("polygon", "amoy") => 80_002,
        ("arbitrum", "mainnet") => 42_161,
        ("arbitrum", "sepolia") => 421_614,
        ("optimism", "mainnet") => 10,
        ("optimism", "sepolia") => 11_155_420,
        ("base", "mainnet") => 8_453,
        ("base", "sepolia") => 84_532,
        ("avalanche", "mainnet") => 43_114,
        ("avalanche", "fuji") => 43_113,
        (chain, network) => return Err(Error::Evm(format!("unknown EVM chain {chain:?} on network {network:?}"))),
    };
    Ok(id)
}

#[derive(Clone, Debug)]
enum Tx {
    Eip1559(TxEip1559),
    Legacy(TxLegacy),
}

/// A decoded, unsigned EVM transaction.
#[derive(Clone, Debug)]
pub struct UnsignedEvmTx {
    tx: Tx,
    digest: [u8; 32],
    /// The chain id the preimage commits to, checked by [`UnsignedEvmTx::parse`].
    chain_id: u64,
}

/// What an EVM transaction does, for review.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EvmSummary {
    /// `eip1559` or `legacy`.
    pub kind: &'static str,
    /// Chain id.
    pub chain_id: u64,
    /// Nonce.
    pub nonce: u64,
    /// Recipient (`None` for contract creation).
    pub to: Option<String>,
    /// Value in wei, decimal.
    pub value_wei: String,
    /// Gas limit.
    pub gas_limit: u64,
    /// Max fee per gas (EIP-1559) or gas price (legacy), in wei.
    pub max_fee_per_gas: u128,
    /// Call data, hex (empty for a plain transfer).
    pub data: String,
    /// When the call is an ERC-20 `transfer(address,uint256)`: what it moves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_transfer: Option<TokenTransfer>,
}

/// An ERC-20 (or TRC-20) `transfer(address,uint256)` call, decoded for review.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenTransfer {
    /// The token contract (the transaction's recipient).
    pub token: String,
    /// Who receives the tokens.
    pub to: String,
    /// Amount in the token's smallest unit, decimal.
    pub amount: String,
}

/// The recipient (20 bytes) and amount of an ERC-20/TRC-20
/// `transfer(address,uint256)` call, if `data` is exactly one (selector
/// 0xa9059cbb, a zero-padded address, a uint256).
pub(crate) fn erc20_transfer(data: &[u8]) -> Option<([u8; 20], U256)> {
    let args = data.strip_prefix(&[0xa9, 0x05, 0x9c, 0xbb][..])?;
    if args.len() != 64 || args.get(..12)? != [0u8; 12] {
        return None;
    }
    let to = <[u8; 20]>::try_from(args.get(12..32)?).ok()?;
    Some((to, U256::from_be_slice(args.get(32..)?)))
}

/// A signed EVM transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SignedEvmTx {
    /// The raw transaction for `eth_sendRawTransaction`, 0x-hex.
    pub raw: String,
    /// Its hash, 0x-hex.
    pub hash: String,
}

fn evm(detail: impl std::fmt::Display) -> Error {
    Error::Evm(detail.to_string())
}

/// The summary of either kind of transaction, through alloy's common view of them.
fn summarise(kind: &'static str, t: &impl alloy_consensus::Transaction, chain_id: u64) -> EvmSummary {
    let to = t.to();
    let token_transfer = erc20_transfer(t.input()).and_then(|(recipient, amount)| {
        Some(TokenTransfer {
            token: to?.to_checksum(None),
            to: alloy_primitives::Address::from(recipient).to_checksum(None),
            amount: amount.to_string(),
        })
    });
    EvmSummary {
        kind,
        chain_id,
        nonce: t.nonce(),
        to: to.map(|a| a.to_checksum(None)),
        value_wei: t.value().to_string(),
        gas_limit: t.gas_limit(),
        max_fee_per_gas: t.max_fee_per_gas(),
        data: hex::encode(t.input()),
        token_transfer,
    }
}

/// The payload of one RLP list at the start of `buf`, which must hold nothing else.
fn only_list(buf: &[u8]) -> Result<&[u8], Error> {
    let mut rest = buf;
    let header = Header::decode(&mut rest).map_err(evm)?;
    if !header.list || header.payload_length != rest.len() {
        return Err(evm("expected exactly one RLP list"));
    }
    Ok(rest)
}

impl UnsignedEvmTx {
    /// Decodes a signing preimage and refuses it unless its chain id is `expected_chain_id`.
    pub fn parse(preimage: &[u8], expected_chain_id: u64) -> Result<Self, Error> {
        let tx = match preimage.split_first() {
            Some((0x02, body)) => {
                let mut fields = only_list(body)?;
                let tx = TxEip1559::rlp_decode_fields(&mut fields).map_err(evm)?;
                if !fields.is_empty() {
                    return Err(evm("extra fields in the EIP-1559 transaction"));
                }
                Tx::Eip1559(tx)
            }
            Some((first, _)) if *first >= 0xc0 => {
                let mut fields = only_list(preimage)?;
                let mut tx = TxLegacy::rlp_decode_fields(&mut fields).map_err(evm)?;
                let chain_id = u64::decode(&mut fields).map_err(evm)?;
                let (r, s) = (u8::decode(&mut fields).map_err(evm)?, u8::decode(&mut fields).map_err(evm)?);
                if r != 0 || s != 0 || !fields.is_empty() {
                    return Err(evm("not an EIP-155 signing preimage (expected chainId, 0, 0 at the end)"));
                }
                tx.chain_id = Some(chain_id);
                Tx::Legacy(tx)
            }
            _ => {
                return Err(evm("unsupported transaction type; expected EIP-1559 (0x02) or a legacy EIP-155 preimage"))
            }
        };
        let mut canonical = Vec::with_capacity(preimage.len());
        let chain_id = match &tx {
            Tx::Eip1559(t) => {
                t.encode_for_signing(&mut canonical);
                Some(t.chain_id)
            }
            Tx::Legacy(t) => {
                t.encode_for_signing(&mut canonical);
                t.chain_id
            }
        };
        if canonical != preimage {
            return Err(evm("non-canonical encoding"));
        }
        if chain_id != Some(expected_chain_id) {
            return Err(evm(format!(
                "transaction is for chain id {chain_id:?}, not {expected_chain_id}; refusing to sign it"
            )));
        }
        Ok(UnsignedEvmTx { tx, digest: keccak256(preimage).0, chain_id: expected_chain_id })
    }

    /// keccak256 of the preimage: what the key signs.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// The summary to review.
    pub fn summary(&self) -> EvmSummary {
        match &self.tx {
            Tx::Eip1559(t) => summarise("eip1559", t, self.chain_id),
            Tx::Legacy(t) => summarise("legacy", t, self.chain_id),
        }
    }

    /// The raw signed transaction and its hash, from a 64-byte `r ‖ s`
    /// signature and its recovery id.
    pub fn assemble(self, signature: &[u8], recovery_id: u8) -> Result<SignedEvmTx, Error> {
        let (r, s) = (signature.get(..32), signature.get(32..64));
        let (Some(r), Some(s), 64) = (r, s, signature.len()) else {
            return Err(evm("signature must be 64 bytes"));
        };
        if recovery_id > 1 {
            return Err(evm("recovery id must be 0 or 1"));
        }
        let signature = Signature::new(U256::from_be_slice(r), U256::from_be_slice(s), recovery_id == 1);
        let mut raw = Vec::new();
        match self.tx {
            Tx::Eip1559(t) => t.into_signed(signature).eip2718_encode(&mut raw),
            Tx::Legacy(t) => t.into_signed(signature).eip2718_encode(&mut raw),
        }
        Ok(SignedEvmTx { hash: format!("0x{}", hex::encode(keccak256(&raw))), raw: format!("0x{}", hex::encode(raw)) })
    }
}
