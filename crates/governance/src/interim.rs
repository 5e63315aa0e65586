//! TEMPORARY: the evaluator's interface until the policy branch merges. Deleted at merge.
//!
//! TEMPORARY (issue10/node): `evaluate` and `check` behave like a minimal
//! evaluator so the node's accept paths can be tested before the merge:
//! rules match on `operations`, `keys` and `signing: ["raw"]` only (a rule
//! with any other condition never matches here); groups count approvers by
//! role or name. The constructors `transaction`, `message` and `raw` stand
//! in for the final ones (same signatures) and decode nothing.
#![allow(missing_docs, dead_code)]
use shardvault_chains::{Chain, MessageFormat, Unsigned};

use crate::{Action, Conditions, Error, Group, Member, Policy};

#[derive(Debug)]
pub struct Facts {
    pub operation: String,
    pub key_id: Option<String>,
    /// TEMPORARY: raw signing (what the default policy denies).
    pub raw: bool,
}
impl Facts {
    pub fn operation(kind: &str, key_id: Option<String>) -> Facts {
        Facts { operation: kind.into(), key_id, raw: false }
    }
    pub fn transaction(key_id: Option<String>, _unsigned: Unsigned<'_>) -> Result<Facts, Error> {
        Ok(Facts::operation("sign", key_id))
    }
    pub fn message(key_id: Option<String>, _chain: Option<Chain>, _format: &MessageFormat, _message: &[u8]) -> Facts {
        Facts::operation("sign", key_id)
    }
    pub fn raw(key_id: Option<String>) -> Facts {
        Facts { raw: true, ..Facts::operation("sign", key_id) }
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
        for group in &self.groups {
            let qualifies = |m: &&&Member| group.roles.contains(&m.role) || group.members.contains(&m.name);
            let have = approvers.iter().filter(qualifies).count();
            if have < group.count as usize {
                return Err(Error::Governance(format!(
                    "rule {:?} needs {} approvals by {:?} or {:?}; {have} counted",
                    self.rule, group.count, group.roles, group.members
                )));
            }
        }
        Ok(())
    }
}
impl Policy {
    pub fn validate(&self, _members: &[Member]) -> Result<(), Error> {
        Ok(())
    }
    pub fn evaluate(&self, facts: &Facts, _ledger: &dyn Ledger, _now: u64) -> Result<Decision, Error> {
        for (rule_index, rule) in self.rules.iter().enumerate() {
            if !interim_matches(&rule.when, facts) {
                continue;
            }
            return match &rule.action {
                Action::Deny => Err(Error::Governance(format!("denied by rule {rule_index} ({:?})", rule.name))),
                Action::Require(groups) => {
                    Ok(Decision { rule_index, rule: rule.name.clone(), groups: groups.clone(), spends: Vec::new() })
                }
            };
        }
        Err(Error::Governance("no rule of the policy matches: denied".into()))
    }
}
fn interim_matches(when: &Conditions, facts: &Facts) -> bool {
    let rest = Conditions { operations: Vec::new(), keys: Vec::new(), signing: Vec::new(), ..when.clone() };
    let key = facts.key_id.as_deref().unwrap_or_default();
    rest == Conditions::default()
        && (when.operations.is_empty() || when.operations.contains(&facts.operation))
        && (when.keys.is_empty() || when.keys.iter().any(|k| k == key))
        && (when.signing.is_empty() || (facts.raw && when.signing.iter().any(|s| s == "raw")))
}
