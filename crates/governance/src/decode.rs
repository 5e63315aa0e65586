//! From a request's operation to the facts the policy is evaluated on: the
//! payload is decoded here, with the chains' own decoders, never taken from
//! anyone's summary.

use shardvault_chains::{Chain, Unsigned};

use crate::{Error, Facts, Operation, Payload};

/// The unsigned transaction a payload names, as the chains crate reads it.
pub fn unsigned(payload: &Payload) -> Result<Option<Unsigned<'_>>, Error> {
    let Payload::Transaction { chain, network, unsigned } = payload else { return Ok(None) };
    Ok(Some(match chain {
        Chain::Bitcoin | Chain::Litecoin => Unsigned::Psbt { chain: *chain, network, psbt: unsigned },
        Chain::Ethereum => {
            let chain_id = network.parse().map_err(|_| {
                Error::Governance(format!("an EVM request names its chain id as network, not {network:?}"))
            })?;
            Unsigned::Evm { chain_id, preimage: unsigned }
        }
        _ => Unsigned::SingleSigner { chain: *chain, network, bytes: unsigned },
    }))
}

/// What the policy sees of `operation`.
pub fn facts_of(operation: &Operation) -> Result<Facts, Error> {
    let key_id = operation.key_id().map(|k| k.to_string());
    let Operation::Sign { payload, path, .. } = operation else {
        return Facts::operation(operation.kind(), key_id.as_deref());
    };
    let key_id = key_id.unwrap_or_default();
    match payload {
        Payload::Transaction { .. } => {
            let tx = unsigned(payload)?.ok_or_else(|| Error::Governance("not a transaction".into()))?;
            Facts::transaction(&key_id, tx)
        }
        Payload::Message { format, message } => {
            let chain = chain_of(path).ok_or_else(|| {
                Error::Governance(format!("path {path} names no chain (m/9'/0'/coin'/…); a message is signed for one"))
            })?;
            Facts::message(&key_id, chain, format, message)
        }
        Payload::RawDigest { .. } | Payload::RawBytes { .. } => Ok(Facts::raw(&key_id)),
    }
}

/// The chain a path's coin type names (`m/…/coin'/…`, MPCVault's shape), if any.
fn chain_of(path: &shardvault_types::DerivationPath) -> Option<Chain> {
    let coin = path.components().get(2)? & 0x7fff_ffff;
    Chain::ALL.into_iter().find(|chain| chain.coin_type() == coin)
}
