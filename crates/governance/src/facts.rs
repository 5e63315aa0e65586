//! What a node decoded from a request, in the terms the policy speaks
//! (docs/POLICY.md): which operation, which key, which chain and network,
//! and — for signing — what moves where and which contracts are called.
//!
//! The constructors decode the bytes themselves with the `chains` crate (the
//! same decoding the signer uses); nothing here takes a caller's description
//! of a transaction on trust. Where the decoder cannot read an amount it is
//! `None`, never 0, and where it cannot tell what an instruction does the
//! instruction becomes an opaque [`Call`], so a rule about transfers does
//! not match it (docs/POLICY.md, "Contract calls").

use bitcoin::psbt::Psbt;
use shardvault_chains::evm::EvmSummary;
use shardvault_chains::psbt::PsbtSummary;
use shardvault_chains::transaction::Summary;
use shardvault_chains::tx::Summary as TxSummary;
use shardvault_chains::{Chain, MessageFormat, Transaction, Unsigned};

use crate::Error;

/// The operation kinds of requests (docs/GOVERNANCE.md, "Requests").
pub const OPERATIONS: [&str; 9] = [
    "sign",
    "create_key",
    "derive_address",
    "refresh",
    "add_member",
    "remove_member",
    "set_policy",
    "export_backup",
    "replace_node",
];

/// Solana's system program: its instructions move SOL.
pub(crate) const SOLANA_SYSTEM_PROGRAM: &str = "11111111111111111111111111111111";
/// Cosmos bank sends move coins.
pub(crate) const COSMOS_MSG_SEND: &str = "/cosmos.bank.v1beta1.MsgSend";
/// Aptos's own coin, the chain's native asset.
const APTOS_COIN: &str = "0x1::aptos_coin::AptosCoin";
/// The chains whose transactions commit to their network (EVM chain id,
/// Aptos chain id, Cosmos chain id), checked by the decoder.
pub const NETWORK_BOUND: [Chain; 3] = [Chain::Ethereum, Chain::Aptos, Chain::Cosmos];
/// The Cosmos Hub's native denomination.
const COSMOS_NATIVE_DENOM: &str = "uatom";

/// What the policy is evaluated on: decoded by the node itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    /// The operation kind: `sign`, `create_key`, `derive_address`,
    /// `refresh`, `add_member`, `remove_member`, `set_policy`, `export_backup`,
    /// `replace_node`.
    pub operation: String,
    /// The key the operation uses, where it uses one.
    pub key_id: Option<String>,
    /// The chain family of a transaction or message ([`Chain::Ethereum`]
    /// for every EVM chain).
    pub chain: Option<Chain>,
    /// The network, where the signed bytes commit to one: an EVM chain id
    /// in decimal, an Aptos network (its chain id byte), a Cosmos chain id.
    /// `None` for Bitcoin, Litecoin, Solana, Sui and Tron, whose
    /// transactions do not say which network they are for (the request's
    /// network is a claim the signature does not bind), and for messages.
    pub network: Option<String>,
    /// What is signed, for `sign`.
    pub signing: Option<Signing>,
}

/// What a `sign` request signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signing {
    /// A transaction: what it moves, and the contract calls it makes that
    /// are not recognised transfers.
    Transaction {
        /// Value leaving the key (a PSBT's change excluded).
        transfers: Vec<Transfer>,
        /// Calls the decoder does not read as transfers.
        calls: Vec<Call>,
    },
    /// A message in one of the chains' message formats.
    Message {
        /// The format's name ([`MessageFormat::name`], e.g. `eip712-typed-data`).
        format: String,
        /// For EIP-712 typed data: its domain.
        eip712_domain: Option<DomainSeen>,
    },
    /// A raw digest or raw bytes: nothing is known about what they mean.
    Raw,
}

/// Value moved by a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// What moves.
    pub asset: Asset,
    /// To whom; `None` when the decoder shows no address (an EVM contract
    /// creation, a non-standard Bitcoin script).
    pub to: Option<String>,
    /// How much, in the asset's smallest unit; `None` when the decoder
    /// could not read it (never guessed, never 0).
    pub amount: Option<u128>,
}

/// An asset.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Asset {
    /// The chain's own coin (ETH, BTC, SOL, TRX, APT, SUI; ATOM on the Cosmos Hub).
    Native,
    /// A token: its contract (EVM, Tron), coin type (Aptos) or denomination
    /// (Cosmos). `0x` addresses compare case-insensitively.
    Token(String),
}

