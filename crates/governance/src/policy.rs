//! The organisation's policy: ordered rules, first match wins, no match
//! denies (docs/POLICY.md). Every node evaluates it on the request it decoded
//! itself ([`crate::Facts`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{MemberName, Role};

/// A policy (JSON; docs/POLICY.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Format version: 1.
    pub version: u32,
    /// Seconds a governance change waits, after a node first sees it, before
    /// it takes effect there.
    pub change_delay_secs: u64,
    /// Named destination lists.
    pub address_books: BTreeMap<String, Vec<String>>,
    /// The rules, in order.
    pub rules: Vec<Rule>,
}

/// One rule: when it matches, and what it then requires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// For people and refusals ("hot wallet top-ups").
    pub name: String,
    /// Every condition must hold (an empty set matches everything).
    pub when: Conditions,
    /// What a match requires.
    pub action: Action,
}

/// What a matching rule requires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Refused, whoever approves.
    Deny,
    /// Every group satisfied (AND).
    Require(Vec<Group>),
}

/// N approvals from members holding one of `roles` or named in `members`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// How many distinct approvers.
    pub count: u32,
    /// Roles that qualify.
    pub roles: Vec<Role>,
    /// Members who qualify by name.
    pub members: Vec<MemberName>,
}

/// The conditions of a rule, all of which must hold. An empty list or a
/// `None` holds always.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// Operation kinds: `sign`, `create_key`, `derive_address`, `refresh`,
    /// `add_member`, `remove_member`, `set_policy`.
    pub operations: Vec<String>,
    /// Key ids.
    pub keys: Vec<String>,
    /// Chain families (`bitcoin`, `ethereum`, …).
    pub chains: Vec<String>,
    /// Networks as the payload names them (EVM: the chain id in decimal).
    pub networks: Vec<String>,
    /// What is signed: `transaction`, `eip191`, `eip712`, `raw` (a raw digest
    /// or raw bytes), or another message format's name.
    pub signing: Vec<String>,
    /// Assets moved: `native`, or a token contract / SPL mint address.
    pub assets: Vec<String>,
    /// The most one transaction may move of a matched asset, in the
    /// smallest unit (decimal string).
    pub max_amount: Option<String>,
    /// The most a key may move of an asset in a rolling window, this
    /// transaction included.
    pub period: Option<PeriodLimit>,
    /// Address books every destination must be in.
    pub destinations: Vec<String>,
    /// Contract calls allowed (every call must match one).
    pub calls: Vec<CallPattern>,
    /// For `eip712`: the domain the typed data must carry.
    pub eip712_domain: Option<Eip712Domain>,
}

/// A rolling-window limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodLimit {
    /// `24h`, `7d` or `30d`.
    pub window: String,
    /// The most moved in the window, smallest unit (decimal string).
    pub max: String,
}

/// A contract call: its address and, if given, its 4-byte selector (`0x…`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallPattern {
    /// The contract.
    pub to: String,
    /// The selector, `0x` and 8 hex digits.
    pub selector: Option<String>,
}

/// The EIP-712 domain fields a rule pins (those given must match).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eip712Domain {
    /// `name`.
    pub name: Option<String>,
    /// `chainId`.
    pub chain_id: Option<u64>,
    /// `verifyingContract`.
    pub verifying_contract: Option<String>,
}

impl Policy {
    /// A new organisation's policy until changed: raw digests and raw bytes
    /// denied; everything else needs one approval by an owner or an admin.
    pub fn default_for_new_organisation() -> Self {
        let one_owner_or_admin = Group { count: 1, roles: vec![Role::Owner, Role::Admin], members: Vec::new() };
        Policy {
            version: 1,
            change_delay_secs: 0,
            address_books: BTreeMap::new(),
            rules: vec![
                Rule {
                    name: "raw signing denied".into(),
                    when: Conditions { signing: vec!["raw".into()], ..Conditions::default() },
                    action: Action::Deny,
                },
                Rule {
                    name: "one owner or admin".into(),
                    when: Conditions::default(),
                    action: Action::Require(vec![one_owner_or_admin]),
                },
            ],
        }
    }
}
