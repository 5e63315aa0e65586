//! The policy evaluator: rules in order, limits against a spend ledger,
//! allowlists, calls, EIP-712 domains, approval groups, validation, the JSON
//! form, and facts decoded from real transactions.

use std::cell::RefCell;

use shardvault_chains::{sample, Chain, KeyType, MessageFormat, Unsigned};
use shardvault_governance::{
    Action, Asset, Call, Decision, Error, Facts, Group, Identity, Ledger, Member, Policy, Role, Signing, Spend,
    Transfer,
};

const NOW: u64 = 1_767_225_600;
const DAY: u64 = 86_400;
const EXCHANGE: &str = "0x1111111111111111111111111111111111111111";
const ROUTER: &str = "0x2222222222222222222222222222222222222222";
const USDC: &str = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48";
const G: &str = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";

fn member(name: &str, role: Role) -> Member {
    Member { name: name.parse().unwrap(), role, public_key: Identity::generate(name).unwrap().member_key().unwrap() }
}

fn policy(json: &str) -> Policy {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// A spend ledger holding fixed totals, recording what it was asked.
#[derive(Default)]
struct FakeLedger {
    spent: Vec<(Asset, u128)>,
    asked: RefCell<Vec<(String, Chain, Asset, u64)>>,
    broken: bool,
}

impl Ledger for FakeLedger {
    fn spent(&self, key_id: &str, chain: Chain, asset: &Asset, since: u64) -> Result<u128, String> {
        self.asked.borrow_mut().push((key_id.to_string(), chain, asset.clone(), since));
        if self.broken {
            return Err("database is locked".into());
        }
        Ok(self.spent.iter().filter(|(a, _)| a == asset).map(|(_, n)| n).sum())
    }
}

fn no_ledger() -> FakeLedger {
    FakeLedger::default()
}

fn tx_facts(transfers: Vec<Transfer>, calls: Vec<Call>) -> Facts {
    Facts {
        operation: "sign".into(),
        key_id: Some("treasury".into()),
        chain: Some(Chain::Ethereum),
        network: Some("1".into()),
        signing: Some(Signing::Transaction { transfers, calls }),
    }
}

fn native(to: &str, amount: Option<u128>) -> Transfer {
    Transfer { asset: Asset::Native, to: Some(to.into()), amount }
}

fn rule_of(policy: &Policy, facts: &Facts, ledger: &dyn Ledger) -> String {
    policy.evaluate(facts, ledger, NOW).unwrap_or_else(|e| panic!("{e}")).rule
}

fn denied_by(result: Result<Decision, Error>) -> Option<String> {
    match result {
        Err(Error::Denied { rule, .. }) => rule,
        other => panic!("expected a denial, got {other:?}"),
    }
}

// ---------------------------------------------------------------- default

#[test]
fn default_policy_denies_raw_and_asks_one_owner_or_admin_for_the_rest() {
    let policy = Policy::default_for_new_organisation();
    let ledger = no_ledger();
    assert_eq!(denied_by(policy.evaluate(&Facts::raw("k"), &ledger, NOW)).as_deref(), Some("raw signing denied"));
    let error = policy.evaluate(&Facts::raw("k"), &ledger, NOW).unwrap_err().to_string();
    assert!(error.contains("raw signing denied") && error.contains("change the policy"), "{error}");

    let owner = member("olivia", Role::Owner);
    let admin = member("adam", Role::Admin);
    let plain = member("mia", Role::Member);
    let api = member("bot", Role::Api);
    let viewer = member("vera", Role::Viewer);
    for facts in [
        Facts::operation("create_key", Some("k")).unwrap(),
        Facts::operation("add_member", None).unwrap(),
        Facts::transaction("k", evm_sample()).unwrap(),
        Facts::message("k", Chain::Ethereum, &MessageFormat::Eip191, b"hello").unwrap(),
    ] {
        let decision = policy.evaluate(&facts, &ledger, NOW).unwrap();
        assert_eq!((decision.rule_index, decision.rule.as_str()), (1, "one owner or admin"));
        decision.check(&[&owner]).unwrap();
        decision.check(&[&admin]).unwrap();
        for nobody in [&plain, &api, &viewer] {
            let error = decision.check(&[nobody]).unwrap_err();
            assert!(matches!(error, Error::NotApproved { .. }), "{error}");
            assert!(error.to_string().contains("1 more approval(s) from role owner or admin"), "{error}");
        }
        decision.check(&[]).unwrap_err();
    }
    policy.validate(&[owner]).unwrap();
}

/// A viewer never counts, even where a rule names the viewer role or them.
#[test]
fn viewers_never_count() {
    let viewer = member("vera", Role::Viewer);
    let decision = Decision {
        rule_index: 0,
        rule: "r".into(),
        groups: vec![Group { count: 1, roles: vec![Role::Viewer], members: vec!["vera".parse().unwrap()] }],
        spends: Vec::new(),
    };
    decision.check(&[&viewer]).unwrap_err();
    let policy = policy(
        r#"{"version":1,"rules":[{"name":"r","when":{},"action":{"require":[{"count":1,"roles":["viewer"]}]}}]}"#,
    );
    let error = policy.validate(&[member("o", Role::Owner), viewer.clone()]).unwrap_err().to_string();
    assert!(error.contains("viewers never approve"), "{error}");
    let policy = self::policy(
        r#"{"version":1,"rules":[{"name":"r","when":{},"action":{"require":[{"count":1,"members":["vera"]}]}}]}"#,
    );
    let error = policy.validate(&[member("o", Role::Owner), viewer]).unwrap_err().to_string();
    assert!(error.contains("vera is a viewer"), "{error}");
}

#[test]
fn facts_for_sign_come_only_from_the_payload() {
    assert!(matches!(Facts::operation("sign", Some("k")), Err(Error::Decode(_))));
    assert!(matches!(Facts::operation("launch_missiles", None), Err(Error::Decode(_))));
}

// ---------------------------------------------------------------- ordering and limits

const LIMITS: &str = r#"{"version":1,"rules":[
  {"name":"small","when":{"assets":["native"],"max_amount":"100","period":{"window":"24h","max":"150"}},
   "action":{"require":[{"count":1,"roles":["admin"]}]}},
  {"name":"any transaction","when":{"signing":["transaction"]},
   "action":{"require":[{"count":2,"roles":["admin"]}]}},
  {"name":"everything else","when":{},"action":"deny"}]}"#;