/// A contract call that is not a recognised transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The contract or program called (empty for an EVM contract creation,
    /// which no call pattern matches).
    pub to: String,
    /// The 4-byte selector of EVM and Tron call data, where there is one.
    pub selector: Option<[u8; 4]>,
}

/// The domain of EIP-712 typed data, as it is hashed into the signature.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainSeen {
    /// `name`.
    pub name: Option<String>,
    /// `version`.
    pub version: Option<String>,
    /// `chainId`, decimal.
    pub chain_id: Option<String>,
    /// `verifyingContract`, EIP-55.
    pub verifying_contract: Option<String>,
}

impl Facts {
    /// A `sign` request for a transaction: decodes `unsigned` exactly as the
    /// signer will ([`Transaction::parse`], refusing what it refuses) and
    /// reads its transfers and calls from the decoded summary.
    pub fn transaction(key_id: &str, unsigned: Unsigned<'_>) -> Result<Facts, Error> {
        let decode = |e: shardvault_chains::Error| Error::Decode(e.to_string());
        let tx = Transaction::parse(unsigned).map_err(decode)?;
        let summary = tx.summary().map_err(decode)?;
        let (network, signing) = match (&summary, tx.unsigned()) {
            (Summary::Psbt(summary), Unsigned::Psbt { psbt, .. }) => (None, psbt_signing(summary, psbt)?),
            (Summary::Evm(summary), Unsigned::Evm { chain_id, .. }) => {
                (Some(chain_id.to_string()), evm_signing(summary)?)
            }
            (Summary::SingleSigner(summary), Unsigned::SingleSigner { chain, network, .. }) => {
                let bound = NETWORK_BOUND.contains(&chain);
                (bound.then(|| network.to_string()), single_signer_signing(chain, summary))
            }
            _ => return Err(Error::Decode("the decoded summary is not of the transaction's family".into())),
        };
        Ok(Facts {
            operation: "sign".into(),
            key_id: Some(key_id.to_string()),
            chain: Some(tx.chain()),
            network,
            signing: Some(signing),
        })
    }

    /// A `sign` request for a message on `chain` in `format`; for EIP-712
    /// the typed data is parsed as the signer parses it, and its domain kept.
    pub fn message(key_id: &str, chain: Chain, format: &MessageFormat, message: &[u8]) -> Result<Facts, Error> {
        if format.chain() != chain {
            return Err(Error::Decode(format!("{} messages are {}'s, not {chain}'s", format.name(), format.chain())));
        }
        let eip712_domain = match format {
            MessageFormat::Eip712 => Some(eip712_domain(message)?),
            _ => None,
        };
        Ok(Facts {
            operation: "sign".into(),
            key_id: Some(key_id.to_string()),
            chain: Some(chain),
            network: None,
            signing: Some(Signing::Message { format: format.name().to_string(), eip712_domain }),
        })
    }

    /// A `sign` request for a raw digest or raw bytes.
    pub fn raw(key_id: &str) -> Facts {
        Facts {
            operation: "sign".into(),
            key_id: Some(key_id.to_string()),
            chain: None,
            network: None,
            signing: Some(Signing::Raw),
        }
    }

    /// Any other operation (`create_key`, `derive_address`, `refresh`,
    /// `add_member`, `remove_member`, `set_policy`). `sign` is refused here:
    /// signing facts come only from decoding what is signed.
    pub fn operation(kind: &str, key_id: Option<&str>) -> Result<Facts, Error> {
        if kind == "sign" {
            return Err(Error::Decode(
                "a sign request's facts come from its payload: use Facts::transaction, Facts::message or Facts::raw"
                    .into(),
            ));
        }
        if !OPERATIONS.contains(&kind) {
            return Err(Error::Decode(format!("unknown operation {kind:?}; known: {}", OPERATIONS.join(", "))));
        }
        Ok(Facts {
            operation: kind.to_string(),
            key_id: key_id.map(str::to_string),
            chain: None,
            network: None,
            signing: None,
        })
    }
}

/// An amount as the decoder wrote it: a plain decimal u128, or unknown.
fn amount(text: Option<&str>) -> Option<u128> {
    let text = text?;
    match !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        true => text.parse().ok(),
        false => None,
    }
}

