//! The README's tour, run. Every `$ command` of the `sh` blocks under
//! README.md's "A five-minute tour" runs, in order, in a fresh directory,
//! against the devnet the tour itself starts; every command must succeed,
//! and what the README shows under a command must match what it printed.
//! The README cannot drift from the CLI. The blocks under "Backups" and
//! "Recover offline" run next, on the same devnet: officers' keys from
//! `ssh-keygen`, an export the members approve, one share opened by the
//! `age` CLI (found with `jq`), and keys recovered from the package at the
//! addresses the tour's cluster gave out.
//!
//! Hand-written rather than `trycmd`: the tour needs a devnet running in the
//! background between steps, ids learned from one step used in the next,
//! and transactions built for the key the tour just made.
//!
//! What the README may elide (everything else must match exactly):
//! - `…` alone on a line: any number of lines; a block without it at its
//!   start or end must match the first or last lines printed.
//! - In a text line, a word ending in `…` (`6f1c…`, `0x5B2c…`) is any word,
//!   and a name: the same word in a later command stands for the value it
//!   matched (so `key_id: 6f1c…` names the key `--key 6f1c…` uses; a comment
//!   `# → key 9d2e…` names the key a command made). `http://127.0.0.1:PORT`
//!   is a name too. `…` elsewhere is any text, `<…>` any text.
//! - JSON (a block starting with `{`): objects list some of the members
//!   (`…` among them is decoration), a value `…` is any value, `[…]`/`{…}`
//!   any array/object, a string `"0x…"` any string with that prefix.
//! - Commands: `--tx-hex`, `--tx-base64` and `--psbt` values are built here
//!   for the key and chain named (a shown prefix such as `02f86f01…` must be
//!   the prefix of what is built), and so is the file `recover --sign FILE`
//!   reads; `export` sets a variable for later commands; `CMD | jq 'PATH'`
//!   and `curl URL` are done here (no curl needed; other commands run in
//!   `sh`, with ssh-keygen, jq, base64 and age from the PATH).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use regex::Regex;
use serde_json::Value;

mod common;
use common::EXE;

/// One `$ command` and what the README shows under it.
#[derive(Debug, Clone)]
struct Step {
    command: String,
    comment: String,
    expected: Vec<String>,
}

/// Splits `line` into text and its trailing `  # comment`.
fn split_comment(line: &str) -> (String, String) {
    let re = Regex::new(r"^(.*?)\s{2,}#\s?(.*)$").unwrap();
    match re.captures(line) {
        Some(c) => (c[1].trim_end().to_string(), c[2].to_string()),
        None => (line.trim_end().to_string(), String::new()),
    }
}

/// The `sh` blocks with `$ ` commands under the heading `heading`, as steps.
fn tour(readme: &str, heading: &str) -> Vec<Vec<Step>> {
    let start = readme.find(heading).unwrap_or_else(|| panic!("README has no {heading:?}"));
    let section = &readme[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```sh" {
            continue;
        }
        let mut steps: Vec<Step> = Vec::new();
        for line in lines.by_ref() {
            if line.trim() == "```" {
                break;
            }
            if let Some(command) = line.strip_prefix("$ ") {
                let (command, comment) = split_comment(command);
                steps.push(Step { command, comment, expected: Vec::new() });
            } else if let Some(step) = steps.last_mut() {
                step.expected.push(split_comment(line).0);
            }
        }
        if !steps.is_empty() {
            blocks.push(steps);
        }
    }
    blocks
}

/// Names learned so far (`6f1c…` → a key id) and the exported variables.
#[derive(Default, Debug)]
struct State {
    names: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
}

impl State {
    /// `text` with every known name replaced by its value, longest first.
    fn substitute(&self, text: &str) -> String {
        let mut names: Vec<_> = self.names.iter().collect();
        names.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
        let mut text = text.to_string();
        for (name, value) in names {
            text = text.replace(name.as_str(), value);
        }
        text
    }

    /// Binds `name` to `value`, or checks that it already is.
    fn bind(&mut self, name: &str, value: &str) -> Result<(), String> {
        match self.names.get(name) {
            Some(known) if known != value => Err(format!("{name} stood for {known}, now {value}")),
            _ => {
                self.names.insert(name.to_string(), value.to_string());
                Ok(())
            }
        }
    }
}