#[test]
fn first_matching_rule_wins_in_order() {
    let policy = policy(LIMITS);
    let ledger = no_ledger();
    // Both "small" and "any transaction" hold; the first wins.
    let decision = policy.evaluate(&tx_facts(vec![native(EXCHANGE, Some(1))], vec![]), &ledger, NOW).unwrap();
    assert_eq!((decision.rule_index, decision.rule.as_str()), (0, "small"));
    // A non-transaction skips both and meets the deny.
    let facts = Facts::operation("create_key", Some("k")).unwrap();
    assert_eq!(denied_by(policy.evaluate(&facts, &ledger, NOW)).as_deref(), Some("everything else"));
    // No rule at all: denied naming no rule.
    let empty = self::policy(r#"{"version":1,"rules":[]}"#);
    assert_eq!(denied_by(empty.evaluate(&facts, &ledger, NOW)), None);
    let error = empty.evaluate(&facts, &ledger, NOW).unwrap_err().to_string();
    assert!(error.contains("no policy rule matches") && error.contains("create_key"), "{error}");
}

#[test]
fn per_transaction_limit_matches_at_the_limit_and_one_more_falls_through() {
    let policy = policy(LIMITS);
    let ledger = no_ledger();
    let at = tx_facts(vec![native(EXCHANGE, Some(100))], vec![]);
    assert_eq!(rule_of(&policy, &at, &ledger), "small");
    let over = tx_facts(vec![native(EXCHANGE, Some(101))], vec![]);
    assert_eq!(rule_of(&policy, &over, &ledger), "any transaction");
    // Every transfer counts, not just the first.
    let split = tx_facts(vec![native(EXCHANGE, Some(1)), native(EXCHANGE, Some(101))], vec![]);
    assert_eq!(rule_of(&policy, &split, &ledger), "any transaction");
}

#[test]
fn period_limit_adds_the_ledger_to_this_transaction() {
    let policy = policy(LIMITS);
    let ledger =
        FakeLedger { spent: vec![(Asset::Native, 60), (Asset::Token(USDC.into()), 1000)], ..FakeLedger::default() };
    // 60 spent + 90 = 150: exactly at the limit.
    let at = tx_facts(vec![native(EXCHANGE, Some(50)), native(EXCHANGE, Some(40))], vec![]);
    assert_eq!(rule_of(&policy, &at, &ledger), "small");
    assert_eq!(
        ledger.asked.borrow().last().unwrap(),
        &("treasury".to_string(), Chain::Ethereum, Asset::Native, NOW - DAY)
    );
    // 60 + 91 > 150: falls through to the 2-admin rule.
    let over = tx_facts(vec![native(EXCHANGE, Some(91))], vec![]);
    assert_eq!(rule_of(&policy, &over, &ledger), "any transaction");
    // A ledger that cannot be read fails the evaluation, never counts as 0.
    let broken = FakeLedger { broken: true, ..FakeLedger::default() };
    let error = policy.evaluate(&at, &broken, NOW).unwrap_err();
    assert!(matches!(error, Error::Ledger(_)) && error.to_string().contains("retry"), "{error}");
}

/// A 7-day window per asset: the ledger is asked for the token, not the coin.
#[test]
fn period_limits_count_each_asset_on_its_own() {
    let json = format!(
        r#"{{"version":1,"rules":[{{"name":"usdc weekly","when":{{"assets":["{}"],"period":{{"window":"7d","max":"1000"}}}},
          "action":{{"require":[{{"count":1,"roles":["admin"]}}]}}}}]}}"#,
        USDC.to_lowercase()
    );
    let policy = policy(&json);
    let ledger =
        FakeLedger { spent: vec![(Asset::Token(USDC.into()), 999), (Asset::Native, 5)], ..FakeLedger::default() };
    let token = |amount| Transfer { asset: Asset::Token(USDC.into()), to: Some(EXCHANGE.into()), amount: Some(amount) };
    assert_eq!(rule_of(&policy, &tx_facts(vec![token(1)], vec![]), &ledger), "usdc weekly");
    assert_eq!(ledger.asked.borrow().last().unwrap().3, NOW - 7 * DAY);
    assert_eq!(denied_by(policy.evaluate(&tx_facts(vec![token(2)], vec![]), &ledger, NOW)), None);
    // Native is not among the rule's assets: the rule does not hold.
    assert_eq!(denied_by(policy.evaluate(&tx_facts(vec![native(EXCHANGE, Some(1))], vec![]), &ledger, NOW)), None);
}

#[test]
fn an_unreadable_amount_under_a_limit_is_denied_not_skipped() {
    let policy = policy(LIMITS);
    let ledger = no_ledger();
    let unknown = tx_facts(vec![native(EXCHANGE, Some(1)), native(EXCHANGE, None)], vec![]);
    // The 2-admin rule below would take it; it must not get the chance.
    let result = policy.evaluate(&unknown, &ledger, NOW);
    assert_eq!(denied_by(result).as_deref(), Some("small"));
    let error = policy.evaluate(&unknown, &ledger, NOW).unwrap_err().to_string();
    assert!(error.contains("could not be decoded"), "{error}");
    // A rule with no value condition is not concerned.
    let any = self::policy(
        r#"{"version":1,"rules":[{"name":"any","when":{"assets":["native"]},"action":{"require":[{"count":1,"roles":["admin"]}]}}]}"#,
    );
    assert_eq!(rule_of(&any, &unknown, &ledger), "any");
}

