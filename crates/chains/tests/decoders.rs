//! Untrusted transaction bytes never panic a decoder: arbitrary bytes, and
//! truncations and single-byte changes of valid transactions, either decode
//! (and then review and the signer check run on them too) or are refused
//! with an error.

use proptest::prelude::*;
use shardvault_chains::tx::UnsignedTx;
use shardvault_chains::{psbt, sample, Chain, KeyType, Transaction, Unsigned};

const ED: [u8; 32] = [0x3b; 32];
const EC: &str = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";

fn families() -> Vec<(Chain, KeyType, Vec<u8>)> {
    let ec = hex::decode(EC).unwrap();
    vec![
        (Chain::Solana, KeyType::Ed25519, ED.to_vec()),
        (Chain::Aptos, KeyType::Ed25519, ED.to_vec()),
        (Chain::Sui, KeyType::Ed25519, ED.to_vec()),
        (Chain::Tron, KeyType::EcdsaSecp256k1, ec.clone()),
        (Chain::Cosmos, KeyType::EcdsaSecp256k1, ec),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_are_refused_or_decoded(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for (chain, _, _) in families() {
            let _ = UnsignedTx::parse(chain, None, &bytes).map(|tx| tx.summary());
        }
        for chain in [Chain::Bitcoin, Chain::Litecoin] {
            let network = psbt::network(chain, chain.default_network()).unwrap();
            let _ = psbt::UnsignedPsbt::parse(&bytes, network).map(|p| p.summary());
        }
        let _ = shardvault_chains::evm::UnsignedEvmTx::parse(&bytes, 1);
        // The same bytes through the one transaction interface, every step.
        let ec = hex::decode(EC).unwrap();
        let mut requests = vec![Unsigned::Evm { chain_id: 1, preimage: &bytes }];
        for chain in [Chain::Bitcoin, Chain::Litecoin] {
            requests.push(Unsigned::Psbt { chain, network: chain.default_network(), psbt: &bytes });
        }
        for (chain, _, _) in families() {
            requests.push(Unsigned::SingleSigner { chain, network: chain.default_network(), bytes: &bytes });
        }
        for request in requests {
            if let Ok(tx) = Transaction::parse(request) {
                let _ = (tx.summary(), tx.signing_inputs(KeyType::EcdsaSecp256k1, &ec), tx.check_key(KeyType::Ed25519, &ED));
            }
        }
    }

    #[test]
    fn changed_transactions_are_refused_or_checked(position in any::<prop::sample::Index>(), flip in 1u8..=255) {
        for (chain, key, public_key) in families() {
            let good = sample::transfer(chain, key, &public_key).unwrap();
            let mut changed = good.unsigned.clone();
            let at = position.index(changed.len());
            changed[at] ^= flip;
            if let Ok(tx) = UnsignedTx::parse(chain, Some(good.network), &changed) {
                let _ = (tx.summary(), tx.check_key(key, &public_key));
            }
            let _ = UnsignedTx::parse(chain, Some(good.network), &good.unsigned[..at]);
        }
    }
}