/// Every output is a transfer of its amount, except change: an output paying
/// to the one script that *every* input spends. A PSBT whose inputs spend
/// different scripts has no change — a node signs only its own inputs and
/// cannot tell a foreign input's script from ours, so an output paying to a
/// foreign input (an attacker's dust) must count as the payment it is (the
/// chains crate refuses a PSBT whose inputs do not all carry their
/// `witness_utxo`, so every input script is known).
fn psbt_signing(summary: &PsbtSummary, bytes: &[u8]) -> Result<Signing, Error> {
    let psbt = Psbt::deserialize(bytes).map_err(|e| Error::Decode(format!("PSBT: {e}")))?;
    let own: Vec<&bitcoin::ScriptBuf> =
        psbt.inputs.iter().filter_map(|input| input.witness_utxo.as_ref().map(|utxo| &utxo.script_pubkey)).collect();
    if own.len() != psbt.inputs.len() || psbt.unsigned_tx.output.len() != summary.outputs.len() {
        return Err(Error::Decode("PSBT: inputs without their previous outputs, or outputs unaccounted".into()));
    }
    let change = match own.split_first() {
        Some((first, rest)) if rest.iter().all(|script| script == first) => Some(*first),
        _ => None,
    };
    let transfers = psbt
        .unsigned_tx
        .output
        .iter()
        .zip(&summary.outputs)
        .filter(|(output, _)| change != Some(&output.script_pubkey))
        .map(|(_, shown)| Transfer {
            asset: Asset::Native,
            to: shown.address.clone(),
            amount: Some(u128::from(shown.amount_sat)),
        })
        .collect();
    Ok(Signing::Transaction { transfers, calls: Vec::new() })
}

/// An EVM transaction moves its value (when not zero) to its recipient, and
/// an ERC-20 `transfer` moves tokens; any other call data, and a contract
/// creation, is a [`Call`].
fn evm_signing(summary: &EvmSummary) -> Result<Signing, Error> {
    let data = hex::decode(&summary.data).map_err(|e| Error::Decode(format!("EVM call data: {e}")))?;
    let mut transfers = Vec::new();
    let mut calls = Vec::new();
    let value = amount(Some(&summary.value_wei));
    if value != Some(0) {
        transfers.push(Transfer { asset: Asset::Native, to: summary.to.clone(), amount: value });
    }
    match (&summary.token_transfer, &summary.to) {
        (Some(token), Some(_)) => transfers.push(Transfer {
            asset: Asset::Token(token.token.clone()),
            to: Some(token.to.clone()),
            amount: amount(Some(&token.amount)),
        }),
        (_, None) => calls.push(Call { to: String::new(), selector: selector(&data) }),
        (None, Some(to)) if !data.is_empty() => calls.push(Call { to: to.clone(), selector: selector(&data) }),
        (None, Some(_)) => {}
    }
    Ok(Signing::Transaction { transfers, calls })
}

fn selector(data: &[u8]) -> Option<[u8; 4]> {
    data.get(..4).and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
}

/// The single-signer families, read from the chains crate's review summary:
/// the one transfer it recognises, and every other instruction, message or
/// command as an opaque call (so only a rule that names it can match).
fn single_signer_signing(chain: Chain, summary: &TxSummary) -> Signing {
    let (mut transfers, mut calls) = match chain {
        Chain::Solana => solana(summary),
        Chain::Tron => tron(summary),
        Chain::Aptos => aptos(summary),
        Chain::Cosmos => cosmos(summary),
        Chain::Sui => sui(summary),
        Chain::Bitcoin | Chain::Litecoin | Chain::Ethereum => (Vec::new(), Vec::new()),
    };
    transfers.retain(|transfer| transfer.amount != Some(0));
    if transfers.is_empty() && calls.is_empty() {
        // Nothing recognised: what it does is unknown, never "nothing".
        calls.push(Call { to: summary.kind.clone(), selector: None });
    }
    Signing::Transaction { transfers, calls }
}

type Parts = (Vec<Transfer>, Vec<Call>);

fn opaque(to: &str) -> Call {
    Call { to: to.to_string(), selector: None }
}

/// The first system-program transfer is the summary's transfer; every other
/// instruction (a second transfer included) is a call to its program.
fn solana(summary: &TxSummary) -> Parts {
    let mut transfers = Vec::new();
    let transfer_entry = format!("{SOLANA_SYSTEM_PROGRAM}: transfer");
    let mut pending = summary.to.is_some();
    if let Some(to) = &summary.to {
        transfers.push(Transfer {
            asset: Asset::Native,
            to: Some(to.clone()),
            amount: amount(summary.amount.as_deref()),
        });
    }
    let mut calls = Vec::new();
    for entry in &summary.calls {
        if pending && *entry == transfer_entry {
            pending = false;
            continue;
        }
        calls.push(opaque(entry.split_once(": ").map_or(entry.as_str(), |(program, _)| program)));
    }
    (transfers, calls)
}

