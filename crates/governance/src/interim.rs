//! TEMPORARY: the evaluator's interface until the policy branch merges. Deleted at merge.
#![allow(missing_docs, dead_code)]
use shardvault_chains::Chain;

use crate::{Error, Group, Member, Policy};

#[derive(Debug)]
pub struct Facts {
    pub operation: String,
    pub key_id: Option<String>,
}
impl Facts {
    pub fn operation(kind: &str, key_id: Option<String>) -> Facts {
        Facts { operation: kind.into(), key_id }
    }
    pub fn transaction(key_id: Option<String>, _unsigned: shardvault_chains::Unsigned<'_>) -> Result<Facts, Error> {
        Ok(Facts::operation("sign", key_id))
    }
    pub fn message(key_id: Option<String>, _chain: Option<Chain>, _format: &shardvault_chains::MessageFormat, _message: &[u8]) -> Facts {
        Facts::operation("sign", key_id)
    }
    pub fn raw(key_id: Option<String>) -> Facts {
        Facts::operation("sign", key_id)
    }
}
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Asset {
    Native,
    Token(String),
}
pub trait Ledger {
    fn spent(&self, key_id: &str, chain: Chain, asset: &Asset, since: u64) -> Result<u128, String>;
}
#[derive(Debug)]
pub struct Spend {
    pub key_id: String,
    pub chain: Chain,
    pub asset: Asset,
    pub amount: u128,
}
#[derive(Debug)]
pub struct Decision {
    pub rule_index: usize,
    pub rule: String,
    pub groups: Vec<Group>,
    pub spends: Vec<Spend>,
}
impl Decision {
    pub fn check(&self, approvers: &[&Member]) -> Result<(), Error> {
        let _ = approvers;
        Err(Error::Governance("interim".into()))
    }
}
impl Policy {
    pub fn validate(&self, _members: &[Member]) -> Result<(), Error> {
        Ok(())
    }
    pub fn evaluate(&self, _facts: &Facts, _ledger: &dyn Ledger, _now: u64) -> Result<Decision, Error> {
        Err(Error::Governance("interim".into()))
    }
}