/// A regex for one expected text line, and the names its groups bind.
fn line_pattern(expected: &str) -> (Regex, Vec<String>) {
    let special = Regex::new(r"http://127\.0\.0\.1:\d+|[0-9A-Za-z]+…|…|<[^>]*>").unwrap();
    let (mut pattern, mut names, mut last) = (String::from("^"), Vec::new(), 0);
    for m in special.find_iter(expected) {
        pattern.push_str(&regex::escape(&expected[last..m.start()]));
        let token = m.as_str();
        if token.starts_with("http://") {
            pattern.push_str(r"(http://127\.0\.0\.1:\d+)");
            names.push(token.to_string());
        } else if token.len() > "…".len() && token.ends_with('…') {
            pattern.push_str(r#"([^\s"',\]\}]+)"#);
            names.push(token.to_string());
        } else {
            pattern.push_str(".*?");
        }
        last = m.end();
    }
    pattern.push_str(&regex::escape(&expected[last..]));
    pattern.push('$');
    (Regex::new(&pattern).unwrap(), names)
}

/// Matches `actual` against one expected line, binding its names.
fn match_line(state: &mut State, expected: &str, actual: &str) -> bool {
    let (re, names) = line_pattern(expected);
    let Some(captures) = re.captures(actual) else { return false };
    let values: Vec<String> = (1..captures.len()).map(|i| captures[i].to_string()).collect();
    names.iter().zip(&values).all(|(name, value)| state.bind(name, value).is_ok())
}

/// Matches printed text against the README's lines (see the module docs).
fn match_text(state: &mut State, expected: &[String], actual: &[&str]) -> Result<(), String> {
    let groups: Vec<&[String]> = expected.split(|l| l.trim() == "…").collect();
    let (open_start, open_end) =
        (expected.first().is_some_and(|l| l.trim() == "…"), expected.last().is_some_and(|l| l.trim() == "…"));
    let mut at = 0;
    let count = groups.len();
    for (i, group) in groups.iter().enumerate() {
        if group.is_empty() {
            continue;
        }
        let anchored_start = i == 0 && !open_start;
        let anchored_end = i == count - 1 && !open_end;
        let last_start = actual.len().checked_sub(group.len()).ok_or("fewer lines printed than shown")?;
        let candidates: Vec<usize> = match (anchored_start, anchored_end) {
            (true, true) if actual.len() != group.len() => vec![],
            (true, _) => vec![0],
            (false, true) => vec![last_start],
            (false, false) => (at..=last_start).collect(),
        };
        let found = candidates.into_iter().filter(|start| *start >= at).find(|start| {
            let mut trial = State { names: state.names.clone(), env: BTreeMap::new() };
            let ok = group.iter().zip(&actual[*start..]).all(|(e, a)| match_line(&mut trial, e, a));
            if ok {
                state.names = trial.names;
            }
            ok
        });
        match found {
            Some(start) => at = start + group.len(),
            None => return Err(format!("no match for {group:#?}")),
        }
    }
    Ok(())
}

/// A JSON pattern: JSON with `…` for what the README leaves out.
#[derive(Debug)]
enum Pattern {
    Any,
    Object(Vec<(String, Pattern)>),
    Array(Option<Vec<Pattern>>),
    Text(String),
    Exactly(Value),
}

struct Parser<'a> {
    rest: &'a str,
}

impl Parser<'_> {
    fn skip(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip();
        match self.rest.strip_prefix(token) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn string(&mut self) -> String {
        assert!(self.eat("\""), "expected a string at {:?}", self.rest);
        let end = self.rest.find('"').unwrap_or_else(|| panic!("unterminated string at {:?}", self.rest));
        let text = self.rest[..end].to_string();
        self.rest = &self.rest[end + 1..];
        text
    }

    fn value(&mut self) -> Pattern {
        self.skip();
        if self.eat("…") {
            Pattern::Any
        } else if self.eat("{") {
            let mut members = Vec::new();
            while !self.eat("}") {
                if self.eat("…") {
                    // Decoration: objects always match their listed members only.
                } else {
                    let name = self.string();
                    assert!(self.eat(":"), "expected ':' at {:?}", self.rest);
                    members.push((name, self.value()));
                }
                self.eat(",");
            }
            Pattern::Object(members)
        } else if self.eat("[") {
            if self.eat("…") {
                assert!(self.eat("]"), "expected ']' at {:?}", self.rest);
                return Pattern::Array(None);
            }
            let mut items = Vec::new();
            while !self.eat("]") {
                items.push(self.value());
                self.eat(",");
            }
            Pattern::Array(Some(items))
        } else if self.rest.starts_with('"') {
            Pattern::Text(self.string())
        } else {
            let end = self.rest.find([',', '}', ']']).unwrap_or(self.rest.len());
            let literal = self.rest[..end].trim();
            self.rest = &self.rest[end..];
            Pattern::Exactly(serde_json::from_str(literal).unwrap_or_else(|e| panic!("{literal:?}: {e}")))
        }
    }
}

