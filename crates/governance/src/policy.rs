//! The organisation's policy: ordered rules, first match wins, no match
//! denies (docs/POLICY.md). Every node evaluates it on the request it decoded
//! itself ([`crate::Facts`]).
//!
//! The JSON form is deterministic: fields in declaration order, address
//! books sorted by name, and empty lists, absent options and a zero change
//! delay left out, so parsing a policy and serialising it again always gives
//! one form (the one embedded in canonical requests).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use shardvault_chains::{Chain, MessageFormat};

use crate::facts::{same_address, Asset, Call, DomainSeen, Facts, Signing, Transfer, NETWORK_BOUND, OPERATIONS};
use crate::{Error, Member, MemberName, Role};

/// A policy (JSON; docs/POLICY.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Format version: 1.
    pub version: u32,
    /// Seconds a governance change waits, after a node first sees it, before
    /// it takes effect there (0, the default, is left out of the JSON).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub change_delay_secs: u64,
    /// Refresh every key once its active epoch is this many seconds old
    /// (0, the default and left out of the JSON: only when asked). Such a
    /// scheduled refresh needs no approval: each node checks its own record
    /// of when the epoch became active (docs/POLICY.md "Scheduled refresh").
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refresh_every_secs: u64,
    /// Named destination lists.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
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
/// `roles` and `members` may be left out when empty; they are always written
/// (`{"count":1,"roles":["owner"],"members":[]}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// How many distinct approvers.
    pub count: u32,
    /// Roles that qualify.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// Members who qualify by name.
    #[serde(default)]
    pub members: Vec<MemberName>,
}

/// The conditions of a rule, all of which must hold. An empty list or a
/// `None` holds always.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// Operation kinds: `sign`, `create_key`, `derive_address`, `refresh`,
    /// `add_member`, `remove_member`, `set_policy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<String>,
    /// Key ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// Chain families (`bitcoin`, `ethereum`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chains: Vec<String>,
    /// Networks, where the signed bytes commit to one: an EVM chain id in
    /// decimal, an Aptos network, a Cosmos chain id. Needs `chains`, all of
    /// them among [`NETWORK_BOUND`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    /// What is signed: `transaction`, `eip191`, `eip712`, `raw` (a raw digest
    /// or raw bytes), or another message format's name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing: Vec<String>,
    /// Assets every transfer must be of: `native`, or a token (EVM/Tron
    /// contract, Aptos coin type, Cosmos denomination). Required with
    /// `max_amount` and `period`, which apply to each listed asset apart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assets: Vec<String>,
    /// The most any one transfer may move, in the smallest unit (decimal
    /// string). Over it, the rule does not match; an unreadable amount
    /// denies the request under this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_amount: Option<String>,
    /// The most a key may move of an asset in a rolling window, this
    /// transaction included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<PeriodLimit>,
    /// Address books every transfer's recipient must be in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<String>,
    /// Contract calls allowed: the transaction makes at least one call and
    /// every call matches one. Without it, a rule with transfer conditions
    /// matches only transactions that make no call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<CallPattern>,
    /// For `eip712`: the domain the typed data must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    /// The selector, `0x` and 8 hex digits; none: any call to `to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

/// The EIP-712 domain fields a rule pins (those given must match).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eip712Domain {
    /// `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `chainId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<u64>,
    /// `verifyingContract`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifying_contract: Option<String>,
}

/// The shortest refresh period a policy may schedule: a refresh is a full
/// protocol run on every node, and a coordinator could otherwise keep the
/// nodes refreshing.
pub const MIN_REFRESH_EVERY_SECS: u64 = 10;

