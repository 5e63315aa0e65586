//! `shardvault recover`: the offline break-glass tool (docs/RECOVERY.md).
//! From a backup package and the recipients' OpenSSH keys it rebuilds a
//! key whole on this machine — no network, no coordinator, no node — prints
//! the child private key a chain's wallets import, rechecks the addresses
//! the backup lists, and signs a transaction offline.

mod identities;
mod keys;
mod package;
mod signing;

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use shardvault_mpc::{recover_key_with_seeds, DerivationPath, RecoveredKey};
use zeroize::Zeroizing;

use crate::authenticity::{self, Authenticity};
use keys::{KeyOutput, Target};
pub use package::check_entry;
use shardvault_api::BackupAddress;

/// `shardvault recover`.
#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The backup package (`shardvault backup export --out FILE`).
    #[arg(long, value_name = "FILE")]
    backup: PathBuf,
    /// A recipient's OpenSSH ed25519 private key (`ssh-keygen -t ed25519`);
    /// repeat it for each officer's key: t of them open the root key.
    #[arg(long = "identity", id = "backup_identity", value_name = "KEY", required_unless_present = "identity_shares")]
    identities: Vec<PathBuf>,
    /// A recipient's private key split with `shardvault shamir split` (e.g.
    /// 3-of-5 among officers): a file of base64 shares, one per line, at
    /// least the split's threshold. Repeat for each such key.
    #[arg(long = "identity-shares", id = "identity_shares", value_name = "FILE")]
    identity_shares: Vec<PathBuf>,
    /// A file whose first line is the passphrase of the passphrase-protected
    /// identities (else the environment variable SHARDVAULT_BACKUP_PASSPHRASE,
    /// else a prompt on the terminal for each).
    #[arg(long, env = "SHARDVAULT_BACKUP_PASSPHRASE_FILE", value_name = "FILE")]
    identity_passphrase_file: Option<PathBuf>,
    /// The key to recover (hex id); needed when the package holds several.
    #[arg(long)]
    key: Option<String>,
    /// The derivation path, e.g. "m/9'/0'/60'/0'/0'/0'"; without --chain,
    /// the key is printed for every chain of its type.
    #[arg(long, conflicts_with = "index")]
    path: Option<String>,
    /// bitcoin, litecoin, ethereum (or bsc, polygon, arbitrum, optimism, base,
    /// avalanche), solana, aptos, tron, cosmos or sui.
    #[arg(long)]
    chain: Option<String>,
    /// With --chain: the address index, at the cluster's path
    /// m/9'/0'/coin'/0'/0'/index'.
    #[arg(long, requires = "chain")]
    index: Option<u32>,
    /// Bitcoin: bitcoin (default), testnet, signet, regtest; Litecoin:
    /// mainnet (default), testnet, regtest (the address and the WIF prefix
    /// follow it). With --sign: the network the transaction must be for
    /// (EVM: mainnet, sepolia, …; Cosmos: the chain id).
    #[arg(long)]
    network: Option<String>,
    /// Cosmos SDK chains: the address's bech32 prefix (default cosmos).
    #[arg(long)]
    bech32_prefix: Option<String>,
    /// Recompute every address the backup lists from the recovered key and
    /// refuse on any mismatch (with --cluster: every address the nodes
    /// attested; the printed key's address is then always checked).
    #[arg(long)]
    verify_addresses: bool,
    /// The pinned cluster file (a devnet writes DIR/cluster.json; keep a copy
    /// with the backup): only files their node signed are used, and only
    /// addresses max(2, t) of its nodes attested are trusted.
    #[arg(long, env = "SHARDVAULT_CLUSTER", value_name = "FILE")]
    cluster: Option<PathBuf>,
    /// Recover without checking the nodes' signatures (a version 1 package,
    /// or a lost cluster file): anyone who knows the recipients could have
    /// written the package. Compare the addresses with ones you verified.
    #[arg(long)]
    unverified: bool,
    /// With --cluster: print a hardened key even when the package lists no
    /// hardened path its nodes signed, so the recovered chain seeds cannot
    /// be checked (a hostile node's wrong seed would go unnoticed).
    #[arg(long)]
    unchecked_seeds: bool,
    /// Sign this unsigned transaction with the recovered key (as `shardvault
    /// sign` takes it: a PSBT, binary or base64; an EVM preimage, hex; a
    /// Solana, Aptos, Sui, Tron or Cosmos transaction, hex or base64) and
    /// print it signed, as `sign` does.
    #[arg(long = "sign", id = "sign_file", value_name = "FILE", requires = "chain")]
    sign: Option<PathBuf>,
    /// With --sign, EVM: the chain fixing the chain id, when --chain is ethereum.
    #[arg(long, requires = "sign_file")]
    evm_chain: Option<String>,
}

