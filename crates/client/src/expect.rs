//! What this client asked for, checked against the request the coordinator
//! made of it before the client approves that request: a coordinator that
//! swaps the transaction, the message, the key or the path under a caller's
//! call gets no approval (what you see is what you sign).

use base64::Engine;
use shardvault_api::{AddressRequest, BackupRequest, CreateKey, ReplaceNode, SignRequest, TransactionRequest};
use shardvault_chains::Chain;
use shardvault_governance::{MemberKey, Operation, Payload};
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
    /// `POST /v1/backups`.
    Backup(&'a BackupRequest),
    /// `POST /v1/nodes/{node}/replace`.
    ReplaceNode { node: u16, request: &'a ReplaceNode },
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
            (Expected::Backup(asked), Operation::ExportBackup { keys, recipients }) => backup(asked, keys, recipients),
            // The log head is the coordinator's to fill in; `request approve`
            // and every node check it against the log (docs/GOVERNANCE.md).
            (
                Expected::ReplaceNode { node, request },
                Operation::ReplaceNode { node: n, noise_key, identity_key, log_head: _ },
            ) => {
                same("node", *node, *n)?;
                same("noise key", hex("noise_key", &request.noise_key)?, noise_key.clone())?;
                same("identity key", hex("identity_key", &request.identity_key)?, identity_key.clone())
            }
            (_, operation) => Err(format!("the request is a {} request, not the call made", operation.kind())),
        }
    }

    fn key_id(&self) -> Option<&str> {
        match self {
            Expected::CreateKey(_) | Expected::Backup(_) | Expected::ReplaceNode { .. } => None,
            Expected::Address { key_id, .. }
            | Expected::Sign { key_id, .. }
            | Expected::Transaction { key_id, .. }
            | Expected::Refresh { key_id } => Some(key_id),
        }
    }
}

/// The recipients asked, exactly and in order, and the keys asked (all of
/// them when none were named: the request lists which, for the approvers).
fn backup(asked: &BackupRequest, keys: &[shardvault_types::KeyId], recipients: &[MemberKey]) -> Check {
    let parsed = asked
        .recipients
        .iter()
        .map(|line| line.parse::<MemberKey>().map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    same("recipients", parsed.as_slice(), recipients)?;
    if asked.keys.is_empty() {
        return Ok(());
    }
    let mut named = asked
        .keys
        .iter()
        .map(|id| id.parse::<shardvault_types::KeyId>().map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    named.sort();
    named.dedup();
    same("keys", named.as_slice(), keys)
}

/// The message format asked: the one named, or one the chain signs in.
fn format_asked(asked: &SignRequest, format: &shardvault_chains::MessageFormat) -> Check {
    use shardvault_chains::{KeyType, MessageFormat};
    let prefix = asked.bech32_prefix.as_deref();
    match &asked.format {
        Some(name) => same("message format", &MessageFormat::parse(name, prefix).map_err(|e| e.to_string())?, format),
        None => {
            let chain: Chain = asked.chain.parse().map_err(|e: shardvault_chains::Error| e.to_string())?;
            let defaults = [KeyType::EcdsaSecp256k1, KeyType::SchnorrSecp256k1, KeyType::Ed25519]
                .into_iter()
                .filter_map(|key| chain.message_format(key));
            let cosmos = |f: &MessageFormat| matches!(f, MessageFormat::CosmosAdr36 { .. });
            match defaults.into_iter().any(|d| &d == format || (cosmos(&d) && cosmos(format))) {
                true => Ok(()),
                false => Err(format!("message format: the request signs {format:?}, not {chain}'s")),
            }
        }
    }
}

fn sign_payload(asked: &SignRequest, payload: &Payload) -> Check {
    match payload {
        Payload::Message { message, format } => match (&asked.message_hex, &asked.typed_data) {
            (Some(text), None) => {
                format_asked(asked, format)?;
                let ours = hex("message_hex", text)?;
                match &asked.nonce {
                    None => same("message", ours, message.clone()),
                    // Aptos (AIP-62): the full message, rebuilt here from ours and the nonce.
                    Some(nonce) => {
                        let text = String::from_utf8(ours).map_err(|_| "an Aptos message is UTF-8 text")?;
                        let full = shardvault_chains::message::aptos_full_message(&text, nonce).into_bytes();
                        same("message", full, message.clone())
                    }
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
    let Payload::Transaction { chain, unsigned, network } = payload else {
        return Err("the request does not sign a transaction".into());
    };
    let named: Chain = asked.chain.parse().map_err(|e: shardvault_chains::Error| e.to_string())?;
    same("chain", named, *chain)?;
    if named == Chain::Ethereum {
        let evm_chain = asked.evm_chain.as_deref().unwrap_or(asked.chain.as_str());
        let evm_chain = if shardvault_chains::EVM_CHAINS.contains(&evm_chain) { evm_chain } else { "ethereum" };
        let id = shardvault_chains::evm::chain_id(evm_chain, asked.network.as_deref()).map_err(|e| e.to_string())?;
        same("chain id", id.to_string(), network.clone())?;
    } else if let Some(asked_network) = &asked.network {
        same("network", asked_network, network)?;
    }
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

    /// An export to other recipients, in another order or of other keys gets no approval.
    #[test]
    fn a_backup_request_other_than_the_call_is_not_approved() {
        let officers: Vec<MemberKey> = (0..3)
            .map(|i| shardvault_governance::Identity::generate(&format!("o{i}")).unwrap().member_key().unwrap())
            .collect();
        let lines: Vec<String> = officers.iter().map(|k| k.to_openssh().unwrap()).collect();
        let (a, b) = (KeyId::random(), KeyId::random());
        let mut both = vec![a, b];
        both.sort();
        let export = |keys: Vec<KeyId>, recipients: Vec<MemberKey>| Operation::ExportBackup { keys, recipients };
        let every_key = BackupRequest { keys: Vec::new(), recipients: lines.clone() };
        assert!(Expected::Backup(&every_key).check(&export(both.clone(), officers.clone())).is_ok());
        let mut swapped = officers.clone();
        swapped.swap(0, 2);
        assert!(Expected::Backup(&every_key).check(&export(both.clone(), swapped)).is_err(), "reordered");
        let mut foreign = officers.clone();
        foreign[1] = shardvault_governance::Identity::generate("x").unwrap().member_key().unwrap();
        assert!(Expected::Backup(&every_key).check(&export(both.clone(), foreign)).is_err(), "another recipient");
        let named = BackupRequest { keys: vec![b.to_string(), a.to_string()], recipients: lines };
        assert!(Expected::Backup(&named).check(&export(both, officers.clone())).is_ok());
        assert!(Expected::Backup(&named).check(&export(vec![a], officers)).is_err(), "fewer keys");
    }
}
