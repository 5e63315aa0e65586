//! What this client asked for, checked against the request the coordinator
//! made of it before the client approves that request: a coordinator that
//! swaps the transaction, the message, the key or the path under a caller's
//! call gets no approval (what you see is what you sign).

use base64::Engine;
use shardvault_api::{AddressRequest, CreateKey, SignRequest, TransactionRequest};
use shardvault_chains::Chain;
use shardvault_governance::{Operation, Payload};
use shardvault_types::DerivationPath;

/// A creating call, as sent.
#[derive(Clone, Copy, Debug)]
pub enum Expected<'a> {
    /// `POST /v1/keys`.
    CreateKey(&'a CreateKey),
    /// `POST /v1/keys/{key_id}/addresses`.
    Address { key_id: &'a str, request: &'a AddressRequest },
    /// `POST /v1/keys/{key_id}/signatures`.
    Sign { key_id: &'a str, request: &'a SignRequest },
    /// `POST /v1/keys/{key_id}/transactions`.
    Transaction { key_id: &'a str, request: &'a TransactionRequest },
    /// `POST /v1/keys/{key_id}/refresh`.
    Refresh { key_id: &'a str },
}

type Check = Result<(), String>;

fn same<T: PartialEq + std::fmt::Debug>(what: &str, asked: T, requested: T) -> Check {
    match asked == requested {
        true => Ok(()),
        false => Err(format!("{what}: asked {asked:?}, the request says {requested:?}")),
    }
}

fn hex(what: &str, text: &str) -> Result<Vec<u8>, String> {
    ::hex::decode(text.trim_start_matches("0x")).map_err(|_| format!("{what} is not hex"))
}

/// The path a body names: its `path`, or MPCVault's `m/9'/0'/coin'/0'/0'/index'`.
fn path(chain: &str, index: Option<u32>, path: Option<&str>) -> Result<DerivationPath, String> {
    let chain: Chain = chain.parse().map_err(|e: shardvault_chains::Error| e.to_string())?;
    let text = match (path, index) {
        (Some(path), _) => path.to_string(),
        (None, Some(index)) => format!("m/9'/0'/{}'/0'/0'/{index}'", chain.coin_type()),
        (None, None) => return Err("no path or index".into()),
    };
    text.parse().map_err(|e: shardvault_types::Error| e.to_string())
}

impl Expected<'_> {
    /// Whether `operation` is exactly what was asked (where the call names it).
    pub fn check(&self, operation: &Operation) -> Check {
        if let Some(key_id) = self.key_id() {
            let requested = operation.key_id().map(|k| k.to_string()).unwrap_or_default();
            same("key", key_id, requested.as_str())?;
        }
        match (self, operation) {
            (Expected::CreateKey(asked), Operation::CreateKey { scheme, threshold, .. }) => {
                same("scheme", asked.scheme.as_str(), scheme.as_str())?;
                same("threshold", (asked.threshold, asked.parties), (threshold.threshold(), threshold.parties()))
            }
            (Expected::Address { request, .. }, Operation::DeriveAddress { path: requested, .. }) => {
                let asked = path(&request.chain, request.index, request.path.as_deref())?;
                same("path", asked.hardened_prefix(), requested.clone())
            }
            (Expected::Sign { request, .. }, Operation::Sign { path: requested, payload, .. }) => {
                same("path", &path(&request.chain, request.index, request.path.as_deref())?, requested)?;
                sign_payload(request, payload)
            }
            (Expected::Transaction { request, .. }, Operation::Sign { path: requested, payload, .. }) => {
                same("path", &path(&request.chain, request.index, request.path.as_deref())?, requested)?;
                transaction_payload(request, payload)
            }
            (Expected::Refresh { .. }, Operation::Refresh { .. }) => Ok(()),
            (_, operation) => Err(format!("the request is a {} request, not the call made", operation.kind())),
        }
    }

    fn key_id(&self) -> Option<&str> {
        match self {
            Expected::CreateKey(_) => None,
            Expected::Address { key_id, .. }
            | Expected::Sign { key_id, .. }
            | Expected::Transaction { key_id, .. }
            | Expected::Refresh { key_id } => Some(key_id),
        }
    }
}