impl Policy {
    /// A new organisation's policy until changed: raw digests and raw bytes
    /// denied; everything else needs one approval by an owner or an admin.
    pub fn default_for_new_organisation() -> Self {
        let one_owner_or_admin = Group { count: 1, roles: vec![Role::Owner, Role::Admin], members: Vec::new() };
        Policy {
            version: 1,
            change_delay_secs: 0,
            refresh_every_secs: 0,
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

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// A node's record of what its keys already moved, for period limits.
pub trait Ledger {
    /// The total `key_id` moved of `asset` on `chain` since unix time
    /// `since` (inclusive), in the asset's smallest unit. Assets are given
    /// as [`Facts`] write them (`0x` token addresses EIP-55; compare them
    /// case-insensitively). An error makes the evaluation fail
    /// ([`Error::Ledger`]), never counts as zero.
    fn spent(&self, key_id: &str, chain: Chain, asset: &Asset, since: u64) -> Result<u128, String>;
}

/// A ledger in which nothing was spent: for evaluations outside a node
/// (governance changes, the coordinator's and the CLI's views), which
/// cannot count what the nodes signed. Nothing spent is the most a period
/// limit allows, so a denial under it is final.
#[derive(Clone, Copy, Debug, Default)]
pub struct NothingSpent;

impl Ledger for NothingSpent {
    fn spent(&self, _: &str, _: Chain, _: &Asset, _: u64) -> Result<u128, String> {
        Ok(0)
    }
}

/// The rule a request matched, and what it requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The rule's position in the policy (0-based).
    pub rule_index: usize,
    /// The rule's name.
    pub rule: String,
    /// The approval groups that must all be satisfied ([`Decision::check`]).
    pub groups: Vec<Group>,
    /// What the node records in its spend ledger when it signs: every
    /// transfer of known, non-zero amount (whichever rule matched), so later
    /// period limits count it.
    pub spends: Vec<Spend>,
}

/// One transfer to record in the spend ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spend {
    /// The key that moves it.
    pub key_id: String,
    /// On which chain.
    pub chain: Chain,
    /// What.
    pub asset: Asset,
    /// How much, smallest unit.
    pub amount: u128,
}

/// Whether a rule's conditions hold for a request.
enum Verdict {
    Holds,
    Fails,
    /// The rule applies but cannot be evaluated safely: the request is
    /// denied under it rather than handed to a later (perhaps looser) rule.
    Refused(String),
}

/// The longest period window: a year.
const MAX_WINDOW_SECS: u64 = 366 * 86_400;

impl Policy {
    /// Refuses a policy that cannot be put in force with these members:
    /// another version than 1, malformed amounts, windows, selectors or
    /// names, address books or members it names that do not exist, and any
    /// rule whose approval groups the members could never satisfy (each
    /// approver counting for one group, viewers never).
    pub fn validate(&self, members: &[Member]) -> Result<(), Error> {
        if self.version != 1 {
            return Err(invalid(format!("version {}: this node reads policy version 1", self.version)));
        }
        if self.refresh_every_secs != 0 && self.refresh_every_secs < MIN_REFRESH_EVERY_SECS {
            return Err(invalid(format!(
                "refresh_every_secs {}: refresh at most every {MIN_REFRESH_EVERY_SECS} seconds (or 0: only when asked)",
                self.refresh_every_secs
            )));
        }
        for (book, entries) in &self.address_books {
            if book.trim().is_empty() || entries.iter().any(|entry| entry.is_empty() || entry.trim() != entry) {
                return Err(invalid(format!(
                    "address book {book:?}: give it a name and write each address without blanks"
                )));
            }
        }
        let mut names = BTreeSet::new();
        for (index, rule) in self.rules.iter().enumerate() {
            let at = |detail: String| invalid(format!("rule {} ({:?}): {detail}", index.saturating_add(1), rule.name));
            if rule.name.trim().is_empty() {
                return Err(at("give the rule a name (refusals quote it)".into()));
            }
            if !names.insert(rule.name.as_str()) {
                return Err(at("another rule has the same name; rule names must be unique".into()));
            }
            rule.when.validate(&self.address_books).map_err(at)?;
            if let Action::Require(groups) = &rule.action {
                validate_groups(groups, members).map_err(at)?;
            }
        }
        Ok(())
    }