fn parse_pattern(text: &str) -> Pattern {
    let mut parser = Parser { rest: text };
    let pattern = parser.value();
    assert!(parser.rest.trim().is_empty(), "trailing text {:?}", parser.rest);
    pattern
}

/// Whether `actual` matches `pattern`; on a mismatch, where.
fn match_json(pattern: &Pattern, actual: &Value, at: &str) -> Result<(), String> {
    let fail = || Err(format!("{at}: {actual} does not match {pattern:?}"));
    match pattern {
        Pattern::Any => Ok(()),
        Pattern::Object(members) => {
            let Some(object) = actual.as_object() else { return fail() };
            for (name, pattern) in members {
                let value = object.get(name).ok_or_else(|| format!("{at}: no {name:?} in {actual}"))?;
                match_json(pattern, value, &format!("{at}.{name}"))?;
            }
            Ok(())
        }
        Pattern::Array(None) => actual.as_array().map(|_| ()).ok_or(()).or_else(|_| fail()),
        Pattern::Array(Some(items)) => {
            let Some(array) = actual.as_array().filter(|a| a.len() == items.len()) else { return fail() };
            items.iter().zip(array).enumerate().try_for_each(|(i, (p, v))| match_json(p, v, &format!("{at}[{i}]")))
        }
        Pattern::Text(text) => {
            let (re, _) = line_pattern(&text.replace('…', "<>"));
            match actual.as_str() {
                Some(s) if re.is_match(s) => Ok(()),
                _ => fail(),
            }
        }
        Pattern::Exactly(value) => {
            if value == actual {
                Ok(())
            } else {
                fail()
            }
        }
    }
}

/// `jq`'s `.a[0].b` paths.
fn jq(value: &Value, path: &str) -> Value {
    let segment = Regex::new(r"\.([A-Za-z_]+)|\[(\d+)\]").unwrap();
    let mut value = value.clone();
    for c in segment.captures_iter(path) {
        value = match (c.get(1), c.get(2)) {
            (Some(name), _) => value[name.as_str()].clone(),
            (_, Some(index)) => value[index.as_str().parse::<usize>().unwrap()].clone(),
            _ => unreachable!(),
        };
    }
    value
}

/// The tour's background devnet; stopped (SIGTERM, as Ctrl-C) when dropped.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

struct Tour {
    dir: PathBuf,
    state: State,
    background: Vec<Background>,
}

impl Tour {
    fn shell(&self, command: &str) -> Command {
        let bin = Path::new(EXE).parent().unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let mut sh = Command::new("sh");
        sh.arg("-c").arg(command).current_dir(&self.dir).env_clear().env("PATH", path).envs(&self.state.env);
        sh
    }

    /// `shardvault --json address …` for the key and chain of a tour command.
    fn public_key(&self, key: &str, chain: &str) -> Vec<u8> {
        let chain = if evm_chain_id(chain).is_some() { "ethereum" } else { chain };
        let output =
            self.shell(&format!("shardvault --json address --key {key} --chain {chain} --index 0")).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let address: Value = serde_json::from_slice(&output.stdout).unwrap();
        hex::decode(address["public_key"].as_str().unwrap()).unwrap()
    }