fn sign_payload(asked: &SignRequest, payload: &Payload) -> Check {
    match payload {
        Payload::Message { message, .. } => match (&asked.message_hex, &asked.typed_data) {
            (Some(text), None) if asked.nonce.is_none() => same("message", hex("message_hex", text)?, message.clone()),
            // Aptos (AIP-62): the full message the coordinator built carries ours.
            (Some(text), None) => {
                let ours = String::from_utf8(hex("message_hex", text)?).map_err(|_| "message is not UTF-8")?;
                let full = String::from_utf8_lossy(message);
                match full.contains(&format!("message: {ours}\n")) {
                    true => Ok(()),
                    false => Err("the request's message is not the one asked".into()),
                }
            }
            (None, Some(typed)) => {
                let ours = serde_json::to_vec(typed).map_err(|e| e.to_string())?;
                same("typed data", ours, message.clone())
            }
            _ => Err("the request signs a message, which was not asked".into()),
        },
        Payload::RawDigest { digest } => {
            same("digest", asked.digest_hex.as_deref().map(|d| hex("digest_hex", d)).transpose()?, Some(digest.clone()))
        }
        Payload::RawBytes { bytes } => {
            same("raw bytes", asked.raw_hex.as_deref().map(|d| hex("raw_hex", d)).transpose()?, Some(bytes.clone()))
        }
        Payload::Transaction { .. } => Err("the request signs a transaction, not the message asked".into()),
    }
}

fn transaction_payload(asked: &TransactionRequest, payload: &Payload) -> Check {
    let Payload::Transaction { chain, unsigned, .. } = payload else {
        return Err("the request does not sign a transaction".into());
    };
    let named: Chain = asked.chain.parse().map_err(|e: shardvault_chains::Error| e.to_string())?;
    same("chain", named, *chain)?;
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| "not base64".to_string());
    let ours = match (&asked.psbt, &asked.tx_hex, &asked.tx_base64) {
        (Some(psbt), _, _) => b64(psbt)?,
        (None, Some(text), _) => hex("tx_hex", text)?,
        (None, None, Some(text)) => b64(text)?,
        _ => return Err("no transaction was sent".into()),
    };
    same("unsigned transaction", ours, unsigned.clone())
}

#[cfg(test)]
mod tests {
    use shardvault_api::Target;
    use shardvault_types::{KeyId, Scheme, Threshold};

    use super::*;

    fn sign(key_id: KeyId, path: &str, payload: Payload) -> Operation {
        Operation::Sign { key_id, path: path.parse().unwrap(), payload }
    }

    /// A coordinator that swaps what was asked gets no approval.
    #[test]
    fn a_request_other_than_the_call_is_not_approved() {
        let key = KeyId::random();
        let id = key.to_string();
        let target = Target { chain: "ethereum".into(), index: Some(0), ..Target::default() };
        let asked = SignRequest { message_hex: Some("68656c6c6f".into()), ..SignRequest::to(target.clone()) };
        let expected = Expected::Sign { key_id: &id, request: &asked };
        let path = "m/9'/0'/60'/0'/0'/0'";
        let message =
            |m: &[u8]| Payload::Message { format: shardvault_chains::MessageFormat::Eip191, message: m.to_vec() };
        assert!(expected.check(&sign(key, path, message(b"hello"))).is_ok());
        assert!(expected.check(&sign(key, path, message(b"hellp"))).is_err(), "another message");
        assert!(expected.check(&sign(key, "m/9'/0'/60'/0'/0'/1'", message(b"hello"))).is_err(), "another path");
        assert!(expected.check(&sign(KeyId::random(), path, message(b"hello"))).is_err(), "another key");
        assert!(expected.check(&sign(key, path, Payload::RawDigest { digest: vec![0; 32] })).is_err(), "raw");
        assert!(expected.check(&Operation::Refresh { key_id: key }).is_err(), "another operation");

        let asked = TransactionRequest { tx_hex: Some("02c0".into()), ..TransactionRequest::to(target) };
        let expected = Expected::Transaction { key_id: &id, request: &asked };
        let tx = |bytes: &[u8]| Payload::Transaction {
            chain: Chain::Ethereum,
            network: "1".into(),
            unsigned: bytes.to_vec(),
        };
        assert!(expected.check(&sign(key, path, tx(&[0x02, 0xc0]))).is_ok());
        assert!(expected.check(&sign(key, path, tx(&[0x02, 0xc1]))).is_err(), "another transaction");

        let asked = CreateKey { scheme: "ecdsa-secp256k1".into(), threshold: 2, parties: 3, nodes: None };
        let create = |t, n| Operation::CreateKey {
            key_id: KeyId::random(),
            scheme: Scheme::EcdsaSecp256k1,
            threshold: Threshold::new(t, n).unwrap(),
        };
        assert!(Expected::CreateKey(&asked).check(&create(2, 3)).is_ok());
        assert!(Expected::CreateKey(&asked).check(&create(3, 3)).is_err(), "another threshold");
    }
}
