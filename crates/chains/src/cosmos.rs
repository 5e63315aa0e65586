//! Cosmos SDK chains, `SIGN_MODE_DIRECT`: a `SignDoc` protobuf in (types
//! from the `cosmos-sdk-proto` crate); the key signs sha256(SignDoc); out,
//! `TxRaw` {body, auth_info, [r ‖ s]} and its hash, upper-case hex of
//! sha256(TxRaw). Decoding must re-encode to the same bytes (no unknown
//! fields, canonical form), so what nodes review is exactly what is signed.

use bitcoin::secp256k1::ecdsa::Signature;
use cosmos_sdk_proto::cosmos::bank::v1beta1::MsgSend;
use cosmos_sdk_proto::cosmos::crypto::secp256k1::PubKey;
use cosmos_sdk_proto::cosmos::tx::signing::v1beta1::SignMode;
use cosmos_sdk_proto::cosmos::tx::v1beta1::{mode_info, AuthInfo, SignDoc, TxBody, TxRaw};
use prost::Message;
use sha2::{Digest, Sha256};

use crate::tx::{strict, SignedTx, Summary, TxError};

const SECP256K1_PUBKEY: &str = "/cosmos.crypto.secp256k1.PubKey";
const MSG_SEND: &str = "/cosmos.bank.v1beta1.MsgSend";

/// A decoded `SignDoc` with its body and auth info.
#[derive(Clone, Debug)]
pub struct Direct {
    doc: SignDoc,
    body: TxBody,
    auth: AuthInfo,
}

/// sha256(SignDoc): what the key signs.
pub fn digest(sign_doc: &[u8]) -> [u8; 32] {
    Sha256::digest(sign_doc).into()
}

fn coins(coins: &[cosmos_sdk_proto::cosmos::base::v1beta1::Coin]) -> String {
    coins.iter().map(|c| format!("{}{}", c.amount, c.denom)).collect::<Vec<_>>().join(",")
}

impl Direct {
    /// Decodes a `SignDoc` for chain id `network`, with one direct-mode signer.
    pub fn parse(bytes: &[u8], network: &str) -> Result<Self, TxError> {
        let doc: SignDoc = strict(bytes, "SignDoc")?;
        if doc.chain_id != network {
            return Err(TxError::new(format!("the SignDoc is for chain id {:?}, not {network:?}", doc.chain_id)));
        }
        let body: TxBody = strict(&doc.body_bytes, "TxBody")?;
        let auth: AuthInfo = strict(&doc.auth_info_bytes, "AuthInfo")?;
        if body.messages.is_empty() {
            return Err(TxError::new("the transaction has no messages"));
        }
        let [signer] = auth.signer_infos.as_slice() else {
            return Err(TxError::new(format!("expected one signer, found {}", auth.signer_infos.len())));
        };
        let direct = matches!(
            signer.mode_info.as_ref().and_then(|m| m.sum.as_ref()),
            Some(mode_info::Sum::Single(s)) if s.mode == SignMode::Direct as i32
        );
        if !direct {
            return Err(TxError::new("the signer's mode is not SIGN_MODE_DIRECT"));
        }
        Ok(Direct { doc, body, auth })
    }

    fn signer_key(&self) -> Option<Vec<u8>> {
        let any = self.auth.signer_infos.first()?.public_key.as_ref()?;
        (any.type_url == SECP256K1_PUBKEY).then(|| PubKey::decode(any.value.as_slice()).ok().map(|k| k.key))?
    }

    /// The signer's public key must be `public_key` (33-byte compressed).
    pub fn check_signer(&self, public_key: &[u8]) -> Result<(), TxError> {
        match self.signer_key() {
            Some(key) if key == public_key => Ok(()),
            Some(key) => Err(TxError::new(format!("the signer's key {} is not this key", hex::encode(key)))),
            None => Err(TxError::new("the signer has no secp256k1 public key")),
        }
    }

    /// For review.
    pub fn summary(&self) -> Summary {
        let signer = self.auth.signer_infos.first();
        let fee = self.auth.fee.as_ref();
        let mut summary = Summary {
            kind: "cosmos-direct".into(),
            network: Some(self.doc.chain_id.clone()),
            fee: fee.map(|f| format!("{} for {} gas", coins(&f.amount), f.gas_limit)),
            nonce: signer.map(|s| format!("account {} sequence {}", self.doc.account_number, s.sequence)),
            ..Summary::default()
        };
        for message in &self.body.messages {
            match (message.type_url.as_str(), MsgSend::decode(message.value.as_slice())) {
                (MSG_SEND, Ok(send)) if summary.to.is_none() => {
                    summary.from = Some(send.from_address.clone());
                    summary.to = Some(send.to_address.clone());
                    summary.amount = Some(coins(&send.amount));
                    summary.asset = send.amount.first().map(|c| c.denom.clone());
                }
                _ => {}
            }
            summary.calls.push(message.type_url.clone());
        }
        if !self.body.memo.is_empty() {
            summary.calls.push(format!("memo {:?}", self.body.memo));
        }
        summary
    }