    /// The first rule whose conditions all hold for `facts`, at unix time
    /// `now`: its approval groups and the spends to record — or
    /// [`Error::Denied`] when that rule denies, when it limits amounts the
    /// decoder could not read, or when no rule matches.
    pub fn evaluate(&self, facts: &Facts, ledger: &dyn Ledger, now: u64) -> Result<Decision, Error> {
        for (rule_index, rule) in self.rules.iter().enumerate() {
            let verdict = rule.when.verdict(&self.address_books, facts, ledger, now).map_err(|e| match e {
                Error::Policy(detail) => invalid(format!("rule {:?}: {detail}", rule.name)),
                other => other,
            })?;
            match (verdict, &rule.action) {
                (Verdict::Fails, _) => continue,
                (Verdict::Refused(reason), _) => return Err(Error::Denied { rule: Some(rule.name.clone()), reason }),
                (Verdict::Holds, Action::Deny) => {
                    return Err(Error::Denied {
                        rule: Some(rule.name.clone()),
                        reason: format!("the rule denies {}", describe(facts)),
                    })
                }
                (Verdict::Holds, Action::Require(groups)) => {
                    // A policy that was never validated must not let a
                    // request through on no approval at all.
                    if groups.is_empty() || groups.iter().any(|group| group.count == 0) {
                        return Err(invalid(format!(
                            "rule {:?} requires no approval; validate the policy before putting it in force",
                            rule.name
                        )));
                    }
                    return Ok(Decision {
                        rule_index,
                        rule: rule.name.clone(),
                        groups: groups.clone(),
                        spends: spends(facts),
                    });
                }
            }
        }
        Err(Error::Denied { rule: None, reason: describe(facts) })
    }
}

impl Decision {
    /// Accepts `approvers` (members whose approvals verified) when every
    /// group is satisfied. Each member counts once, and for at most one
    /// group: "2 admins and 1 security member" takes three people even when
    /// the security member is also an admin (docs/POLICY.md). Viewers never
    /// count. Refuses naming what is still missing.
    pub fn check(&self, approvers: &[&Member]) -> Result<(), Error> {
        let mut distinct: Vec<&Member> = Vec::new();
        for member in approvers {
            let seen = distinct.iter().any(|d| d.name == member.name || d.public_key == member.public_key);
            if member.role.may_approve() && !seen {
                distinct.push(member);
            }
        }
        let missing = shortfall(&self.groups, &distinct);
        if missing.is_empty() {
            return Ok(());
        }
        let shortfall = missing
            .iter()
            .map(|(group, more)| format!("{more} more approval(s) from {}", who(group)))
            .collect::<Vec<_>>()
            .join("; ");
        Err(Error::NotApproved { rule: self.rule.clone(), shortfall })
    }
}

impl Conditions {
    /// Whether every condition is well-formed and refers to what exists.
    fn validate(&self, books: &BTreeMap<String, Vec<String>>) -> Result<(), String> {
        for operation in &self.operations {
            if !OPERATIONS.contains(&operation.as_str()) {
                return Err(format!("unknown operation {operation:?}; use one of {}", OPERATIONS.join(", ")));
            }
        }
        for chain in &self.chains {
            chain_name(chain)?;
        }
        for name in &self.signing {
            signing_name(name)?;
        }
        let blank = |text: &String| text.is_empty() || text.trim() != text;
        if self.keys.iter().any(blank) || self.networks.iter().any(blank) || self.assets.iter().any(blank) {
            return Err("write keys, networks and assets without blanks".into());
        }
        if !self.networks.is_empty() && !self.network_bound() {
            return Err(format!(
                "networks needs chains, all of {}: only their transactions commit to a network (elsewhere the \
                 request's network is a claim the signature does not bind)",
                NETWORK_BOUND.map(Chain::name).join(", ")
            ));
        }
        if let Some(max) = &self.max_amount {
            parse_amount(max)?;
        }
        if let Some(period) = &self.period {
            parse_window(&period.window)?;
            parse_amount(&period.max)?;
        }
        if (self.max_amount.is_some() || self.period.is_some()) && self.assets.is_empty() {
            return Err(
                "max_amount and period need `assets`: amounts of different assets are in different units".into()
            );
        }
        for book in &self.destinations {
            if !books.contains_key(book) {
                return Err(format!("no address book {book:?}; add it to address_books or fix the name"));
            }
        }
        for call in &self.calls {
            validate_call(call)?;
        }
        if let Some(domain) = &self.eip712_domain {
            if domain.name.is_none() && domain.chain_id.is_none() && domain.verifying_contract.is_none() {
                return Err("eip712_domain pins nothing; give name, chain_id or verifying_contract".into());
            }
        }
        Ok(())
    }

    /// Whether this rule's conditions hold for `facts` (conditions are
    /// checked cheapest first; the ledger is read last).
    fn verdict(
        &self,
        books: &BTreeMap<String, Vec<String>>,
        facts: &Facts,
        ledger: &dyn Ledger,
        now: u64,
    ) -> Result<Verdict, Error> {
        if !self.about_request(facts)? {
            return Ok(Verdict::Fails);
        }
        if !self.about_transactions() {
            return Ok(Verdict::Holds);
        }
        let Some(Signing::Transaction { transfers, calls }) = &facts.signing else {
            return Ok(Verdict::Fails);
        };
        if !self.assets_hold(transfers) || !self.destinations_hold(books, transfers)? || !self.calls_hold(calls)? {
            return Ok(Verdict::Fails);
        }
        self.value_verdict(facts, transfers, ledger, now)
    }

