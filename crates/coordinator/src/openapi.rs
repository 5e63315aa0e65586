//! The OpenAPI 3.1 document served at `/openapi.json`.
// Indexing below only touches JSON objects built in this file with `json!`;
// `IndexMut` on an object inserts and cannot panic.
#![allow(clippy::indexing_slicing)]

use serde_json::{json, Value};
use shardvault_chains::Chain;

fn error_responses() -> Value {
    json!({
        "400": { "description": "invalid request", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
        "404": { "description": "unknown key", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
        "409": { "description": "Idempotency-Key reused with another body", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
        "502": { "description": "a node failed or nodes disagreed", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
        "503": { "description": "not enough nodes connected", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
    })
}

fn creating(summary: &str, request: Value, ok: &str) -> Value {
    let mut responses = error_responses();
    responses[ok] =
        json!({ "description": "done", "content": { "application/json": { "schema": { "type": "object" } } } });
    json!({ "post": {
        "summary": summary,
        "parameters": [ { "$ref": "#/components/parameters/IdempotencyKey" } ],
        "requestBody": { "required": true, "content": { "application/json": { "schema": request } } },
        "responses": responses
    } })
}

/// The document.
pub(crate) fn document() -> Value {
    let key_path = json!({ "name": "key_id", "in": "path", "required": true, "schema": { "type": "string" } });
    // Every chain name the API takes: the chains, and the EVM chains by name.
    let chains: std::collections::BTreeSet<&str> =
        Chain::ALL.iter().map(|c| c.name()).chain(shardvault_chains::EVM_CHAINS).collect();
    let target = json!({ "type": "object", "required": ["chain"], "properties": {
        "chain": { "type": "string", "enum": chains },
        "index": { "type": "integer", "minimum": 0, "description": "MPCVault path m/9'/0'/coin'/0'/0'/index'" },
        "path": { "type": "string", "example": "m/9'/0'/60'/0'/0/1" },
        "bech32_prefix": { "type": "string", "description": "Cosmos SDK chains: the address prefix (default cosmos)", "example": "osmo" } } });
    let mut sign = target.clone();
    sign["properties"]["message_hex"] = json!({ "type": "string",
        "description": "a message, signed only in a chain's domain-separated message format (`format`); each node checks the format against the key type and the path's coin type and builds what is signed itself. Aptos: the AIP-62 full message, or the message with `nonce`" });
    sign["properties"]["format"] = json!({ "type": "string", "enum": shardvault_chains::MessageFormat::NAMES,
        "description": "message format (default: the chain's): EIP-191/EIP-712 (EVM), Bitcoin/Litecoin signed message (ECDSA), BIP-322 simple (Bitcoin Taproot), TIP-191 (Tron), Solana off-chain message v0, Aptos AIP-62, Sui personal message, Cosmos ADR-036 (with bech32_prefix); aliases eip191, eip712, bip322, tip191, solana-offchain, aip62, adr036" });
    sign["properties"]["nonce"] = json!({ "type": "string", "description": "Aptos: the AIP-62 nonce; the full message is built from the UTF-8 message" });
    sign["properties"]["digest_hex"] = json!({ "type": "string",
        "description": "RAW SIGNING: a 32-byte digest (ECDSA, BIP340), signed as given. It can be any chain's transaction, so nodes refuse it unless started with --allow-raw-signing, and a policy denies it by default" });
    sign["properties"]["raw_hex"] = json!({ "type": "string",
        "description": "RAW SIGNING: bytes an Ed25519 key signs as given. It can be any chain's transaction, so nodes refuse it unless started with --allow-raw-signing, and a policy denies it by default" });
    sign["properties"]["typed_data"] =
        json!({ "type": "object", "description": "EIP-712 typed data as eth_signTypedData_v4 takes it (EVM chains)" });
    sign["properties"]["signers"] =
        json!({ "type": "array", "items": { "type": "integer" }, "description": "party ids; default: any t healthy" });
    let mut paths = json!({
        "/v1/health": { "get": { "summary": "Connected nodes", "responses": { "200": { "description": "ok" } } } },
        "/v1/keys": creating("Create a key (returns when every node agrees on the public key)", json!({
            "type": "object", "required": ["scheme", "threshold", "parties"], "properties": {
                "scheme": { "type": "string", "enum": ["ecdsa-secp256k1", "eddsa-ed25519", "schnorr-secp256k1"] },
                "threshold": { "type": "integer", "minimum": 2, "maximum": 16 },
                "parties": { "type": "integer", "minimum": 2, "maximum": 16 },
                "nodes": { "type": "array", "items": { "type": "integer" } } } }), "201"),
        "/v1/keys/{key_id}": { "get": { "summary": "A key", "parameters": [key_path.clone()], "responses": { "200": { "description": "the key" }, "404": { "description": "unknown key" } } } },
        "/v1/keys/{key_id}/addresses": creating("Derive an address", target, "200"),
        "/v1/keys/{key_id}/signatures": creating("Sign a message in its chain's message format (or, raw signing, a named digest or raw bytes); the answer has `message_encoding` (the format) and `digest` (what the key signed, where not the message itself)", sign, "200"),
        "/v1/keys/{key_id}/transactions": creating("Sign an unsigned transaction (each node decodes it and derives what it signs) and return it signed, in the chain's wire format, with its id", json!({
            "type": "object", "required": ["chain"], "properties": {
                "chain": { "type": "string", "enum": chains },
                "network": { "type": "string", "description": "bitcoin|testnet|signet|regtest (Bitcoin), mainnet|testnet|regtest (Litecoin), mainnet|sepolia|… (EVM), mainnet|testnet|… elsewhere, the chain id for Cosmos (default cosmoshub-4)" },
                "index": { "type": "integer" }, "path": { "type": "string" },
                "psbt": { "type": "string", "description": "Bitcoin and Litecoin: unsigned PSBT, base64; every input carries witness_utxo" },
                "tx_hex": { "type": "string", "description": "EVM signing preimage, Solana message, Aptos RawTransaction, Sui TransactionData, Tron raw_data or Cosmos SignDoc, hex" },
                "tx_base64": { "type": "string", "description": "the same, base64" },
                "evm_chain": { "type": "string", "description": "EVM chain selecting the chain id, when chain is ethereum" },
                "signers": { "type": "array", "items": { "type": "integer" } } } }), "200"),
        "/v1/keys/{key_id}/refresh": creating("Refresh every share (key and addresses unchanged): every node stores the new epoch and signs that it did; only on every node's signed confirmation does any node delete the old epoch. Clears the key's bans", json!({ "type": "object" }), "200"),
        "/v1/keys/{key_id}/refresh/finish": creating("Finish the key's last refresh: activate a confirmed epoch on every node, or record an unconfirmed attempt as abandoned (nothing was deleted for it)", json!({ "type": "object" }), "200"),
        "/v1/requests/{id}": { "get": { "summary": "A request's status and result", "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }], "responses": { "200": { "description": "the request" }, "404": { "description": "unknown request" } } } }
    });
    paths["/v1/keys/{key_id}/addresses"]["post"]["responses"]["200"]["content"]["application/json"]["schema"] =
        json!({ "$ref": "#/components/schemas/AttestedAddress" });
    paths["/v1/keys/{key_id}/addresses"]["post"]["description"] = json!(
        "The coordinator derives the address, then every connected node of the key derives it from its own share \
         and signs the statement (docs/FORMATS.md \"Address attestation\"). Clients must check the signatures \
         against the identity keys of their pinned cluster file (at least max(2, threshold) distinct nodes) and \
         recompute the address from `public_key`; `shardvault address` does. 503 `not_enough_attestations` \
         when fewer nodes attest; 502 `disagreement` when a node attests another address."
    );
    paths["/v1/keys"]["get"] = json!({ "summary": "List keys", "responses": { "200": { "description": "keys" } } });
    for route in [
        "/v1/keys/{key_id}/addresses",
        "/v1/keys/{key_id}/signatures",
        "/v1/keys/{key_id}/transactions",
        "/v1/keys/{key_id}/refresh",
        "/v1/keys/{key_id}/refresh/finish",
    ] {
        if let Some(parameters) = paths[route]["post"]["parameters"].as_array_mut() {
            parameters.push(key_path.clone());
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "shardvault coordinator", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "parameters": { "IdempotencyKey": { "name": "Idempotency-Key", "in": "header", "required": false, "schema": { "type": "string" },
                "description": "repeat a creating call safely: the same key and body return the first answer" } },
            "schemas": { "Error": { "type": "object", "required": ["code", "message"], "properties": {
                "code": { "type": "string" }, "message": { "type": "string" } } },
                "AttestedAddress": { "type": "object",
                    "required": ["key_id", "scheme", "threshold", "parties", "chain", "path", "public_key", "address",
                                 "attestation_domain", "attestation_version", "attestations"],
                    "description": "the fields of the attested statement, and the node signatures over it",
                    "properties": {
                        "key_id": { "type": "string" },
                        "scheme": { "type": "string", "enum": ["ecdsa-secp256k1", "eddsa-ed25519", "schnorr-secp256k1"] },
                        "threshold": { "type": "integer" }, "parties": { "type": "integer" },
                        "chain": { "type": "string", "enum": Chain::ALL.iter().map(|c| c.name()).collect::<Vec<_>>() },
                        "bech32_prefix": { "type": ["string", "null"] },
                        "path": { "type": "string" },
                        "public_key": { "type": "string", "description": "child public key, hex" },
                        "address": { "type": "string" },
                        "attestation_domain": { "type": "string", "const": "address-attestation" },
                        "attestation_version": { "type": "integer", "const": 1 },
                        "attestations": { "type": "array", "items": { "type": "object", "required": ["node", "signature"],
                            "properties": { "node": { "type": "integer" },
                                            "signature": { "type": "string", "description": "Ed25519 under the node's identity key, hex (64 bytes)" } } } },
                        "request_id": { "type": "string" } } } }
        }
    })
}