#[test]
fn spends_list_every_known_transfer_whichever_rule_matched() {
    let policy = policy(LIMITS);
    let token = Transfer { asset: Asset::Token(USDC.into()), to: Some(EXCHANGE.into()), amount: Some(7) };
    let facts = tx_facts(vec![native(EXCHANGE, Some(500)), token, native(EXCHANGE, Some(0))], vec![]);
    let decision = policy.evaluate(&facts, &no_ledger(), NOW).unwrap();
    assert_eq!(decision.rule, "any transaction");
    let spend = |asset, amount| Spend { key_id: "treasury".into(), chain: Chain::Ethereum, asset, amount };
    assert_eq!(decision.spends, vec![spend(Asset::Native, 500), spend(Asset::Token(USDC.into()), 7)]);
    let decision = Policy::default_for_new_organisation()
        .evaluate(&Facts::operation("refresh", Some("k")).unwrap(), &no_ledger(), NOW)
        .unwrap();
    assert!(decision.spends.is_empty());
}

// ---------------------------------------------------------------- destinations, calls, domains

fn allowlist_policy() -> Policy {
    policy(&format!(
        r#"{{"version":1,"address_books":{{"exchanges":["{}"]}},"rules":[
          {{"name":"top-up","when":{{"assets":["native"],"destinations":["exchanges"]}},
           "action":{{"require":[{{"count":1,"roles":["member"]}}]}}}}]}}"#,
        EXCHANGE.to_uppercase().replace("0X", "0x")
    ))
}

#[test]
fn destinations_must_all_be_in_the_books() {
    let policy = allowlist_policy();
    let ledger = no_ledger();
    // Case-insensitive for 0x hex.
    assert_eq!(rule_of(&policy, &tx_facts(vec![native(EXCHANGE, Some(5))], vec![]), &ledger), "top-up");
    let elsewhere = tx_facts(vec![native(EXCHANGE, Some(5)), native(ROUTER, Some(5))], vec![]);
    assert_eq!(denied_by(policy.evaluate(&elsewhere, &ledger, NOW)), None);
    let nowhere = tx_facts(vec![Transfer { asset: Asset::Native, to: None, amount: Some(5) }], vec![]);
    assert_eq!(denied_by(policy.evaluate(&nowhere, &ledger, NOW)), None);
    // Transaction conditions never hold for a message or another operation.
    let message = Facts::message("k", Chain::Ethereum, &MessageFormat::Eip191, b"hi").unwrap();
    assert_eq!(denied_by(policy.evaluate(&message, &ledger, NOW)), None);
}

#[test]
fn contract_calls_need_a_matching_pattern() {
    let policy = policy(&format!(
        r#"{{"version":1,"rules":[
          {{"name":"swaps","when":{{"assets":["native"],"max_amount":"1000","calls":[{{"to":"{ROUTER}","selector":"0x38ED1739"}}]}},
           "action":{{"require":[{{"count":1,"roles":["api"]}}]}}}},
          {{"name":"transfers","when":{{"assets":["native"],"max_amount":"1000"}},
           "action":{{"require":[{{"count":1,"roles":["member"]}}]}}}}]}}"#
    ));
    let ledger = no_ledger();
    let swap = Call { to: ROUTER.to_uppercase().replace("0X", "0x"), selector: Some([0x38, 0xed, 0x17, 0x39]) };
    let facts = tx_facts(vec![native(ROUTER, Some(10))], vec![swap.clone()]);
    assert_eq!(rule_of(&policy, &facts, &ledger), "swaps");
    // Another selector on the router, or the right selector elsewhere: no.
    for call in [
        Call { selector: Some([0x09, 0x5e, 0xa7, 0xb3]), ..swap.clone() },
        Call { to: EXCHANGE.into(), ..swap.clone() },
        Call { selector: None, ..swap.clone() },
    ] {
        assert_eq!(denied_by(policy.evaluate(&tx_facts(vec![], vec![call]), &ledger, NOW)), None);
    }
    // A transfer rule without `calls` does not cover a transaction that makes
    // one (an approve moves no value a transfer shows) ...
    let approve = Call { to: USDC.into(), selector: Some([0x09, 0x5e, 0xa7, 0xb3]) };
    assert_eq!(denied_by(policy.evaluate(&tx_facts(vec![], vec![approve]), &ledger, NOW)), None);
    // ... and a plain transfer still meets it.
    assert_eq!(rule_of(&policy, &tx_facts(vec![native(EXCHANGE, Some(10))], vec![]), &ledger), "transfers");
}

const TYPED_DATA: &str = r#"{"types":{"EIP712Domain":[{"name":"name","type":"string"},{"name":"version","type":"string"},{"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"}],"Person":[{"name":"name","type":"string"},{"name":"wallet","type":"address"}],"Mail":[{"name":"from","type":"Person"},{"name":"to","type":"Person"},{"name":"contents","type":"string"}]},"primaryType":"Mail","domain":{"name":"Ether Mail","version":"1","chainId":1,"verifyingContract":"0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"},"message":{"from":{"name":"Cow","wallet":"0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},"to":{"name":"Bob","wallet":"0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},"contents":"Hello, Bob!"}}"#;

