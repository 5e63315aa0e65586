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

/// The conditions of a rule. A `None` or empty condition holds always.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    // Defined in full with the evaluator.
}