    /// Operations, keys, chains, networks, signing kind and EIP-712 domain.
    fn about_request(&self, facts: &Facts) -> Result<bool, Error> {
        Ok(listed(&self.operations, |op| *op == facts.operation)
            && listed(&self.keys, |key| Some(key.as_str()) == facts.key_id.as_deref())
            && listed(&self.chains, |chain| facts.chain.is_some_and(|seen| seen.name() == chain))
            && listed(&self.networks, |network| Some(network.as_str()) == facts.network.as_deref())
            && self.signing_holds(facts)?
            && self.domain_holds(facts))
    }

    /// Whether `chains` is given and every chain in it binds its network.
    fn network_bound(&self) -> bool {
        !self.chains.is_empty()
            && self.chains.iter().all(|name| chain_name(name).is_ok_and(|chain| NETWORK_BOUND.contains(&chain)))
    }

    /// Whether the rule says anything about what a transaction moves or calls.
    fn about_transactions(&self) -> bool {
        !self.assets.is_empty()
            || self.max_amount.is_some()
            || self.period.is_some()
            || !self.destinations.is_empty()
            || !self.calls.is_empty()
    }

    fn signing_holds(&self, facts: &Facts) -> Result<bool, Error> {
        if self.signing.is_empty() {
            return Ok(true);
        }
        let kind = match &facts.signing {
            None => return Ok(false),
            Some(Signing::Transaction { .. }) => "transaction",
            Some(Signing::Raw) => "raw",
            Some(Signing::Message { format, .. }) => format.as_str(),
        };
        for name in &self.signing {
            if signing_name(name).map_err(Error::Policy)? == kind {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn domain_holds(&self, facts: &Facts) -> bool {
        let Some(pinned) = &self.eip712_domain else { return true };
        match &facts.signing {
            Some(Signing::Message { eip712_domain: Some(seen), .. }) => pinned.matches(seen),
            _ => false,
        }
    }

    fn assets_hold(&self, transfers: &[Transfer]) -> bool {
        let listed_asset = |asset: &Asset| {
            self.assets.iter().any(|entry| match asset {
                Asset::Native => entry == "native",
                Asset::Token(token) => entry != "native" && same_address(entry, token),
            })
        };
        self.assets.is_empty() || transfers.iter().all(|transfer| listed_asset(&transfer.asset))
    }

    fn destinations_hold(&self, books: &BTreeMap<String, Vec<String>>, transfers: &[Transfer]) -> Result<bool, Error> {
        if self.destinations.is_empty() {
            return Ok(true);
        }
        let mut allowed = Vec::new();
        for name in &self.destinations {
            let book = books.get(name).ok_or_else(|| Error::Policy(format!("no address book {name:?}")))?;
            allowed.extend(book.iter().map(String::as_str));
        }
        Ok(transfers.iter().all(|transfer| {
            transfer.to.as_deref().is_some_and(|to| allowed.iter().any(|entry| same_address(entry, to)))
        }))
    }

    /// With `calls`, the transaction makes at least one call and every call
    /// matches one of them. Without, the rule
    /// (which limits transfers) covers only transactions that make no calls:
    /// a call can move value no transfer shows (an ERC-20 `approve`, a swap).
    fn calls_hold(&self, calls: &[Call]) -> Result<bool, Error> {
        if self.calls.is_empty() {
            return Ok(calls.is_empty());
        }
        if calls.is_empty() {
            // A rule for contract calls is not one for plain transfers.
            return Ok(false);
        }
        let mut patterns = Vec::with_capacity(self.calls.len());
        for pattern in &self.calls {
            let selector = pattern.selector.as_deref().map(parse_selector).transpose().map_err(Error::Policy)?;
            patterns.push((pattern.to.as_str(), selector));
        }
        Ok(calls.iter().all(|call| {
            patterns.iter().any(|(to, selector)| {
                !call.to.is_empty() && same_address(to, &call.to) && selector.is_none_or(|s| call.selector == Some(s))
            })
        }))
    }

    /// `max_amount` and `period`. A transfer whose amount the decoder could
    /// not read refuses the request under this rule: skipping the rule could
    /// hand it to a later, looser one.
    fn value_verdict(
        &self,
        facts: &Facts,
        transfers: &[Transfer],
        ledger: &dyn Ledger,
        now: u64,
    ) -> Result<Verdict, Error> {
        let max = self.max_amount.as_deref().map(parse_amount).transpose().map_err(Error::Policy)?;
        let period = match &self.period {
            Some(limit) => Some((
                parse_window(&limit.window).map_err(Error::Policy)?,
                parse_amount(&limit.max).map_err(Error::Policy)?,
            )),
            None => None,
        };
        if max.is_none() && period.is_none() {
            return Ok(Verdict::Holds);
        }
        let mut totals: Vec<(&Asset, u128)> = Vec::new();
        for transfer in transfers {
            let Some(amount) = transfer.amount else {
                return Ok(Verdict::Refused(format!(
                    "the amount of a transfer of {} to {} could not be decoded, and this rule limits amounts",
                    asset_name(&transfer.asset),
                    transfer.to.as_deref().unwrap_or("an unknown address")
                )));
            };
            if max.is_some_and(|max| amount > max) {
                return Ok(Verdict::Fails);
            }
            match totals.iter_mut().find(|(asset, _)| same_asset(asset, &transfer.asset)) {
                Some((_, total)) => match total.checked_add(amount) {
                    Some(sum) => *total = sum,
                    None => return Ok(Verdict::Fails),
                },
                None => totals.push((&transfer.asset, amount)),
            }
        }
        let Some((window, max)) = period else { return Ok(Verdict::Holds) };
        let (Some(key_id), Some(chain)) = (facts.key_id.as_deref(), facts.chain) else {
            return Ok(Verdict::Refused("no key or chain to count this rule's period limit against".into()));
        };
        let since = now.saturating_sub(window);
        for (asset, total) in totals {
            let spent = ledger.spent(key_id, chain, asset, since).map_err(Error::Ledger)?;
            if spent.checked_add(total).is_none_or(|sum| sum > max) {
                return Ok(Verdict::Fails);
            }
        }
        Ok(Verdict::Holds)
    }
}

impl Eip712Domain {
    /// Whether every field given equals the typed data's.
    fn matches(&self, seen: &DomainSeen) -> bool {
        let name = self.name.as_ref().is_none_or(|name| seen.name.as_ref() == Some(name));
        let chain_id = self.chain_id.is_none_or(|id| seen.chain_id.as_deref() == Some(id.to_string().as_str()));
        let contract = self
            .verifying_contract
            .as_deref()
            .is_none_or(|contract| seen.verifying_contract.as_deref().is_some_and(|seen| same_address(contract, seen)));
        name && chain_id && contract
    }
}

fn invalid(detail: String) -> Error {
    Error::Policy(detail)
}

fn listed<T>(list: &[T], matches: impl Fn(&T) -> bool) -> bool {
    list.is_empty() || list.iter().any(matches)
}

fn same_asset(a: &Asset, b: &Asset) -> bool {
    match (a, b) {
        (Asset::Native, Asset::Native) => true,
        (Asset::Token(a), Asset::Token(b)) => same_address(a, b),
        _ => false,
    }
}

fn asset_name(asset: &Asset) -> &str {
    match asset {
        Asset::Native => "the native coin",
        Asset::Token(token) => token,
    }
}

/// A chain family's name; the EVM chains' own names are refused, since the
/// facts name them all `ethereum` (tell them apart with `networks`).
fn chain_name(name: &str) -> Result<Chain, String> {
    if let Some(chain) = Chain::ALL.into_iter().find(|chain| chain.name() == name) {
        return Ok(chain);
    }
    if shardvault_chains::EVM_CHAINS.contains(&name) {
        return Err(format!(
            "chain {name:?}: every EVM chain is `ethereum` here; write chains [\"ethereum\"] and name the chain id in \
             networks (e.g. \"137\" for polygon)"
        ));
    }
    let known: Vec<&str> = Chain::ALL.iter().map(|chain| chain.name()).collect();
    Err(format!("unknown chain {name:?}; use one of {}", known.join(", ")))
}

/// `transaction`, `raw`, or a message format by any name the chains crate
/// knows, as its canonical name ([`MessageFormat::name`]).
fn signing_name(name: &str) -> Result<String, String> {
    match name {
        "transaction" | "raw" => Ok(name.to_string()),
        _ => MessageFormat::parse(name, None).map(|format| format.name().to_string()).map_err(|_| {
            format!("signing {name:?}: use transaction, raw, or a message format ({})", MessageFormat::NAMES.join(", "))
        }),
    }
}

/// A decimal amount in the smallest unit: digits only, at most u128.
fn parse_amount(text: &str) -> Result<u128, String> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match digits {
        true => text.parse().map_err(|_| format!("amount {text:?} is too large")),
        false => Err(format!("amount {text:?}: write a whole number of the smallest unit, e.g. \"1000000\"")),
    }
}

/// A window: a whole number of hours (`24h`) or days (`7d`), at most a year.
fn parse_window(text: &str) -> Result<u64, String> {
    let unit = match text.bytes().last() {
        Some(b'h') => 3_600,
        Some(b'd') => 86_400,
        _ => 0,
    };
    let count = text.get(..text.len().saturating_sub(1)).unwrap_or_default();
    let count: Option<u64> = match !count.is_empty() && count.bytes().all(|b| b.is_ascii_digit()) {
        true => count.parse().ok(),
        false => None,
    };
    match count.and_then(|count| count.checked_mul(unit)) {
        Some(secs) if secs > 0 && secs <= MAX_WINDOW_SECS => Ok(secs),
        _ => Err(format!("window {text:?}: write hours or days, e.g. \"24h\" or \"7d\", at most a year")),
    }
}

/// `0x` and 8 hex digits.
fn parse_selector(text: &str) -> Result<[u8; 4], String> {
    let fail = || format!("selector {text:?}: write 0x and 8 hex digits, e.g. \"0xa9059cbb\"");
    let digits = text.strip_prefix("0x").ok_or_else(fail)?;
    let bytes = hex::decode(digits).map_err(|_| fail())?;
    <[u8; 4]>::try_from(bytes.as_slice()).map_err(|_| fail())
}

/// Targets whose calls move value the facts would not show as transfers:
/// a call pattern naming one would let a transfer rule pass them unmetered.
const VALUE_CARRIERS: [&str; 3] =
    [crate::facts::SOLANA_SYSTEM_PROGRAM, crate::facts::COSMOS_MSG_SEND, "TransferObjects"];

fn validate_call(call: &CallPattern) -> Result<(), String> {
    if call.to.is_empty() || call.to.trim() != call.to {
        return Err("a call pattern needs the contract's address in `to`".into());
    }
    if VALUE_CARRIERS.contains(&call.to.as_str()) {
        return Err(format!(
            "calls to {:?} move value that transfer limits do not see; they cannot be allowed as calls",
            call.to
        ));
    }
    if let Some(selector) = &call.selector {
        parse_selector(selector)?;
    }
    Ok(())
}

fn validate_groups(groups: &[Group], members: &[Member]) -> Result<(), String> {
    if groups.is_empty() {
        return Err("`require` names no approval group; use \"deny\" to refuse, or say who approves".into());
    }
    for group in groups {
        if group.count == 0 {
            return Err("an approval group needs a count of at least 1".into());
        }
        if group.roles.is_empty() && group.members.is_empty() {
            return Err("an approval group names no role and no member".into());
        }
        if group.roles.contains(&Role::Viewer) {
            return Err("viewers never approve; remove `viewer` from the group's roles".into());
        }
        for name in &group.members {
            match members.iter().find(|member| member.name == *name) {
                None => return Err(format!("no member {name}; add them first, or fix the name")),
                Some(member) if !member.role.may_approve() => {
                    return Err(format!("{name} is a viewer and can never approve"))
                }
                Some(_) => {}
            }
        }
    }
    let approvers: Vec<&Member> = members.iter().filter(|member| member.role.may_approve()).collect();
    let missing = shortfall(groups, &approvers);
    if missing.is_empty() {
        return Ok(());
    }
    let detail = missing.iter().map(|(group, more)| format!("{more} short for {}", who(group))).collect::<Vec<_>>();
    Err(format!(
        "its approval groups cannot be satisfied by the current members, each counting for one group ({}); lower the \
         counts or add members first",
        detail.join("; ")
    ))
}

/// Whether `member` may count toward `group`.
fn qualifies(group: &Group, member: &Member) -> bool {
    member.role.may_approve() && (group.roles.contains(&member.role) || group.members.contains(&member.name))
}

/// Who a group asks for, for messages.
fn who(group: &Group) -> String {
    let mut parts = Vec::new();
    if !group.roles.is_empty() {
        let roles: Vec<&str> = group.roles.iter().map(|role| role.name()).collect();
        parts.push(format!("role {}", roles.join(" or ")));
    }
    if !group.members.is_empty() {
        let names: Vec<&str> = group.members.iter().map(MemberName::as_str).collect();
        parts.push(format!("member {}", names.join(" or ")));
    }
    format!("{} (group of {})", parts.join(", or "), group.count)
}

/// Each group lacking approvals, and how many, when `approvers` (distinct)
/// are assigned to groups so that as many approvals count as possible, each
/// approver in at most one group (a bipartite b-matching by augmenting paths).
fn shortfall<'g>(groups: &'g [Group], approvers: &[&Member]) -> Vec<(&'g Group, u64)> {
    // Groups fewest approvers qualify for are tried first, so a shortfall is
    // reported where another approver can still fill it.
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&index| {
        groups.get(index).map_or(0, |group| approvers.iter().filter(|member| qualifies(group, member)).count())
    });
    let mut matching = Matching { groups, approvers, order, holders: vec![Vec::new(); groups.len()] };
    for approver in 0..approvers.len() {
        let mut seen = vec![false; groups.len()];
        matching.augment(approver, &mut seen);
    }
    groups
        .iter()
        .zip(&matching.holders)
        .filter_map(|(group, holders)| {
            let missing = u64::from(group.count).saturating_sub(holders.len() as u64);
            (missing > 0).then_some((group, missing))
        })
        .collect()
}

struct Matching<'a> {
    groups: &'a [Group],
    approvers: &'a [&'a Member],
    /// The order groups are tried in.
    order: Vec<usize>,
    /// For each group, the approvers counted toward it.
    holders: Vec<Vec<usize>>,
}

