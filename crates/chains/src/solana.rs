//! Solana messages, legacy and v0: the bytes `compileTransaction(…).messageBytes`
//! (`@solana/kit`) or `Transaction.serializeMessage()` (`@solana/web3.js`)
//! hand a signer. Decoded by hand: the format is four length-prefixed
//! fields (header, account keys, blockhash, instructions, plus address-table
//! lookups in v0), and the maintained decoder (`solana-message`) brings the
//! Solana SDK's crate tree with it. litesvm executing our output is the proof
//! (`tests/chain_sdks.rs`).

use crate::tx::{Summary, TxError};

/// The system program's id (all zero bytes).
const SYSTEM_PROGRAM: [u8; 32] = [0; 32];
/// The compute budget program (`ComputeBudget111111111111111111111111111111`).
const COMPUTE_BUDGET: [u8; 32] = [
    3, 6, 70, 111, 229, 33, 23, 50, 255, 236, 173, 186, 114, 195, 155, 231, 188, 140, 229, 187, 197, 247, 18, 107, 44,
    67, 155, 58, 64, 0, 0, 0,
];
/// Lamports charged per signature.
const LAMPORTS_PER_SIGNATURE: u64 = 5_000;
/// Compute units per instruction when no limit is set, and the most a transaction may have.
const DEFAULT_UNITS_PER_INSTRUCTION: u64 = 200_000;
const MAX_UNITS: u64 = 1_400_000;

/// A decoded Solana message.
#[derive(Clone, Debug)]
pub struct Message {
    version: Option<u8>,
    required_signatures: u8,
    account_keys: Vec<[u8; 32]>,
    instructions: Vec<Instruction>,
    lookups: Vec<Lookup>,
}

/// A v0 address-table lookup: the table and the indices loaded from it.
#[derive(Clone, Debug)]
struct Lookup {
    table: [u8; 32],
    writable: Vec<u8>,
    readonly: Vec<u8>,
}

#[derive(Clone, Debug)]
struct Instruction {
    program: u8,
    accounts: Vec<u8>,
    data: Vec<u8>,
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], TxError> {
        if self.bytes.len() < n {
            return Err(TxError::new(format!("message ends inside {what}")));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn byte(&mut self, what: &str) -> Result<u8, TxError> {
        match self.take(1, what)? {
            [byte] => Ok(*byte),
            _ => Err(TxError::new(format!("message ends inside {what}"))),
        }
    }

    /// Solana's compact-u16 ("shortvec"): 1–3 bytes, 7 bits each, canonical.
    fn shortvec(&mut self, what: &str) -> Result<usize, TxError> {
        let mut value = 0usize;
        for i in 0..3 {
            let byte = self.byte(what)?;
            value |= usize::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if byte == 0 && i > 0 || value > usize::from(u16::MAX) {
                    return Err(TxError::new(format!("non-canonical length of {what}")));
                }
                return Ok(value);
            }
        }
        Err(TxError::new(format!("length of {what} is longer than 3 bytes")))
    }

    fn key(&mut self, what: &str) -> Result<[u8; 32], TxError> {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.take(32, what)?);
        Ok(key)
    }
}