const WARNING: &str = "\
WARNING: BREAK-GLASS RECOVERY. This rebuilds the whole private key on THIS machine: whoever
can read this machine's memory, terminal, scrollback or disk can take the funds. Run it only
offline on a machine you trust, print nothing you do not need, move the funds to a new key,
then wipe this machine (and every file this command's output went to).";

/// Runs `shardvault recover`.
pub fn run(args: &RecoverArgs, json: bool) -> Result<()> {
    eprintln!("{WARNING}");
    let backup = package::read(&args.backup)?;
    let entry = package::select(&backup, args.key.as_deref())?;
    let scheme = package::scheme(entry)?;
    let authenticity = authenticate(args, &backup, entry)?;
    let passphrases = identities::Passphrases { file: args.identity_passphrase_file.as_deref() };
    let identities = identities::read_all(&args.identities, &args.identity_shares, &passphrases)?;
    let opened = package::open(&backup, entry, &identities, authenticity.as_ref().map(|a| &a.parties))?;
    // The root first: t shares of one epoch interpolate to the root public key.
    let root = recover_key_with_seeds(&opened.shares, &opened.seeds, &DerivationPath::root())?;
    if hex::encode(&root.public_key) != entry.root_public_key.to_ascii_lowercase() {
        bail!("the shares interpolate to {}, not the root public key the backup lists", hex::encode(&root.public_key));
    }
    let derive = |path: &DerivationPath| -> Result<RecoveredKey> {
        if !path.hardened_prefix().components().is_empty() {
            opened.require_every_seed(path)?;
        }
        Ok(recover_key_with_seeds(&opened.shares, &opened.seeds, path)?)
    };

    let target = target_path(args)?;
    let hardened = target.as_ref().is_some_and(|p| !p.hardened_prefix().components().is_empty());
    // A hardened key is printed only once the seeds check out; addresses
    // are verified with them checked where the nodes signed any path.
    let seeds_checked = match &authenticity {
        Some(a) if hardened || (args.verify_addresses && !a.hardened.is_empty()) => {
            Some(check_seeds(a, &derive, args.unchecked_seeds)?)
        }
        _ => None,
    };
    let mut keys = Vec::new();
    let mut signed = None;
    if let Some(path) = &target {
        let key = derive(path)?;
        let targets = match &args.chain {
            Some(name) => vec![Target::new(name, args.network.as_deref(), args.bech32_prefix.as_deref())?],
            None => shardvault_chains::Chain::ALL
                .iter()
                .filter(|c| c.accepts(shardvault_chains::KeyType::from(scheme)))
                .map(|c| Target::new(c.name(), None, args.bech32_prefix.as_deref()))
                .collect::<Result<_>>()?,
        };
        for target in &targets {
            keys.push(keys::output(target, &key)?);
        }
        if let (Some(file), [target]) = (&args.sign, targets.as_slice()) {
            let request = signing::Request { file, target, evm_chain: args.evm_chain.as_deref() };
            let signers: Vec<u8> = opened.parties.iter().copied().collect();
            signed = Some(signing::sign(&request, &entry.key_id, &key, &signers)?);
        }
    } else if !args.verify_addresses {
        bail!("say which key to print: --path P, or --chain C --index I (or only check with --verify-addresses)");
    }
    let listed = authenticity.as_ref().map_or(entry.addresses.as_slice(), |a| a.addresses.as_slice());
    let to_check: Vec<&BackupAddress> = match (args.verify_addresses, &target, &authenticity) {
        (true, _, _) => listed.iter().collect(),
        // An attested address at the printed path is always compared: a
        // hostile node's wrong seed shares show there.
        (false, Some(path), Some(_)) => listed.iter().filter(|a| a.path.parse().ok().as_ref() == Some(path)).collect(),
        _ => Vec::new(),
    };
    if args.verify_addresses && to_check.is_empty() {
        eprintln!(
            "warning: the backup lists no {}address to verify",
            if authenticity.is_some() { "attested " } else { "" }
        );
    }
    let verified = match to_check.is_empty() && !args.verify_addresses {
        true => None,
        false => Some(verify_addresses(&to_check, &derive)?),
    };

    let parties: Vec<u8> = opened.parties.iter().copied().collect();
    let output = Output {
        key_id: &entry.key_id,
        scheme: &entry.scheme,
        root_public_key: &entry.root_public_key,
        epoch: entry.epoch,
        threshold: entry.threshold,
        parties_opened: &parties,
        keys: &keys,
        verified_addresses: verified.as_deref(),
        authenticity: authenticity.as_ref(),
        seeds_checked,
        signed: signed.as_ref(),
    };
    print(json, &output)?;
    eprintln!(
        "WARNING: the private key{} above exist{} whole on this machine. Move the funds, then wipe it.",
        if keys.len() == 1 { "" } else { "s" },
        if keys.len() == 1 { "s" } else { "" }
    );
    Ok(())
}

/// With --cluster: which parties' files their nodes signed (each party that
/// does not count is named on stderr and left unused). Refuses to go on
/// without either --cluster or --unverified.
fn authenticate(
    args: &RecoverArgs,
    backup: &shardvault_api::BackupPackage,
    entry: &shardvault_api::ExportedKeyShare,
) -> Result<Option<Authenticity>> {
    let cluster = args.cluster.as_ref().filter(|_| !args.unverified);
    let Some(file) = cluster else {
        if !args.unverified {
            bail!(
                "refusing to recover from a package nobody vouched for: give the pinned cluster file with \
                 --cluster FILE or SHARDVAULT_CLUSTER (its nodes signed their files), or --unverified to use the \
                 package as it is (a version 1 package carries no signatures)"
            );
        }
        eprintln!(
            "WARNING: --unverified: the package's files are used without checking the nodes' signatures; anyone \
             who knows the recipients could have written it. Compare the addresses with ones you verified."
        );
        return Ok(None);
    };
    let cluster = crate::daemon::read_cluster(file)?;
    let authenticity = authenticity::check(backup, entry, &cluster)?;
    for (party, why) in &authenticity.rejected {
        eprintln!("warning: not using party {party}'s files: {why}");
    }
    for (address, why) in &authenticity.unattested {
        eprintln!("warning: not trusting the listed address {address}: {why}");
    }
    Ok(Some(authenticity))
}

/// Derives every hardened path the nodes signed (max(2, t) of them, in
/// their backup statements) with the recovered shares and chain seeds and
/// refuses unless each gives the child public key they signed: a chain seed
/// a hostile node sealed wrong (in its own file or as seed shares) shows
/// here, whatever path is printed. The number checked; none is refused
/// unless `unchecked`.
fn check_seeds(
    authenticity: &Authenticity,
    derive: &dyn Fn(&DerivationPath) -> Result<RecoveredKey>,
    unchecked: bool,
) -> Result<usize> {
    if authenticity.hardened.is_empty() {
        if !unchecked {
            bail!(
                "the package lists no hardened path its nodes signed, so the recovered chain seeds cannot be checked \
                 and a hostile node's wrong seed would give a wrong key unnoticed. Derive an address on the cluster \
                 and export again, or pass --unchecked-seeds and compare the printed address yourself"
            );
        }
        eprintln!(
            "WARNING: --unchecked-seeds: the recovered chain seeds are not checked; compare the address yourself"
        );
        return Ok(0);
    }
    for (path, public_key) in &authenticity.hardened {
        let key = derive(path)?;
        if &key.public_key != public_key {
            bail!(
                "with the recovered chain seeds, path {path} gives the child key {}, not {} as the nodes signed: a \
                 chain seed in this package is wrong (a hostile node sealed it). Do not use this key; recover with \
                 other officers' keys, leaving out one party at a time, until this check passes",
                hex::encode(&key.public_key),
                hex::encode(public_key)
            );
        }
    }
    Ok(authenticity.hardened.len())
}

/// `--path P`, or the cluster's path for `--chain C --index I`.
fn target_path(args: &RecoverArgs) -> Result<Option<DerivationPath>> {
    match (&args.path, args.index, &args.chain) {
        (Some(path), _, _) => Ok(Some(path.parse().with_context(|| format!("--path {path}"))?)),
        (None, Some(index), Some(chain)) => {
            let chain: shardvault_chains::Chain = chain.parse()?;
            if index >= shardvault_mpc::HARDENED {
                bail!("--index {index} must be below 2^31");
            }
            // The same path the coordinator derives for `address --index`.
            Ok(Some(format!("m/9'/0'/{}'/0'/0'/{index}'", chain.coin_type()).parse()?))
        }
        (None, None, Some(_)) if args.sign.is_some() || !args.verify_addresses => {
            bail!("--chain needs --index I or --path P")
        }
        _ => Ok(None),
    }
}

/// One address the backup lists, recomputed.
#[derive(Debug, Serialize)]
struct VerifiedAddress {
    chain: String,
    path: String,
    address: String,
    recomputed: String,
    matches: bool,
}

/// Recomputes every address listed; refuses if any differs.
fn verify_addresses(
    addresses: &[&BackupAddress],
    derive: &dyn Fn(&DerivationPath) -> Result<RecoveredKey>,
) -> Result<Vec<VerifiedAddress>> {
    let mut checked = Vec::new();
    for listed in addresses {
        let path: DerivationPath =
            listed.path.parse().with_context(|| format!("the backup lists an address at path {}", listed.path))?;
        let target = Target::new(&listed.chain, None, listed.bech32_prefix.as_deref())?;
        let key = derive(&path)?;
        let recomputed = target.address(shardvault_chains::KeyType::from(key.scheme), &key.public_key)?;
        checked.push(VerifiedAddress {
            chain: listed.chain.clone(),
            path: listed.path.clone(),
            matches: recomputed == listed.address,
            address: listed.address.clone(),
            recomputed,
        });
    }
    let wrong: Vec<String> = checked
        .iter()
        .filter(|a| !a.matches)
        .map(|a| format!("{} {}: listed {}, the recovered key's is {}", a.chain, a.path, a.address, a.recomputed))
        .collect();
    if !wrong.is_empty() {
        bail!(
            "{} of {} addresses the backup lists are not the recovered key's: {}. Do not use this key: with \
             --cluster the nodes attested those addresses, so a share or seed share in the package is wrong \
             (recover with other officers' keys, leaving out the party in doubt); without it, compare with the \
             addresses your cluster attested",
            wrong.len(),
            checked.len(),
            wrong.join("; ")
        );
    }
    Ok(checked)
}

#[derive(Serialize)]
struct Output<'a> {
    key_id: &'a str,
    scheme: &'a str,
    root_public_key: &'a str,
    epoch: u64,
    threshold: u8,
    parties_opened: &'a [u8],
    keys: &'a [KeyOutput],
    #[serde(skip_serializing_if = "Option::is_none")]
    verified_addresses: Option<&'a [VerifiedAddress]>,
    /// With --cluster: which parties' files their nodes signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    authenticity: Option<&'a Authenticity>,
    /// With --cluster, for a hardened path: how many hardened paths the
    /// nodes signed gave their child key with the recovered chain seeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    seeds_checked: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signed: Option<&'a shardvault_api::SignedTransaction>,
}