    /// The command with names substituted and transactions built.
    fn prepare(&self, command: &str) -> String {
        let words: Vec<String> = self.state.substitute(command).split(' ').map(str::to_string).collect();
        let flag = |name: &str| words.iter().position(|w| w == name).map(|i| words[i + 1].clone());
        let mut out = words.clone();
        for (i, word) in words.iter().enumerate() {
            let Some(kind) = ["--tx-hex", "--tx-base64", "--psbt", "--sign"].into_iter().find(|k| k == word) else {
                continue;
            };
            let (key, chain) = (flag("--key").unwrap(), flag("--chain").unwrap());
            let shown = &words[i + 1];
            if kind == "--sign" {
                // `recover --sign FILE`: the wallet's unsigned transaction, in a file.
                std::fs::write(self.dir.join(shown), self.build("--tx-base64", &key, &chain)).unwrap();
                continue;
            }
            let built = self.build(kind, &key, &chain);
            if kind == "--psbt" {
                std::fs::write(self.dir.join(shown), built).unwrap();
                continue;
            }
            let built = String::from_utf8(built).unwrap();
            let prefix = shown.trim_end_matches('…');
            assert!(built.starts_with(prefix), "the README shows {shown} for what is built as {built}");
            out[i + 1] = built;
        }
        out.join(" ")
    }

    /// An unsigned transaction from the key's own address on `chain`
    /// (hex, base64, or a binary PSBT).
    fn build(&self, kind: &str, key: &str, chain: &str) -> Vec<u8> {
        use shardvault_chains::{sample, Chain, KeyType};
        let public_key = self.public_key(key, chain);
        let b64 = |bytes: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
        match (kind, chain) {
            ("--psbt", "bitcoin") => {
                sample::transfer(Chain::Bitcoin, KeyType::EcdsaSecp256k1, &public_key).unwrap().unsigned
            }
            ("--tx-hex", "cosmos") => {
                let tx = sample::transfer(Chain::Cosmos, KeyType::EcdsaSecp256k1, &public_key).unwrap();
                hex::encode(tx.unsigned).into_bytes()
            }
            ("--tx-base64", "solana") => {
                b64(&sample::transfer(Chain::Solana, KeyType::Ed25519, &public_key).unwrap().unsigned).into_bytes()
            }
            ("--tx-hex", evm) if evm_chain_id(evm).is_some() => {
                use alloy_consensus::{SignableTransaction, TxEip1559};
                let tx = TxEip1559 {
                    chain_id: evm_chain_id(evm).unwrap(),
                    nonce: 0,
                    gas_limit: 21_000,
                    max_fee_per_gas: 30_000_000_000,
                    max_priority_fee_per_gas: 1_000_000_000,
                    to: alloy_primitives::TxKind::Call(alloy_primitives::Address::repeat_byte(0x35)),
                    value: alloy_primitives::U256::from(10_000_000_000_000_000u64),
                    access_list: Default::default(),
                    input: Default::default(),
                };
                let mut preimage = Vec::new();
                tx.encode_for_signing(&mut preimage);
                hex::encode(preimage).into_bytes()
            }
            other => panic!("the tour signs {other:?}, which this test cannot build yet"),
        }
    }

    fn run(&mut self, step: &Step) -> Result<(), String> {
        if let Some(assignment) = step.command.strip_prefix("export ") {
            let (name, value) = assignment.split_once('=').ok_or("export without =")?;
            self.state.env.insert(name.to_string(), self.state.substitute(value));
            return Ok(());
        }
        if let Some(command) = step.command.strip_suffix(" &") {
            // The devnet, in the background: its first line is what the README shows.
            let mut child =
                self.shell(&format!("exec {command}")).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
            let mut first = String::new();
            BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
            self.background.push(Background(child));
            return match_text(&mut self.state, &step.expected, &[first.trim_end()]);
        }
        if let Some(url) = step.command.strip_prefix("curl ") {
            let url = self.shell_expand(url);
            let body: Value = ureq::get(&url).call().map_err(|e| e.to_string())?.body_mut().read_json().unwrap();
            return match step.expected.is_empty() {
                true => Ok(()),
                false => match_json(&parse_pattern(&step.expected.join(" ")), &body, "$"),
            };
        }
        let (command, path) = match step.command.split_once(" | jq ") {
            Some((command, path)) => (command, Some(path.trim_matches('\''))),
            None => (step.command.as_str(), None),
        };
        let command = self.prepare(command);
        let output = self.shell(&command).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        if !output.status.success() {
            return Err(format!("`{command}` failed: {}", String::from_utf8_lossy(&output.stderr)));
        }
        // A comment `→ key 9d2e…` names the key this command made.
        if let Some(name) = Regex::new(r"→ key (\S+…)").unwrap().captures(&step.comment) {
            let key_id = Regex::new(r"(?m)^key_id: (\S+)$").unwrap().captures(&stdout).ok_or("no key_id printed")?;
            self.state.bind(&name[1], &key_id[1])?;
        }
        let expected = &step.expected;
        if expected.first().is_some_and(|l| l.starts_with('{')) {
            let mut value: Value = serde_json::from_str(&stdout).map_err(|e| format!("{e}: {stdout}"))?;
            if let Some(path) = path {
                value = jq(&value, path);
            }
            match_json(&parse_pattern(&expected.join(" ")), &value, "$")
        } else if expected.is_empty() {
            Ok(())
        } else {
            let lines: Vec<&str> = stdout.lines().map(str::trim_end).collect();
            match_text(&mut self.state, expected, &lines).map_err(|e| format!("{e}\nprinted:\n{stdout}"))
        }
    }