impl Message {
    /// Decodes a serialized message; trailing bytes, out-of-range indices and
    /// unknown versions are refused.
    pub fn parse(bytes: &[u8]) -> Result<Self, TxError> {
        let mut r = Reader { bytes };
        let first = r.byte("header")?;
        let version = match first & 0x80 {
            0 => None,
            _ if first == 0x80 => Some(0),
            _ => return Err(TxError::new(format!("unsupported message version {}", first & 0x7f))),
        };
        let required_signatures = if version.is_some() { r.byte("header")? } else { first };
        let _readonly_signed = r.byte("header")?;
        let _readonly_unsigned = r.byte("header")?;
        let key_count = r.shortvec("account keys")?;
        let account_keys = (0..key_count).map(|_| r.key("account keys")).collect::<Result<Vec<_>, _>>()?;
        let _blockhash = r.key("recent blockhash")?;
        let count = r.shortvec("instructions")?;
        let mut instructions = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let program = r.byte("instruction")?;
            let n = r.shortvec("instruction accounts")?;
            let accounts = r.take(n, "instruction accounts")?.to_vec();
            let n = r.shortvec("instruction data")?;
            let data = r.take(n, "instruction data")?.to_vec();
            instructions.push(Instruction { program, accounts, data });
        }
        let mut lookups = Vec::new();
        if version.is_some() {
            for _ in 0..r.shortvec("address table lookups")? {
                let table = r.key("lookup table")?;
                let n = r.shortvec("writable lookups")?;
                let writable = r.take(n, "writable lookups")?.to_vec();
                let n = r.shortvec("read-only lookups")?;
                let readonly = r.take(n, "read-only lookups")?.to_vec();
                lookups.push(Lookup { table, writable, readonly });
            }
        }
        let looked_up: usize = lookups.iter().map(|l| l.writable.len() + l.readonly.len()).sum();
        if !r.bytes.is_empty() {
            return Err(TxError::new(format!("{} trailing bytes after the message", r.bytes.len())));
        }
        if required_signatures == 0 || usize::from(required_signatures) > account_keys.len() {
            return Err(TxError::new("header names more signers than account keys"));
        }
        let total = account_keys.len() + looked_up;
        for ix in &instructions {
            if usize::from(ix.program) >= account_keys.len() || ix.accounts.iter().any(|a| usize::from(*a) >= total) {
                return Err(TxError::new("an instruction names an account index out of range"));
            }
        }
        Ok(Message { version, required_signatures, account_keys, instructions, lookups })
    }

    /// The fee payer (first account key), which must be the one signer.
    pub fn check_signer(&self, public_key: &[u8]) -> Result<(), TxError> {
        if self.required_signatures != 1 {
            return Err(TxError::new(format!(
                "the message needs {} signatures; this wallet signs messages with one signer",
                self.required_signatures
            )));
        }
        match self.account_keys.first() {
            Some(payer) if payer.as_slice() == public_key => Ok(()),
            Some(payer) => Err(TxError::new(format!(
                "the fee payer {} is not this key's address",
                bs58::encode(payer).into_string()
            ))),
            None => Err(TxError::new("no fee payer")),
        }
    }

    /// Account `index` of an instruction: a static key, or (v0) an entry of
    /// a lookup table, named `table[entry]` — writable entries of every
    /// table first, then read-only ones, as the runtime orders them.
    fn account(&self, index: u8) -> Option<String> {
        let index = usize::from(index);
        if let Some(key) = self.account_keys.get(index) {
            return Some(bs58::encode(key).into_string());
        }
        let loaded = self.lookups.iter().flat_map(|l| l.writable.iter().map(move |e| (l.table, *e)));
        let loaded = loaded.chain(self.lookups.iter().flat_map(|l| l.readonly.iter().map(move |e| (l.table, *e))));
        let (table, entry) = loaded.into_iter().nth(index - self.account_keys.len())?;
        Some(format!("{}[{entry}]", bs58::encode(table).into_string()))
    }

    /// For review: the fee payer, a System Program transfer's recipient and
    /// amount, the programs called.
    pub fn summary(&self) -> Summary {
        let b58 = |k: &[u8; 32]| bs58::encode(k).into_string();
        let key = |i: u8| self.account_keys.get(usize::from(i));
        let mut summary = Summary {
            kind: format!("solana-{}", self.version.map_or("legacy".to_string(), |v| format!("v{v}"))),
            from: self.account_keys.first().map(b58),
            asset: Some("SOL (lamports)".into()),
            fee: Some(self.fee()),
            ..Summary::default()
        };
        let mut calls = Vec::new();
        for ix in &self.instructions {
            let program = key(ix.program).map(b58).unwrap_or_default();
            let transfer = key(ix.program) == Some(&SYSTEM_PROGRAM)
                && ix.data.len() == 12
                && ix.data.get(..4) == Some(&2u32.to_le_bytes()[..]);
            match (transfer, ix.accounts.get(1).and_then(|a| self.account(*a))) {
                (true, Some(to)) if summary.to.is_none() => {
                    let mut amount = [0u8; 8];
                    amount.copy_from_slice(ix.data.get(4..12).unwrap_or(&[0; 8]));
                    summary.to = Some(to);
                    summary.amount = Some(u64::from_le_bytes(amount).to_string());
                    calls.push(format!("{program}: transfer"));
                }
                _ => calls.push(format!("{program}: {} bytes of data", ix.data.len())),
            }
        }
        for lookup in &self.lookups {
            calls.push(format!(
                "lookup table {}: {} writable, {} read-only entries",
                b58(&lookup.table),
                lookup.writable.len(),
                lookup.readonly.len()
            ));
        }
        summary.calls = calls;
        summary
    }

    /// The base fee, and the most the compute-budget priority fee can add:
    /// price (micro-lamports per unit) × unit limit (set, or 200 000 per
    /// other instruction up to 1.4 M), rounded up.
    fn fee(&self) -> String {
        let base = LAMPORTS_PER_SIGNATURE * u64::from(self.required_signatures);
        let (mut limit, mut price, mut others, mut malformed) = (None, 0u64, 0u64, false);
        for ix in &self.instructions {
            if self.account_keys.get(usize::from(ix.program)) != Some(&COMPUTE_BUDGET) {
                others += 1;
                continue;
            }
            match (ix.data.first(), ix.data.get(1..)) {
                (Some(2), Some(units)) => match <[u8; 4]>::try_from(units) {
                    Ok(units) => limit = Some(u32::from_le_bytes(units)),
                    Err(_) => malformed = true,
                },
                (Some(3), Some(micro)) => match <[u8; 8]>::try_from(micro) {
                    Ok(micro) => price = u64::from_le_bytes(micro),
                    Err(_) => malformed = true,
                },
                _ => {}
            }
        }
        // Never a fee read as zero from bytes that do not say: the runtime
        // refuses a malformed compute-budget instruction, and so says this.
        if malformed {
            return format!(
                "{base} lamports base fee; a compute-budget instruction is malformed (the runtime refuses the transaction)"
            );
        }
        if price == 0 {
            return format!("{base} lamports base fee");
        }
        let units = limit.map_or((others * DEFAULT_UNITS_PER_INSTRUCTION).min(MAX_UNITS), u64::from);
        let priority = (u128::from(price) * u128::from(units)).div_ceil(1_000_000);
        format!(
            "{base} lamports base fee + at most {priority} lamports priority fee ({price} µlamports × {units} units)"
        )
    }

    /// The wire transaction: one signature, then the message.
    pub fn assemble(message: &[u8], signature: &[u8]) -> Vec<u8> {
        let mut wire = Vec::with_capacity(1 + signature.len() + message.len());
        wire.push(1);
        wire.extend_from_slice(signature);
        wire.extend_from_slice(message);
        wire
    }
}