    /// `TxRaw` with the (low-S normalised) compact signature, and its hash.
    pub fn assemble(&self, signature: &[u8]) -> Result<SignedTx, TxError> {
        let mut sig = Signature::from_compact(signature).map_err(|e| TxError::new(format!("signature: {e}")))?;
        sig.normalize_s();
        let sig = sig.serialize_compact().to_vec();
        let raw = TxRaw {
            body_bytes: self.doc.body_bytes.clone(),
            auth_info_bytes: self.doc.auth_info_bytes.clone(),
            signatures: vec![sig.clone()],
        }
        .encode_to_vec();
        let id = hex::encode_upper(Sha256::digest(&raw));
        Ok(SignedTx { transaction: raw, signature: sig, id })
    }
}

/// A `SignDoc` sending `amount` of `denom` from `from` (whose key is
/// `public_key`, at `sequence`) to `to` on `chain_id`.
#[derive(Debug)]
pub struct Send<'a> {
    /// The signer's 33-byte key.
    pub public_key: &'a [u8],
    /// Sender address.
    pub from: &'a str,
    /// Recipient address.
    pub to: &'a str,
    /// Amount in `denom`.
    pub amount: u64,
    /// Denomination, e.g. `uatom`.
    pub denom: &'a str,
    /// Chain id.
    pub chain_id: &'a str,
    /// Account number.
    pub account_number: u64,
    /// Sequence.
    pub sequence: u64,
}

impl Send<'_> {
    /// The SignDoc bytes (direct mode, 200 000 gas, 5 000 `denom` fee).
    pub fn sign_doc(&self) -> Vec<u8> {
        self.sign_doc_with(SignMode::Direct)
    }

    fn sign_doc_with(&self, mode: SignMode) -> Vec<u8> {
        use cosmos_sdk_proto::cosmos::base::v1beta1::Coin;
        use cosmos_sdk_proto::cosmos::tx::v1beta1::{Fee, ModeInfo, SignerInfo};
        use cosmos_sdk_proto::Any;
        let coin = |amount: u64| Coin { denom: self.denom.into(), amount: amount.to_string() };
        let send =
            MsgSend { from_address: self.from.into(), to_address: self.to.into(), amount: vec![coin(self.amount)] };
        let body = TxBody {
            messages: vec![Any { type_url: MSG_SEND.into(), value: send.encode_to_vec() }],
            ..TxBody::default()
        };
        let auth = AuthInfo {
            signer_infos: vec![SignerInfo {
                public_key: Some(Any {
                    type_url: SECP256K1_PUBKEY.into(),
                    value: PubKey { key: self.public_key.to_vec() }.encode_to_vec(),
                }),
                mode_info: Some(ModeInfo {
                    sum: Some(mode_info::Sum::Single(mode_info::Single { mode: mode as i32 })),
                }),
                sequence: self.sequence,
            }],
            fee: Some(Fee {
                amount: vec![coin(5_000)],
                gas_limit: 200_000,
                payer: String::new(),
                granter: String::new(),
            }),
            ..AuthInfo::default()
        };
        SignDoc {
            body_bytes: body.encode_to_vec(),
            auth_info_bytes: auth.encode_to_vec(),
            chain_id: self.chain_id.into(),
            account_number: self.account_number,
        }
        .encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign_doc(key: &[u8], mode: SignMode) -> Vec<u8> {
        let send = Send {
            public_key: key,
            from: "cosmos1from",
            to: "cosmos1to",
            amount: 1234,
            denom: "uatom",
            chain_id: "cosmoshub-4",
            account_number: 9,
            sequence: 4,
        };
        send.sign_doc_with(mode)
    }

    #[test]
    fn send_is_summarised_and_checked() {
        let doc = Direct::parse(&sign_doc(&[2; 33], SignMode::Direct), "cosmoshub-4").unwrap();
        doc.check_signer(&[2; 33]).unwrap();
        assert!(doc.check_signer(&[3; 33]).is_err());
        assert_eq!(doc.summary().amount.as_deref(), Some("1234uatom"));
        assert!(Direct::parse(&sign_doc(&[2; 33], SignMode::Direct), "osmosis-1").is_err());
        assert!(Direct::parse(&sign_doc(&[2; 33], SignMode::LegacyAminoJson), "cosmoshub-4").is_err());
        let mut trailing = sign_doc(&[2; 33], SignMode::Direct);
        trailing.extend_from_slice(&[0x28, 0x01]); // field 5 varint: unknown
        assert!(Direct::parse(&trailing, "cosmoshub-4").is_err());
    }
}