    /// `$NAME` expanded from the exported variables.
    fn shell_expand(&self, text: &str) -> String {
        let re = Regex::new(r"\$([A-Z_]+)").unwrap();
        re.replace_all(text, |c: &regex::Captures| self.state.env.get(&c[1]).cloned().unwrap_or_default()).to_string()
    }
}

fn evm_chain_id(chain: &str) -> Option<u64> {
    match chain {
        "ethereum" => Some(1),
        "polygon" => Some(137),
        "bsc" => Some(56),
        _ => None,
    }
}

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap()
}

#[test]
fn the_readme_tour_runs_as_shown() {
    let readme = readme();
    let mut blocks = tour(&readme, "## A five-minute tour");
    assert_eq!(blocks.len(), 4, "the tour, its governed part, the in-process lifecycle and Shamir splitting");
    // Then, on the same devnet: a backup the members approve, opened with
    // age, and the keys recovered from it offline.
    for heading in ["## Backups", "## Recover offline"] {
        let more = tour(&readme, heading);
        assert_eq!(more.len(), 1, "{heading}");
        blocks.extend(more);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut tour = Tour { dir: dir.path().to_path_buf(), state: State::default(), background: Vec::new() };
    let mut ran = 0;
    for step in blocks.iter().flatten() {
        tour.run(step).unwrap_or_else(|e| panic!("README step `$ {}`:\n{e}", step.command));
        ran += 1;
    }
    assert!(ran >= 15, "only {ran} steps");
}

// The matcher itself: what the README may and may not leave out.

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

#[test]
fn text_must_match_except_where_elided_and_names_bind() {
    let mut state = State::default();
    let expected = lines("key_id: 6f1c…\npublic_key: 03a1…\nepoch: 0\n…");
    let printed = ["key_id: 0123abcd", "public_key: 02ffee", "epoch: 0", "request_id: r1"];
    match_text(&mut state, &expected, &printed).unwrap();
    assert_eq!(state.names["6f1c…"], "0123abcd");
    assert_eq!(state.substitute("--key 6f1c… --index 0"), "--key 0123abcd --index 0");
    // A wrong value, a missing line, or extra lines where the README shows none.
    let mut state = State::default();
    assert!(match_text(&mut state, &expected, &["key_id: 01", "public_key: 02", "epoch: 1"]).is_err());
    assert!(match_text(&mut state, &expected, &["key_id: 01", "epoch: 0"]).is_err());
    assert!(match_text(&mut state, &lines("epoch: 0"), &["epoch: 0", "more"]).is_err());
    // A name stands for one value.
    let mut state = State::default();
    assert!(match_text(&mut state, &lines("a: 6f1c…\nb: 6f1c…"), &["a: 1", "b: 2"]).is_err());
}

#[test]
fn json_must_match_the_members_shown() {
    let pattern =
        parse_pattern(r#"{ "kind": "eip1559", "to": "0x…", "signers": [1, 2], "summary": {…}, "id": "<hash>", … }"#);
    let good = serde_json::json!({ "kind": "eip1559", "to": "0x35", "signers": [1, 2], "summary": {"a": 1}, "id": "x", "other": 1 });
    match_json(&pattern, &good, "$").unwrap();
    for (field, wrong) in [
        ("kind", serde_json::json!("legacy")),
        ("to", serde_json::json!("35")),
        ("signers", serde_json::json!([1, 3])),
        ("summary", serde_json::json!([])),
    ] {
        let mut bad = good.clone();
        bad[field] = wrong;
        assert!(match_json(&pattern, &bad, "$").is_err(), "{field}");
    }
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("id");
    assert!(match_json(&pattern, &missing, "$").is_err());
}