#[test]
fn eip712_domain_must_equal_the_typed_data_domain() {
    let rule = |domain: &str| {
        policy(&format!(
            r#"{{"version":1,"rules":[{{"name":"mail","when":{{"signing":["eip712"],"eip712_domain":{domain}}},
              "action":{{"require":[{{"count":1,"roles":["api"]}}]}}}}]}}"#
        ))
    };
    let facts = Facts::message("k", Chain::Ethereum, &MessageFormat::Eip712, TYPED_DATA.as_bytes()).unwrap();
    let Some(Signing::Message { format, eip712_domain: Some(seen) }) = &facts.signing else { panic!("{facts:?}") };
    assert_eq!(format, "eip712-typed-data");
    assert_eq!(seen.name.as_deref(), Some("Ether Mail"));
    assert_eq!(seen.chain_id.as_deref(), Some("1"));
    let ledger = no_ledger();
    for matching in [
        r#"{"name":"Ether Mail"}"#,
        r#"{"name":"Ether Mail","chain_id":1,"verifying_contract":"0xcccccccccccccccccccccccccccccccccccccccc"}"#,
    ] {
        assert_eq!(rule_of(&rule(matching), &facts, &ledger), "mail", "{matching}");
    }
    for mismatch in [
        r#"{"name":"Ether Mail2"}"#,
        r#"{"chain_id":137}"#,
        r#"{"verifying_contract":"0xdddddddddddddddddddddddddddddddddddddddd"}"#,
    ] {
        assert_eq!(denied_by(rule(mismatch).evaluate(&facts, &ledger, NOW)), None, "{mismatch}");
    }
    // Another format, or typed data without the pinned field, never matches.
    let personal = Facts::message("k", Chain::Ethereum, &MessageFormat::Eip191, TYPED_DATA.as_bytes()).unwrap();
    assert_eq!(denied_by(rule(r#"{"name":"Ether Mail"}"#).evaluate(&personal, &ledger, NOW)), None);
    let bare = TYPED_DATA.replace(r#""name":"Ether Mail","#, "").replace(r#"{"name":"name","type":"string"},"#, "");
    let bare = Facts::message("k", Chain::Ethereum, &MessageFormat::Eip712, bare.as_bytes()).unwrap();
    assert_eq!(denied_by(rule(r#"{"name":"Ether Mail"}"#).evaluate(&bare, &ledger, NOW)), None);
    // Typed data the signer could not hash is refused before any rule.
    assert!(matches!(Facts::message("k", Chain::Ethereum, &MessageFormat::Eip712, b"{}"), Err(Error::Decode(_))));
    // A format of another chain is refused.
    assert!(Facts::message("k", Chain::Solana, &MessageFormat::Eip191, b"hi").is_err());
}

// ---------------------------------------------------------------- groups

fn treasury_decision() -> Decision {
    let policy = policy(
        r#"{"version":1,"rules":[{"name":"big","when":{},"action":{"require":[
          {"count":2,"roles":["admin"]},{"count":1,"members":["sam"]}]}}]}"#,
    );
    policy.evaluate(&Facts::operation("refresh", Some("k")).unwrap(), &no_ledger(), NOW).unwrap()
}

#[test]
fn every_group_must_be_satisfied() {
    let decision = treasury_decision();
    let (a1, a2, sam) = (member("a1", Role::Admin), member("a2", Role::Admin), member("sam", Role::Member));
    decision.check(&[&a1, &a2, &sam]).unwrap();
    decision.check(&[&sam, &a2, &a1]).unwrap();
    let error = decision.check(&[&a1, &a2]).unwrap_err().to_string();
    assert!(error.contains("1 more approval(s) from member sam"), "{error}");
    let error = decision.check(&[&a1, &sam]).unwrap_err().to_string();
    assert!(error.contains("1 more approval(s) from role admin"), "{error}");
    // The same member twice counts once.
    decision.check(&[&a1, &a1, &sam]).unwrap_err();
}

/// Each approver counts toward one group only, and the assignment is the
/// best one whatever the order of approvals.
#[test]
fn one_approver_counts_for_one_group() {
    let decision = treasury_decision();
    let sam_admin = member("sam", Role::Admin);
    let a1 = member("a1", Role::Admin);
    let a2 = member("a2", Role::Admin);
    // sam is an admin and named: sam + a1 is two people, not three approvals.
    let error = decision.check(&[&sam_admin, &a1]).unwrap_err().to_string();
    assert!(error.contains("1 more approval(s) from role admin"), "{error}");
    // sam counted first as an admin must be moved to the named group.
    decision.check(&[&sam_admin, &a1, &a2]).unwrap();
    // Named members qualify by name whatever their role (an api member too).
    let bot = member("sam", Role::Api);
    decision.check(&[&a1, &bot, &a2]).unwrap();
}

// ---------------------------------------------------------------- validation

#[test]
fn validate_refuses_impossible_and_malformed_policies() {
    let members =
        [member("o1", Role::Owner), member("a1", Role::Admin), member("sam", Role::Admin), member("v", Role::Viewer)];
    let group =
        |g: &str| format!(r#"{{"version":1,"rules":[{{"name":"r","when":{{}},"action":{{"require":[{g}]}}}}]}}"#);
    let when = |w: &str| {
        format!(
            r#"{{"version":1,"address_books":{{"ex":["{EXCHANGE}"]}},"rules":[{{"name":"r","when":{w},"action":{{"require":[{{"count":1,"roles":["owner"]}}]}}}}]}}"#
        )
    };
    policy(&group(r#"{"count":2,"roles":["admin"]},{"count":1,"roles":["owner"]}"#)).validate(&members).unwrap();
    policy(&when(r#"{"assets":["native"],"max_amount":"5","period":{"window":"30d","max":"9"},"destinations":["ex"],"calls":[{"to":"0xab","selector":"0xa9059cbb"}],"signing":["transaction","eip712","bitcoin-signed-message"],"chains":["ethereum","cosmos"],"networks":["1","cosmoshub-4"]}"#))
        .validate(&members)
        .unwrap();
    for (json, expect) in [
        (group(r#"{"count":3,"roles":["admin"]}"#), "cannot be satisfied"),
        // Each group alone is possible; together they need 3 of the 2 admins.
        (group(r#"{"count":2,"roles":["admin"]},{"count":1,"members":["sam"]}"#), "cannot be satisfied"),
        (group(r#"{"count":0,"roles":["admin"]}"#), "at least 1"),
        (group(r#"{"count":1}"#), "names no role"),
        (group(r#"{"count":1,"members":["ghost"]}"#), "no member ghost"),
        (group(r#"{"count":2,"roles":["owner","viewer"]}"#), "viewers never approve"),
        (group(""), "names no approval group"),
        (group(r#"{"count":1,"roles":["owner"]}"#).replace(r#""version":1"#, r#""version":2"#), "version 2"),
        (when(r#"{"destinations":["nope"]}"#), "no address book \"nope\""),
        (when(r#"{"assets":["native"],"period":{"window":"1w","max":"5"}}"#), "window"),
        (when(r#"{"assets":["native"],"period":{"window":"400d","max":"5"}}"#), "window"),
        (when(r#"{"assets":["native"],"max_amount":"1.5"}"#), "amount"),
        (when(r#"{"assets":["native"],"max_amount":"-1"}"#), "amount"),
        (when(r#"{"assets":["native"],"max_amount":"999999999999999999999999999999999999999999"}"#), "too large"),
        (when(r#"{"max_amount":"5"}"#), "need `assets`"),
        (when(r#"{"calls":[{"to":"0xab","selector":"0xa9059c"}]}"#), "selector"),
        (when(r#"{"calls":[{"to":"11111111111111111111111111111111"}]}"#), "move value"),
        (when(r#"{"chains":["polygon"]}"#), "networks"),
        (when(r#"{"chains":["dogecoin"]}"#), "unknown chain"),
        // Networks only where the signed bytes commit to one.
        (when(r#"{"networks":["1"]}"#), "networks needs chains"),
        (when(r#"{"chains":["ethereum","solana"],"networks":["1","devnet"]}"#), "networks needs chains"),
        (when(r#"{"chains":["bitcoin"],"networks":["testnet"]}"#), "networks needs chains"),
        (when(r#"{"signing":["eip713"]}"#), "signing"),
        (when(r#"{"operations":["sing"]}"#), "unknown operation"),
        (when(r#"{"eip712_domain":{}}"#), "pins nothing"),
    ] {
        let error = policy(&json).validate(&members).unwrap_err();
        assert!(matches!(error, Error::Policy(_)), "{error}");
        assert!(error.to_string().contains(expect), "{json}: {error}");
    }
    let twice =
        r#"{"version":1,"rules":[{"name":"r","when":{},"action":"deny"},{"name":"r","when":{},"action":"deny"}]}"#;
    assert!(policy(twice).validate(&members).unwrap_err().to_string().contains("unique"));
}

/// An unchecked malformed condition fails the evaluation instead of being skipped.
#[test]
fn evaluate_fails_closed_on_a_malformed_condition() {
    let policy = policy(
        r#"{"version":1,"rules":[{"name":"r","when":{"assets":["native"],"max_amount":"lots"},"action":"deny"},{"name":"all","when":{},"action":{"require":[{"count":1,"roles":["owner"]}]}}]}"#,
    );
    let error = policy.evaluate(&tx_facts(vec![native(EXCHANGE, Some(1))], vec![]), &no_ledger(), NOW).unwrap_err();
    assert!(matches!(error, Error::Policy(_)), "{error}");
    // A rule asking for no approval never lets a request through.
    for require in ["[]", r#"[{"count":0,"roles":["owner"]}]"#] {
        let policy = self::policy(&format!(
            r#"{{"version":1,"rules":[{{"name":"free","when":{{}},"action":{{"require":{require}}}}}]}}"#
        ));
        let facts = Facts::operation("refresh", Some("k")).unwrap();
        assert!(matches!(policy.evaluate(&facts, &no_ledger(), NOW), Err(Error::Policy(_))), "{require}");
    }
}

// ---------------------------------------------------------------- JSON form

#[test]
fn json_form_is_short_and_deterministic() {
    let default = Policy::default_for_new_organisation();
    let text = serde_json::to_string(&default).unwrap();
    assert_eq!(
        text,
        r#"{"version":1,"rules":[{"name":"raw signing denied","when":{"signing":["raw"]},"action":"deny"},{"name":"one owner or admin","when":{},"action":{"require":[{"count":1,"roles":["owner","admin"],"members":[]}]}}]}"#
    );
    assert_eq!(serde_json::from_str::<Policy>(&text).unwrap(), default);
    // Written long or short, a policy serialises to one form, which reads back to itself.
    let long = r#"{"version":1,"change_delay_secs":0,"address_books":{"b":["x"],"a":["y"]},"rules":[{"name":"r","when":{"operations":[],"keys":[],"max_amount":null,"calls":[{"to":"0xab","selector":null}]},"action":{"require":[{"count":1,"roles":["owner"],"members":[]}]}}]}"#;
    let short = r#"{"version":1,"address_books":{"a":["y"],"b":["x"]},"rules":[{"name":"r","when":{"calls":[{"to":"0xab"}]},"action":{"require":[{"count":1,"roles":["owner"]}]}}]}"#;
    let form = serde_json::to_string(&policy(long)).unwrap();
    assert_eq!(form, serde_json::to_string(&policy(short)).unwrap());
    assert_eq!(serde_json::to_string(&policy(&form)).unwrap(), form);
    assert!(form.starts_with(r#"{"version":1,"address_books":{"a":["y"],"b":["x"]}"#), "{form}");
    let delayed = policy(r#"{"version":1,"change_delay_secs":3600,"rules":[]}"#);
    assert_eq!(serde_json::to_string(&delayed).unwrap(), r#"{"version":1,"change_delay_secs":3600,"rules":[]}"#);
    let scheduled = policy(r#"{"version":1,"refresh_every_secs":2592000,"change_delay_secs":60,"rules":[]}"#);
    assert_eq!(
        serde_json::to_string(&scheduled).unwrap(),
        r#"{"version":1,"change_delay_secs":60,"refresh_every_secs":2592000,"rules":[]}"#
    );
    scheduled.validate(&[]).unwrap();
    // A refresh every few seconds would keep every node refreshing.
    let error = policy(r#"{"version":1,"refresh_every_secs":5,"rules":[]}"#).validate(&[]).unwrap_err().to_string();
    assert!(error.contains("refresh at most every 10 seconds"), "{error}");
    // Unknown fields are refused everywhere, and Action has exactly two forms.
    for bad in [
        r#"{"version":1,"rules":[],"extra":1}"#,
        r#"{"version":1,"rules":[{"name":"r","when":{"maxAmount":"1"},"action":"deny"}]}"#,
        r#"{"version":1,"rules":[{"name":"r","when":{},"action":"allow"}]}"#,
        r#"{"version":1,"rules":[{"name":"r","when":{},"action":{"require":[{"count":1,"quorum":2}]}}]}"#,
    ] {
        assert!(serde_json::from_str::<Policy>(bad).is_err(), "{bad}");
    }
    assert_eq!(
        policy(r#"{"version":1,"rules":[{"name":"r","when":{},"action":"deny"}]}"#).rules[0].action,
        Action::Deny
    );
}

/// The examples of docs/POLICY.md parse, validate and serialise to themselves.
#[test]
fn documented_examples_are_valid_policies() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/POLICY.md")).unwrap();
    let members = [
        member("olivia", Role::Owner),
        member("adam", Role::Admin),
        member("alma", Role::Admin),
        member("sam", Role::Member),
        member("mia", Role::Member),
        member("bot", Role::Api),
    ];
    let mut examples = 0;
    for block in doc.split("```json\n").skip(1) {
        let json = block.split("\n```").next().unwrap();
        if !json.starts_with(r#"{"version""#) && !json.starts_with("{\n  \"version\"") {
            continue;
        }
        let parsed: Policy = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}:\n{json}"));
        parsed.validate(&members).unwrap_or_else(|e| panic!("{e}:\n{json}"));
        let form = serde_json::to_string(&parsed).unwrap();
        assert_eq!(serde_json::from_str::<Policy>(&form).unwrap(), parsed);
        examples += 1;
    }
    assert!(examples >= 4, "docs/POLICY.md shows {examples} policies");
}

// ---------------------------------------------------------------- facts from decoded transactions

fn g() -> Vec<u8> {
    hex::decode(G).unwrap()
}

fn evm_sample() -> Unsigned<'static> {
    let sample = sample::transfer(Chain::Ethereum, KeyType::EcdsaSecp256k1, &g()).unwrap();
    Unsigned::Evm { chain_id: 1, preimage: Box::leak(sample.unsigned.into_boxed_slice()) }
}

fn evm_preimage(to: &str, value: alloy_primitives::U256, input: Vec<u8>) -> Vec<u8> {
    use alloy_consensus::SignableTransaction;
    let tx = alloy_consensus::TxEip1559 {
        chain_id: 1,
        nonce: 7,
        gas_limit: 100_000,
        max_fee_per_gas: 30_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: alloy_primitives::TxKind::Call(to.parse().unwrap()),
        value,
        access_list: Default::default(),
        input: input.into(),
    };
    let mut preimage = Vec::new();
    tx.encode_for_signing(&mut preimage);
    preimage
}

fn transaction(facts: &Facts) -> (&[Transfer], &[Call]) {
    match &facts.signing {
        Some(Signing::Transaction { transfers, calls }) => (transfers, calls),
        other => panic!("not a transaction: {other:?}"),
    }
}

#[test]
fn evm_native_transfer_from_the_sample() {
    let facts = Facts::transaction("hot", evm_sample()).unwrap();
    assert_eq!(
        (facts.chain, facts.network.as_deref(), facts.key_id.as_deref()),
        (Some(Chain::Ethereum), Some("1"), Some("hot"))
    );
    let (transfers, calls) = transaction(&facts);
    assert_eq!(transfers, [native("0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf", Some(10_000_000_000_000_000))]);
    assert!(calls.is_empty());
    // The wrong chain id is refused by the decoder, not evaluated.
    let Unsigned::Evm { preimage, .. } = evm_sample() else { unreachable!() };
    assert!(matches!(Facts::transaction("hot", Unsigned::Evm { chain_id: 137, preimage }), Err(Error::Decode(_))));
}

#[test]
fn evm_erc20_transfer_and_contract_calls() {
    let recipient = "0x3333333333333333333333333333333333333333";
    let mut data = hex::decode("a9059cbb000000000000000000000000").unwrap();
    data.extend(hex::decode(&recipient[2..]).unwrap());
    data.extend(alloy_primitives::U256::from(2_500_000u64).to_be_bytes::<32>());
    let preimage = evm_preimage(USDC, alloy_primitives::U256::ZERO, data.clone());
    let facts = Facts::transaction("hot", Unsigned::Evm { chain_id: 1, preimage: &preimage }).unwrap();
    let (transfers, calls) = transaction(&facts);
    assert_eq!(transfers.len(), 1);
    assert!(matches!(&transfers[0].asset, Asset::Token(token) if token.eq_ignore_ascii_case(USDC)));
    assert!(transfers[0].to.as_deref().unwrap().eq_ignore_ascii_case(recipient));
    assert_eq!(transfers[0].amount, Some(2_500_000));
    assert!(calls.is_empty());

    // approve(spender, max): no transfer, one call with its selector.
    let mut approve = hex::decode("095ea7b3000000000000000000000000").unwrap();
    approve.extend(hex::decode(&ROUTER[2..]).unwrap());
    approve.extend([0xff; 32]);
    let preimage = evm_preimage(USDC, alloy_primitives::U256::ZERO, approve);
    let facts = Facts::transaction("hot", Unsigned::Evm { chain_id: 1, preimage: &preimage }).unwrap();
    let (transfers, calls) = transaction(&facts);
    assert!(transfers.is_empty());
    assert_eq!(calls.len(), 1);
    assert!(calls[0].to.eq_ignore_ascii_case(USDC) && calls[0].selector == Some([0x09, 0x5e, 0xa7, 0xb3]));

    // A swap with value: both the value and the call.
    let preimage = evm_preimage(ROUTER, alloy_primitives::U256::from(5u8), vec![0x38, 0xed, 0x17, 0x39, 0]);
    let facts = Facts::transaction("hot", Unsigned::Evm { chain_id: 1, preimage: &preimage }).unwrap();
    let (transfers, calls) = transaction(&facts);
    assert_eq!((transfers.len(), calls.len()), (1, 1));
    assert_eq!(transfers[0].amount, Some(5));

    // A value beyond u128 is unknown, never 0 — and fails closed under a limit.
    let huge = alloy_primitives::U256::from(u128::MAX) + alloy_primitives::U256::from(1u8);
    let preimage = evm_preimage(EXCHANGE, huge, Vec::new());
    let facts = Facts::transaction("hot", Unsigned::Evm { chain_id: 1, preimage: &preimage }).unwrap();
    assert_eq!(transaction(&facts).0[0].amount, None);
    assert_eq!(denied_by(policy(LIMITS).evaluate(&facts, &no_ledger(), NOW)).as_deref(), Some("small"));
}

/// A PSBT paying 60 000 sat out and 30 000 back to its own input script:
/// one transfer, the change not counted.
#[test]
fn psbt_change_is_not_a_transfer() {
    use bitcoin::hashes::Hash;
    use bitcoin::{absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence, TxIn, TxOut, Txid};
    let own = shardvault_chains::psbt::key_script(KeyType::EcdsaSecp256k1, &g()).unwrap();
    let bip84 = hex::decode("0330d54fd0dd420a6e5f8d3624f5f3482cae350f79d5f0753bf5beef9c2d91af3c").unwrap();
    let destination = shardvault_chains::psbt::key_script(KeyType::EcdsaSecp256k1, &bip84).unwrap();
    let utxo = TxOut { value: Amount::from_sat(100_000), script_pubkey: own.clone() };
    let input = |previous_output| TxIn {
        previous_output,
        script_sig: ScriptBuf::new(),
        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
        witness: bitcoin::Witness::new(),
    };
    let previous = bitcoin::Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![input(OutPoint {
            txid: Txid::from_raw_hash(bitcoin::hashes::sha256d::Hash::hash(b"made up")),
            vout: 0,
        })],
        output: vec![utxo.clone()],
    };
    let tx = bitcoin::Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![input(OutPoint { txid: previous.compute_txid(), vout: 0 })],
        output: vec![
            TxOut { value: Amount::from_sat(60_000), script_pubkey: destination },
            TxOut { value: Amount::from_sat(30_000), script_pubkey: own },
        ],
    };
    let mut psbt = bitcoin::Psbt::from_unsigned_tx(tx).unwrap();
    psbt.inputs[0].witness_utxo = Some(utxo);
    psbt.inputs[0].non_witness_utxo = Some(previous);
    let bytes = psbt.serialize();
    let facts =
        Facts::transaction("btc", Unsigned::Psbt { chain: Chain::Bitcoin, network: "mainnet", psbt: &bytes }).unwrap();
    // A PSBT does not say which network it is for: no network is a fact.
    assert_eq!((facts.chain, facts.network.as_deref()), (Some(Chain::Bitcoin), None));
    let (transfers, calls) = transaction(&facts);
    assert_eq!(transfers, [native("bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu", Some(60_000))]);
    assert!(calls.is_empty());
    // And through a policy: the 30 000 change does not count toward the limit.
    let limit = policy(
        r#"{"version":1,"rules":[{"name":"under 0.0006","when":{"chains":["bitcoin"],"assets":["native"],"max_amount":"60000"},"action":{"require":[{"count":1,"roles":["admin"]}]}}]}"#,
    );
    let decision = limit.evaluate(&facts, &no_ledger(), NOW).unwrap();
    assert_eq!(
        decision.spends,
        [Spend { key_id: "btc".into(), chain: Chain::Bitcoin, asset: Asset::Native, amount: 60_000 }]
    );
    // The sample PSBT (no change) decodes to its one payment.
    let sample = sample::transfer(Chain::Bitcoin, KeyType::EcdsaSecp256k1, &g()).unwrap();
    let facts = Facts::transaction(
        "btc",
        Unsigned::Psbt { chain: Chain::Bitcoin, network: sample.network, psbt: &sample.unsigned },
    )
    .unwrap();
    assert_eq!(transaction(&facts).0, [native("bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu", Some(90_000))]);
}

/// The review's attack: a PSBT with the wallet's 100 000 sat input and an
/// attacker's dust input, paying 99 000 to the attacker's script. An output
/// to an input's script is not change unless every input spends that script,
/// so the payment counts — against the limit and the allowlist.
#[test]
fn a_payment_to_a_foreign_inputs_script_is_a_transfer_not_change() {
    use bitcoin::hashes::Hash;
    use bitcoin::{absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence, TxIn, TxOut, Txid};
    let own = shardvault_chains::psbt::key_script(KeyType::EcdsaSecp256k1, &g()).unwrap();
    let attacker = hex::decode("0330d54fd0dd420a6e5f8d3624f5f3482cae350f79d5f0753bf5beef9c2d91af3c").unwrap();
    let attacker = shardvault_chains::psbt::key_script(KeyType::EcdsaSecp256k1, &attacker).unwrap();
    let input = |previous_output| TxIn {
        previous_output,
        script_sig: ScriptBuf::new(),
        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
        witness: bitcoin::Witness::new(),
    };
    let funding = |script: &ScriptBuf, sats, seed: &[u8]| {
        let utxo = TxOut { value: Amount::from_sat(sats), script_pubkey: script.clone() };
        let previous = bitcoin::Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![input(OutPoint {
                txid: Txid::from_raw_hash(bitcoin::hashes::sha256d::Hash::hash(seed)),
                vout: 0,
            })],
            output: vec![utxo.clone()],
        };
        (utxo, previous)
    };
    let (ours, ours_tx) = funding(&own, 100_000, b"wallet");
    let (dust, dust_tx) = funding(&attacker, 1_000, b"dust");
    let tx = bitcoin::Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![
            input(OutPoint { txid: ours_tx.compute_txid(), vout: 0 }),
            input(OutPoint { txid: dust_tx.compute_txid(), vout: 0 }),
        ],
        output: vec![TxOut { value: Amount::from_sat(99_000), script_pubkey: attacker }],
    };
    let mut psbt = bitcoin::Psbt::from_unsigned_tx(tx).unwrap();
    (psbt.inputs[0].witness_utxo, psbt.inputs[0].non_witness_utxo) = (Some(ours), Some(ours_tx));
    (psbt.inputs[1].witness_utxo, psbt.inputs[1].non_witness_utxo) = (Some(dust), Some(dust_tx));
    let bytes = psbt.serialize();
    let facts =
        Facts::transaction("btc", Unsigned::Psbt { chain: Chain::Bitcoin, network: "mainnet", psbt: &bytes }).unwrap();
    let (transfers, _) = transaction(&facts);
    assert_eq!(transfers, [native("bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu", Some(99_000))]);
    let limit = policy(
        r#"{"version":1,"rules":[{"name":"small","when":{"chains":["bitcoin"],"assets":["native"],"max_amount":"10000"},"action":{"require":[{"count":1,"roles":["admin"]}]}}]}"#,
    );
    assert!(limit.evaluate(&facts, &no_ledger(), NOW).is_err(), "99 000 sat passed a 10 000 limit as change");
}

/// The single-signer samples: a plain transfer each, with its amount.
#[test]
fn single_signer_samples_are_native_transfers() {
    let ed = [0x3b; 32];
    for (chain, key, public_key, amount) in [
        (Chain::Solana, KeyType::Ed25519, ed.to_vec(), 1_000_000u128),
        (Chain::Tron, KeyType::EcdsaSecp256k1, g(), 1_000_000),
        (Chain::Aptos, KeyType::Ed25519, ed.to_vec(), 100_000),
        (Chain::Cosmos, KeyType::EcdsaSecp256k1, g(), 1_500),
    ] {
        let sample = sample::transfer(chain, key, &public_key).unwrap();
        let unsigned = Unsigned::SingleSigner { chain, network: sample.network, bytes: &sample.unsigned };
        let facts = Facts::transaction("k", unsigned).unwrap();
        let (transfers, calls) = transaction(&facts);
        assert_eq!(transfers.len(), 1, "{chain}: {facts:?}");
        assert_eq!((&transfers[0].asset, transfers[0].amount), (&Asset::Native, Some(amount)), "{chain}");
        assert!(transfers[0].to.is_some() && calls.is_empty(), "{chain}: {facts:?}");
        // Only Aptos and Cosmos transactions commit to their network.
        let bound = matches!(chain, Chain::Aptos | Chain::Cosmos);
        assert_eq!(facts.network.as_deref(), bound.then_some(sample.network), "{chain}");
    }
    // Sui: the summary cannot show which objects move, so its commands stay calls.
    let sample = sample::transfer(Chain::Sui, KeyType::Ed25519, &ed).unwrap();
    let facts = Facts::transaction(
        "k",
        Unsigned::SingleSigner { chain: Chain::Sui, network: sample.network, bytes: &sample.unsigned },
    )
    .unwrap();
    let (transfers, calls) = transaction(&facts);
    assert_eq!(transfers[0].amount, Some(1_000_000));
    assert!(!calls.is_empty());
}

/// The treasury example of docs/POLICY.md on real decoded transactions:
/// 10 ETH needs two admins, 12 ETH also the security officer, a third person.
#[test]
fn documented_treasury_on_decoded_transactions() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/POLICY.md")).unwrap();
    let json = doc.split("```json\n").find(|block| block.contains("treasury up to 10 ETH")).unwrap();
    let policy = policy(json.split("\n```").next().unwrap());
    let (adam, alma, sam) = (member("adam", Role::Admin), member("alma", Role::Admin), member("sam", Role::Admin));
    let ether = |n: u64| {
        alloy_primitives::U256::from(n) * alloy_primitives::U256::from(10u64).pow(alloy_primitives::U256::from(18u8))
    };
    let ten = evm_preimage(EXCHANGE, ether(10), Vec::new());
    let facts = Facts::transaction("treasury", Unsigned::Evm { chain_id: 1, preimage: &ten }).unwrap();
    let decision = policy.evaluate(&facts, &no_ledger(), NOW).unwrap();
    assert_eq!(decision.rule, "treasury up to 10 ETH");
    decision.check(&[&adam, &alma]).unwrap();
    let twelve = evm_preimage(EXCHANGE, ether(12), Vec::new());
    let facts = Facts::transaction("treasury", Unsigned::Evm { chain_id: 1, preimage: &twelve }).unwrap();
    let decision = policy.evaluate(&facts, &no_ledger(), NOW).unwrap();
    assert_eq!(decision.rule, "treasury, larger or other");
    decision.check(&[&adam, &alma]).unwrap_err();
    // sam is an admin too, but counts once: sam + adam is not enough.
    decision.check(&[&sam, &adam]).unwrap_err();
    decision.check(&[&sam, &adam, &alma]).unwrap();
    // Raw signing of the treasury key is denied by the first rule.
    assert_eq!(
        denied_by(policy.evaluate(&Facts::raw("treasury"), &no_ledger(), NOW)).as_deref(),
        Some("raw signing denied")
    );
}