/// `--json`: one object. Otherwise `field: value` lines per key. Written
/// from a buffer that is wiped afterwards.
fn print(json: bool, output: &Output<'_>) -> Result<()> {
    let mut text = Zeroizing::new(Vec::new());
    if json {
        serde_json::to_writer_pretty(&mut *text, output)?;
        text.push(b'\n');
    } else {
        human(&mut text, output)?;
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&text)?;
    stdout.flush()?;
    Ok(())
}

fn human(out: &mut Vec<u8>, o: &Output<'_>) -> Result<()> {
    let parties: Vec<String> = o.parties_opened.iter().map(u8::to_string).collect();
    writeln!(out, "key_id: {}\nscheme: {}\nroot_public_key: {}", o.key_id, o.scheme, o.root_public_key)?;
    writeln!(out, "epoch: {}\nrecovered from the shares of parties: {}", o.epoch, parties.join(", "))?;
    for key in o.keys {
        writeln!(out, "\nchain: {}\npath: {}\naddress: {}", key.chain, key.path, key.address)?;
        writeln!(out, "public_key: {}", key.public_key)?;
        writeln!(out, "private_key ({}): {}", key.private_key_format, key.private_key.as_str())?;
        writeln!(out, "import: {}", key.import)?;
    }
    if let Some(a) = o.authenticity {
        let nodes: Vec<String> = a.nodes.iter().map(|(p, n)| format!("party {p} by node {n}")).collect();
        writeln!(out, "signed by their nodes (pinned cluster file): {}", nodes.join(", "))?;
    }
    if let Some(verified) = o.verified_addresses {
        writeln!(out, "\naddresses verified: {}", verified.len())?;
        for a in verified {
            writeln!(out, "  {:<9} {:<26} {}", a.chain, a.path, a.address)?;
        }
    }
    if let Some(signed) = o.signed {
        writeln!(out, "\nsigned transaction:")?;
        if let serde_json::Value::Object(fields) = serde_json::to_value(signed)? {
            for (name, value) in fields {
                match value {
                    serde_json::Value::String(s) => writeln!(out, "{name}: {s}")?,
                    serde_json::Value::Null => {}
                    other => writeln!(out, "{name}: {other}")?,
                }
            }
        }
    }
    Ok(())
}