impl Matching<'_> {
    /// Counts `approver` toward some group, moving others along if needed.
    fn augment(&mut self, approver: usize, seen: &mut [bool]) -> bool {
        let (groups, approvers) = (self.groups, self.approvers);
        let Some(member) = approvers.get(approver) else { return false };
        for index in self.order.clone() {
            let Some(group) = groups.get(index) else { continue };
            match seen.get_mut(index) {
                Some(visited) if !*visited && qualifies(group, member) => *visited = true,
                _ => continue,
            }
            let current = self.holders.get(index).cloned().unwrap_or_default();
            if (current.len() as u64) < u64::from(group.count) {
                if let Some(holders) = self.holders.get_mut(index) {
                    holders.push(approver);
                }
                return true;
            }
            for (position, other) in current.iter().enumerate() {
                if self.augment(*other, seen) {
                    if let Some(slot) = self.holders.get_mut(index).and_then(|holders| holders.get_mut(position)) {
                        *slot = approver;
                    }
                    return true;
                }
            }
        }
        false
    }
}

/// Every transfer of known, non-zero amount of a transaction, to record.
fn spends(facts: &Facts) -> Vec<Spend> {
    let (Some(Signing::Transaction { transfers, .. }), Some(key_id), Some(chain)) =
        (&facts.signing, &facts.key_id, facts.chain)
    else {
        return Vec::new();
    };
    transfers
        .iter()
        .filter_map(|transfer| match transfer.amount {
            Some(amount) if amount > 0 => {
                Some(Spend { key_id: key_id.clone(), chain, asset: transfer.asset.clone(), amount })
            }
            _ => None,
        })
        .collect()
}

/// The request in a few words, for refusals.
fn describe(facts: &Facts) -> String {
    let what = match &facts.signing {
        None => facts.operation.clone(),
        Some(Signing::Raw) => "signing raw bytes or a raw digest".into(),
        Some(Signing::Message { format, .. }) => format!("signing a {format} message"),
        Some(Signing::Transaction { transfers, calls }) => {
            format!("signing a transaction with {} transfer(s) and {} contract call(s)", transfers.len(), calls.len())
        }
    };
    let mut text = what;
    if let Some(chain) = facts.chain {
        text.push_str(&format!(" on {chain}"));
    }
    if let Some(network) = &facts.network {
        text.push_str(&format!(" (network {network})"));
    }
    if let Some(key) = &facts.key_id {
        text.push_str(&format!(" with key {key:?}"));
    }
    text
}