/// A legacy message: one System Program transfer of `lamports` from `payer` to `to`.
pub fn transfer(payer: &[u8; 32], to: &[u8; 32], lamports: u64, blockhash: &[u8; 32]) -> Vec<u8> {
    let mut m = vec![1, 0, 1, 3]; // 1 signer, 0 read-only signed, 1 read-only unsigned; 3 keys
    for key in [payer, to, &SYSTEM_PROGRAM, blockhash] {
        m.extend_from_slice(key);
    }
    // 1 instruction: program 2, accounts [0, 1], 12 data bytes: Transfer (2) ‖ lamports.
    m.extend_from_slice(&[1, 2, 2, 0, 1, 12, 2, 0, 0, 0]);
    m.extend_from_slice(&lamports.to_le_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy_transfer(payer: [u8; 32], to: [u8; 32], lamports: u64) -> Vec<u8> {
        transfer(&payer, &to, lamports, &[7; 32])
    }

    #[test]
    fn a_transfer_is_summarised() {
        let m = Message::parse(&legacy_transfer([1; 32], [2; 32], 1_500)).unwrap();
        m.check_signer(&[1; 32]).unwrap();
        assert!(m.check_signer(&[2; 32]).is_err());
        let s = m.summary();
        assert_eq!(s.amount.as_deref(), Some("1500"));
        assert_eq!(s.to, Some(bs58::encode([2u8; 32]).into_string()));
        assert_eq!(s.kind, "solana-legacy");
    }

    /// SetComputeUnitPrice(50 000 µlamports) and SetComputeUnitLimit(300 000) before a transfer.
    #[test]
    fn priority_fees_are_shown() {
        let mut m = vec![1, 0, 2, 4];
        for key in [&[1u8; 32], &[2; 32], &SYSTEM_PROGRAM, &COMPUTE_BUDGET, &[7; 32]] {
            m.extend_from_slice(key);
        }
        m.push(3);
        m.extend_from_slice(&[3, 0, 9, 3]);
        m.extend_from_slice(&50_000u64.to_le_bytes());
        m.extend_from_slice(&[3, 0, 5, 2]);
        m.extend_from_slice(&300_000u32.to_le_bytes());
        m.extend_from_slice(&[2, 2, 0, 1, 12, 2, 0, 0, 0]);
        m.extend_from_slice(&9u64.to_le_bytes());
        let summary = Message::parse(&m).unwrap().summary();
        assert_eq!(summary.amount.as_deref(), Some("9"));
        let fee = summary.fee.unwrap();
        assert!(fee.contains("at most 15000 lamports priority fee"), "{fee}");
        // Without a limit: 200 000 units for the one other instruction.
        let (keys, price, transfer) = (4 + 5 * 32, 3 + 9, 5 + 12);
        let no_limit = [&m[..keys], &[2], &m[keys + 1..keys + 1 + price], &m[m.len() - transfer..]].concat();
        let fee = Message::parse(&no_limit).unwrap().summary().fee.unwrap();
        assert!(fee.contains("at most 10000 lamports"), "{fee}");
        // A price of 7 bytes: no fee is read as zero from it (it was shown as
        // the base fee alone).
        let (at, len) = (keys + 1 + 3, 9u8);
        let mut short = m.clone();
        short[at - 1] = len - 1;
        short.remove(at + 8);
        let fee = Message::parse(&short).unwrap().summary().fee.unwrap();
        assert!(fee.contains("malformed"), "{fee}");
    }

    #[test]
    fn malformed_messages_are_refused() {
        let good = legacy_transfer([1; 32], [2; 32], 1);
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(Message::parse(&trailing).is_err());
        for cut in 0..good.len() {
            assert!(Message::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_index = good.clone();
        bad_index[4 + 96 + 32 + 1] = 9;
        assert!(Message::parse(&bad_index).is_err());
        let mut v1 = good;
        v1.insert(0, 0x81);
        assert!(Message::parse(&v1).is_err());
    }
}
