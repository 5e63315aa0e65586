//! EVM transactions: the EIP-155 specification's worked example, and an
//! EIP-1559 transfer signed by a 2-of-3 threshold key whose signature
//! libsecp256k1 recovers to the key's EIP-55 address.

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_primitives::{address, Bytes, TxKind, U256};
use shardvault_chains::evm::{chain_id, UnsignedEvmTx};
use shardvault_mpc::Scheme;
use shardvault_testkit as tk;

mod common;
use common::mpc_key;

/// EIP-155, "Example": nonce 9, 20 gwei, 21000 gas, 1 ether to 0x3535…35 on chain 1.
#[test]
fn eip155_specification_example() {
    let preimage =
        hex::decode("ec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080")
            .unwrap();
    let tx = UnsignedEvmTx::parse(&preimage, 1).unwrap();
    assert_eq!(hex::encode(tx.digest()), "daf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53");
    let summary = tx.summary();
    assert_eq!((summary.kind, summary.nonce, summary.value_wei.as_str()), ("legacy", 9, "1000000000000000000"));
    let r = "28ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276";
    let s = "67cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83";
    let signature = hex::decode(format!("{r}{s}")).unwrap();
    let signed = tx.assemble(&signature, 0).unwrap();
    assert_eq!(
        signed.raw,
        "0xf86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83"
    );
    // The example's sender, recovered by libsecp256k1 from the digest.
    let sender = tk::recover_ecdsa(
        &hex::decode("daf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53").unwrap(),
        &signature,
        0,
    )
    .unwrap();
    assert_eq!(tk::eip55_address(&sender).unwrap().to_lowercase(), "0x9d8a62f656a8d1615c1294fd71e9cfb3e4855a4f");
}

#[test]
fn wrong_chains_and_malformed_preimages_are_refused() {
    let preimage =
        hex::decode("ec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080")
            .unwrap();
    let error = UnsignedEvmTx::parse(&preimage, chain_id("bsc", None).unwrap()).unwrap_err();
    assert!(error.to_string().contains("chain id"), "{error}");
    let mut trailing = preimage.clone();
    trailing.push(0);
    assert!(UnsignedEvmTx::parse(&trailing, 1).is_err());
    assert!(UnsignedEvmTx::parse(&preimage[..preimage.len() - 3], 1).is_err());
    assert!(UnsignedEvmTx::parse(&[0x01, 0xc0], 1).is_err());
    assert!(UnsignedEvmTx::parse(&[], 1).is_err());
    assert!(chain_id("dogechain", None).is_err());
    assert_eq!(chain_id("base", Some("sepolia")).unwrap(), 84_532);
}

#[test]
fn an_mpc_signed_eip1559_transfer_recovers_to_the_wallet_address() {
    let key = mpc_key(Scheme::EcdsaSecp256k1, "m/9'/0'/60'/0'/0'/0'");
    let public_key = key.public_key.clone();
    let from =
        shardvault_chains::Chain::Ethereum.address(shardvault_chains::KeyType::EcdsaSecp256k1, &public_key).unwrap();

    let unsigned = TxEip1559 {
        chain_id: 1,
        nonce: 0,
        gas_limit: 21_000,
        max_fee_per_gas: 30_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(address!("0x3535353535353535353535353535353535353535")),
        value: U256::from(10u64.pow(17)),
        access_list: Default::default(),
        input: Bytes::new(),
    };
    let mut preimage = Vec::new();
    unsigned.encode_for_signing(&mut preimage);
    let tx = UnsignedEvmTx::parse(&preimage, 1).unwrap();
    assert_eq!(tx.digest(), unsigned.signature_hash().0);
    let digest = tx.digest();
    let signature = key.sign(&digest, [2, 3]);
    let recovered = tk::recover_ecdsa(&digest, &signature.bytes, signature.recovery_id.unwrap()).unwrap();
    assert_eq!(tk::eip55_address(&recovered).unwrap(), from);
    let signed = tx.assemble(&signature.bytes, signature.recovery_id.unwrap()).unwrap();
    assert!(signed.raw.starts_with("0x02"));
    assert_eq!(signed.hash, format!("0x{}", hex::encode(tk::keccak256(&hex::decode(&signed.raw[2..]).unwrap()))));
}

/// EIP-712's own example ("Ether Mail"): its published signing hash.
#[test]
fn eip712_specification_example() {
    let typed = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../test-vectors/eip712-mail.json")).unwrap();
    let digest = shardvault_chains::MessageFormat::Eip712.signing_input(&[], &typed).unwrap();
    assert_eq!(hex::encode(digest), "be609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2");
    assert!(shardvault_chains::MessageFormat::Eip712.signing_input(&[], b"{\"types\": 1}").is_err());
}

/// An ERC-20 `transfer(address,uint256)` (USDC on Ethereum, 2.5 USDC) is
/// shown as the token transfer it is; other call data is not.
#[test]
fn erc20_transfers_are_summarised() {
    let usdc = address!("A0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48");
    // transfer(0x35…35, 2_500_000): selector, zero-padded address, uint256 amount.
    let call = format!("a9059cbb{:0>64}{:064x}", "35".repeat(20), 2_500_000u64);
    let preimage = |input: Vec<u8>| {
        let tx = TxEip1559 {
            chain_id: 1,
            nonce: 4,
            gas_limit: 65_000,
            max_fee_per_gas: 30_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            to: TxKind::Call(usdc),
            value: U256::ZERO,
            access_list: Default::default(),
            input: Bytes::from(input),
        };
        let mut bytes = Vec::new();
        tx.encode_for_signing(&mut bytes);
        UnsignedEvmTx::parse(&bytes, 1).unwrap().summary()
    };
    let transfer = preimage(hex::decode(&call).unwrap()).token_transfer.unwrap();
    assert_eq!(transfer.token, "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48");
    assert_eq!(transfer.to, "0x3535353535353535353535353535353535353535");
    assert_eq!(transfer.amount, "2500000");
    // approve(address,uint256) has another selector; a transfer with extra data is not one.
    assert_eq!(preimage(hex::decode(call.replacen("a9059cbb", "095ea7b3", 1)).unwrap()).token_transfer, None);
    assert_eq!(preimage(hex::decode(format!("{call}00")).unwrap()).token_transfer, None);
}