fn tron(summary: &TxSummary) -> Parts {
    let transfer = |asset| Transfer { asset, to: summary.to.clone(), amount: amount(summary.amount.as_deref()) };
    match summary.kind.as_str() {
        "tron-transfer" => (vec![transfer(Asset::Native)], Vec::new()),
        "tron-trc20-transfer" => match summary.asset.as_deref().and_then(|a| a.strip_prefix("TRC-20 ")) {
            Some(token) => (vec![transfer(Asset::Token(token.to_string()))], Vec::new()),
            None => (Vec::new(), vec![opaque(&summary.kind)]),
        },
        _ => {
            let data = summary.calls.iter().find_map(|c| c.strip_prefix("call data 0x"));
            let selector = data.and_then(|hex| hex::decode(hex).ok()).and_then(|bytes| selector(&bytes));
            let call = Call { to: summary.to.clone().unwrap_or_default(), selector };
            (vec![transfer(Asset::Native)], vec![call])
        }
    }
}

fn aptos(summary: &TxSummary) -> Parts {
    match &summary.asset {
        Some(asset) => {
            let asset = if asset == APTOS_COIN { Asset::Native } else { Asset::Token(asset.clone()) };
            (vec![Transfer { asset, to: summary.to.clone(), amount: amount(summary.amount.as_deref()) }], Vec::new())
        }
        None => {
            let name = |entry: &String| entry.split_once(" (").map_or(entry.clone(), |(name, _)| name.to_string());
            (Vec::new(), summary.calls.iter().map(|entry| opaque(&name(entry))).collect())
        }
    }
}

/// The first bank send is the summary's transfer (its amount readable only
/// when it sends one coin); every other message is a call to its type.
fn cosmos(summary: &TxSummary) -> Parts {
    let mut transfers = Vec::new();
    let mut pending = false;
    if let (Some(to), Some(denom)) = (&summary.to, &summary.asset) {
        let coin = summary.amount.as_deref().and_then(|text| text.strip_suffix(denom.as_str()));
        let asset = if denom == COSMOS_NATIVE_DENOM { Asset::Native } else { Asset::Token(denom.clone()) };
        transfers.push(Transfer { asset, to: Some(to.clone()), amount: amount(coin) });
        pending = true;
    }
    let mut calls = Vec::new();
    for entry in &summary.calls {
        if entry.starts_with("memo ") {
            continue;
        }
        if pending && entry == COSMOS_MSG_SEND {
            pending = false;
            continue;
        }
        calls.push(opaque(entry));
    }
    (transfers, calls)
}

/// Sui: the summary shows what is split from gas and where objects go, not
/// which objects `TransferObjects` moves, so every command stays a call.
fn sui(summary: &TxSummary) -> Parts {
    let transfers = match summary.asset.as_deref() {
        Some(asset) if asset.starts_with("SUI (MIST)") => {
            vec![Transfer { asset: Asset::Native, to: summary.to.clone(), amount: amount(summary.amount.as_deref()) }]
        }
        _ => Vec::new(),
    };
    (transfers, summary.calls.iter().map(|entry| opaque(entry)).collect())
}

/// The domain of typed data, parsed exactly as the signer parses it (the
/// same `alloy-dyn-abi` type the chains crate hashes).
fn eip712_domain(message: &[u8]) -> Result<DomainSeen, Error> {
    let typed: alloy_dyn_abi::TypedData =
        serde_json::from_slice(message).map_err(|e| Error::Decode(format!("EIP-712 typed data: {e}")))?;
    typed.eip712_signing_hash().map_err(|e| Error::Decode(format!("EIP-712 typed data: {e}")))?;
    let domain = typed.domain();
    Ok(DomainSeen {
        name: domain.name.as_ref().map(|name| name.to_string()),
        version: domain.version.as_ref().map(|version| version.to_string()),
        chain_id: domain.chain_id.map(|id| id.to_string()),
        verifying_contract: domain.verifying_contract.map(|address| address.to_checksum(None)),
    })
}

/// Whether two addresses are the same: `0x` hex case-insensitively (EIP-55
/// checksums are letter case), anything else exactly as written.
pub(crate) fn same_address(a: &str, b: &str) -> bool {
    let hex = |s: &str| s.len() > 2 && (s.starts_with("0x") || s.starts_with("0X"));
    match hex(a) && hex(b) {
        true => a.eq_ignore_ascii_case(b),
        false => a == b,
    }
}
