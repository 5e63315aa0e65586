//! Backup export on the node (docs/FORMATS.md, "Backups"): a node seals its
//! own share only for an export request that every member who may approve
//! approved, only to the recipient the request names for its party, and
//! records it first. The coordinator is the attacker: it relays whatever
//! jobs it likes.

use std::collections::BTreeMap;
use std::io::BufReader;

use sha2::{Digest, Sha256};
use shardvault_backup::BackupPlaintext;
use shardvault_governance::{Identity, MemberKey, Operation};
use shardvault_harness::{identity, one_owner_or_admin, Nodes, Organisation};
use shardvault_mpc::{KeyId, PartyId, Scheme, SessionId, Threshold};
use shardvault_wire::{BackupStatement, Job, JobKind, NodeId, Outcome};

fn participants(nodes: &[u16]) -> BTreeMap<PartyId, NodeId> {
    nodes.iter().map(|n| (PartyId::new(u8::try_from(*n).unwrap()).unwrap(), NodeId(*n))).collect()
}

fn job(key_id: KeyId, nodes: &[u16], kind: JobKind) -> Job {
    Job { session: SessionId::random(), key_id, participants: participants(nodes), kind, governance: None }
}

/// Three nodes of a two-owner organisation (one approval suffices for
/// everything but an export) with a 2-of-3 key, and three recipients.
struct Fixture {
    c: Nodes,
    key_id: KeyId,
    officers: Vec<Identity>,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(scheme: Scheme) -> Self {
        Self::governed_by(Organisation::with_owners("backup", one_owner_or_admin(), 2), scheme)
    }

    fn governed_by(organisation: Organisation, scheme: Scheme) -> Self {
        let mut c = Nodes::with_organisation(3, organisation);
        let key_id = KeyId::random();
        let create = JobKind::CreateKey { scheme, threshold: Threshold::new(2, 3).unwrap() };
        let created = c.run(c.approve(job(key_id, &[1, 2, 3], create)));
        assert!(created.values().all(Result::is_ok), "{created:?}");
        let officers = (1..=3).map(|i| identity(&format!("officer{i}@backup"))).collect();
        Fixture { c, key_id, officers, dir: tempfile::tempdir().unwrap() }
    }

    fn recipients(&self) -> Vec<MemberKey> {
        self.officers.iter().map(|o| o.member_key().unwrap()).collect()
    }

    /// The export job for `recipients`, its request approved by `approvers`.
    fn export(&self, recipients: Vec<MemberKey>, approvers: &[usize]) -> Job {
        let export = job(self.key_id, &[1, 2, 3], JobKind::ExportBackup { recipients: recipients.clone() });
        let operation = Operation::ExportBackup { keys: vec![self.key_id], recipients };
        self.approved(export, operation, approvers)
    }

    fn approved(&self, mut job: Job, operation: Operation, approvers: &[usize]) -> Job {
        let organisation = &self.c.organisation;
        let request = organisation.request(operation, self.c.now());
        let owners: Vec<&Identity> = approvers.iter().map(|i| organisation.owners[*i].as_ref()).collect();
        job.governance = Some(Organisation::governed(&request, &owners, Vec::new()));
        job
    }

    /// Officer `i`'s private key as the age CLI would read it.
    fn age_identity(&self, i: usize) -> age::ssh::Identity {
        let path = self.dir.path().join(format!("officer{i}"));
        if !path.exists() {
            self.officers[i].write(&path, None).unwrap();
        }
        let file = std::fs::File::open(&path).unwrap();
        age::ssh::Identity::from_buffer(BufReader::new(file), None).unwrap()
    }

    fn backups_logged(&self) -> usize {
        self.c.nodes.values().map(|n| n.store().backups().unwrap().len()).sum()
    }

    /// Every node refuses `job` naming `reason`, and none seals or logs anything.
    fn refused(&mut self, job: Job, reason: &str) {
        let results = self.c.run_or_abort(job);
        assert_eq!(results.len(), 3, "{results:?}");
        for (node, result) in &results {
            let error = result.as_ref().expect_err(&format!("node {node} sealed a share: {result:?}"));
            assert!(error.to_string().contains(reason), "node {node}: {error}");
        }
        assert_eq!(self.backups_logged(), 0);
    }
}

#[test]
fn each_node_seals_its_own_share_to_its_partys_recipient_and_logs_it() {
    for scheme in [Scheme::EcdsaSecp256k1, Scheme::EddsaEd25519] {
        let mut f = Fixture::new(scheme);
        // A derived hardened path: the nodes list it, with its child key.
        let path: shardvault_mpc::DerivationPath = "m/9'/0'/60'/0'/0'/0'".parse().unwrap();
        let derive = job(f.key_id, &[1, 2, 3], JobKind::DeriveHardened { path: path.clone() });
        let operation = Operation::DeriveAddress { key_id: f.key_id, path: path.clone() };
        let derived = f.c.run(f.approved(derive, operation, &[0]));
        let Some(Ok(Outcome::Derived { public_key: child, .. })) = derived.values().next() else {
            panic!("{derived:?}")
        };
        let child = child.clone();
        let results = f.c.run(f.export(f.recipients(), &[0, 1]));
        let mut backups = Vec::new();
        for (node, result) in &results {
            let Ok(Outcome::BackedUp { sealed, seed_shares, hardened, signature, epoch }) = result else {
                panic!("node {node}: {result:?}")
            };
            let party = usize::from(node.0) - 1;
            // The party's officer opens it; the other officers do not.
            for other in (0..3).filter(|o| *o != party) {
                let identity = f.age_identity(other);
                assert!(
                    shardvault_backup::open(sealed, &[&identity]).is_err(),
                    "officer {other} opened party {party}'s share"
                );
            }
            let identity = f.age_identity(party);
            let plaintext: BackupPlaintext = shardvault_backup::open(sealed, &[&identity]).unwrap();
            assert_eq!(usize::from(plaintext.share.party.get()), party + 1);
            assert_eq!(plaintext.share.key_id, f.key_id);
            assert_eq!(plaintext.organisation, f.c.organisation.id.to_string());
            // The node signed exactly these files, for this export, key,
            // party and party map, under the identity the cluster pins.
            let statement = BackupStatement {
                organisation: plaintext.organisation.clone(),
                request_id: plaintext.request_id.clone(),
                node: *node,
                key_id: f.key_id,
                scheme,
                threshold: Threshold::new(2, 3).unwrap(),
                epoch: *epoch,
                party: plaintext.share.party,
                nodes: participants(&[1, 2, 3]),
                root_public_key: plaintext.share.root_public_key.clone(),
                recipients: f.recipients().iter().map(|r| r.to_openssh().unwrap()).collect(),
                sealed_sha256: Sha256::digest(sealed).into(),
                seed_shares_sha256: seed_shares.iter().map(|(p, file)| (*p, Sha256::digest(file).into())).collect(),
                hardened: [(path.clone(), child.clone())].into_iter().collect(),
            };
            assert_eq!(hardened, &statement.hardened);
            let signature: [u8; 64] = signature.as_slice().try_into().unwrap();
            statement.verify(&f.c.cluster, &signature).unwrap();
            let claimed = BackupStatement { node: NodeId(node.0 % 3 + 1), ..statement.clone() };
            assert!(claimed.verify(&f.c.cluster, &signature).is_err(), "node {node}'s signature as another's");
            assert_eq!(seed_shares.keys().map(|p| p.get()).collect::<Vec<_>>().len(), 2);
            backups.push(plaintext.share);
        }
        // Any two shares are the key.
        let key = shardvault_mpc::recover_key(&backups[..2], &shardvault_mpc::DerivationPath::root()).unwrap();
        let public_key =
            f.c.nodes.values().next().unwrap().store().active_share(f.key_id).unwrap().public_key().to_vec();
        assert_eq!(key.public_key, public_key);
        for node in f.c.nodes.values() {
            let logged = node.store().backups().unwrap();
            assert_eq!(logged.len(), 1);
            assert_eq!(logged[0].key_id, f.key_id);
            assert_eq!(logged[0].recipient, f.recipients()[usize::from(node.id().0) - 1].fingerprint());
        }
    }
}

#[test]
fn an_export_approved_by_fewer_than_every_member_is_refused() {
    let mut f = Fixture::new(Scheme::EcdsaSecp256k1);
    // One owner's approval carries everything else in this organisation.
    let export = f.export(f.recipients(), &[0]);
    f.refused(export, "owner2");
}

#[test]
fn a_policy_rule_that_denies_exports_still_denies_them() {
    let mut policy = one_owner_or_admin();
    policy.rules.insert(
        0,
        shardvault_governance::Rule {
            name: "no exports".into(),
            when: shardvault_governance::Conditions { operations: vec!["export_backup".into()], ..Default::default() },
            action: shardvault_governance::Action::Deny,
        },
    );
    let organisation = Organisation::with_owners("backup-denied", policy, 2);
    let mut f = Fixture::governed_by(organisation, Scheme::EcdsaSecp256k1);
    let export = f.export(f.recipients(), &[0, 1]);
    f.refused(export, "no exports");
}

#[test]
fn recipients_other_than_the_approved_ones_are_refused() {
    let mut f = Fixture::new(Scheme::EcdsaSecp256k1);
    let approved = f.recipients();
    let mut swapped = approved.clone();
    swapped[1] = identity("attacker@coordinator").member_key().unwrap();
    // The job seals to the attacker's key, the request names the officers'.
    let export = job(f.key_id, &[1, 2, 3], JobKind::ExportBackup { recipients: swapped.clone() });
    let export =
        f.approved(export, Operation::ExportBackup { keys: vec![f.key_id], recipients: approved.clone() }, &[0, 1]);
    f.refused(export, "other recipients");
    // Recipients in another party order are other recipients too.
    let mut reordered = approved.clone();
    reordered.swap(0, 1);
    let export = job(f.key_id, &[1, 2, 3], JobKind::ExportBackup { recipients: reordered });
    let export = f.approved(export, Operation::ExportBackup { keys: vec![f.key_id], recipients: approved }, &[0, 1]);
    f.refused(export, "other recipients");
}

#[test]
fn an_export_of_a_key_the_request_does_not_name_is_refused() {
    let mut f = Fixture::new(Scheme::EcdsaSecp256k1);
    let recipients = f.recipients();
    let export = job(f.key_id, &[1, 2, 3], JobKind::ExportBackup { recipients: recipients.clone() });
    let other = Operation::ExportBackup { keys: vec![KeyId::random()], recipients };
    let export = f.approved(export, other, &[0, 1]);
    f.refused(export, "does not name it");
}

#[test]
fn an_export_needs_every_party_and_one_recipient_each() {
    let mut f = Fixture::new(Scheme::EcdsaSecp256k1);
    // Two recipients for a key of three parties.
    let two = f.recipients()[..2].to_vec();
    let export = f.export(two, &[0, 1]);
    f.refused(export, "recipients");
    // Only two of the three parties: the third share would stay unexported.
    let recipients = f.recipients();
    let export = job(f.key_id, &[1, 2], JobKind::ExportBackup { recipients: recipients.clone() });
    let export = f.approved(export, Operation::ExportBackup { keys: vec![f.key_id], recipients }, &[0, 1]);
    let results = f.c.run_or_abort(export);
    assert!(results.values().all(|r| r.as_ref().is_err_and(|e| e.to_string().contains("every party"))), "{results:?}");
    assert_eq!(f.backups_logged(), 0);
}

#[test]
fn an_export_without_an_approved_request_is_refused() {
    let mut f = Fixture::new(Scheme::EcdsaSecp256k1);
    let export = job(f.key_id, &[1, 2, 3], JobKind::ExportBackup { recipients: f.recipients() });
    f.refused(export, "approved request");
}

/// Any t backups recover every hardened path: the missing party's chain
/// seed is rebuilt from the seed shares its node sealed to the others.
#[test]
fn any_two_of_three_backups_recover_a_hardened_path_with_the_missing_partys_seed_shares() {
    for scheme in [Scheme::EcdsaSecp256k1, Scheme::EddsaEd25519] {
        let mut f = Fixture::new(scheme);
        let path: shardvault_mpc::DerivationPath = "m/9'/0'/60'/0'/0'/7'".parse().unwrap();
        let derived = f.c.run(f.c.approve(job(f.key_id, &[1, 2, 3], JobKind::DeriveHardened { path: path.clone() })));
        let Some(Ok(Outcome::Derived { public_key: child, .. })) = derived.get(&NodeId(1)) else {
            panic!("{derived:?}")
        };
        let child = child.clone();
        let results = f.c.run(f.export(f.recipients(), &[0, 1]));
        for missing in 1..=3u16 {
            let holders: Vec<u16> = (1..=3).filter(|n| *n != missing).collect();
            let mut shares = Vec::new();
            let mut seed_shares = Vec::new();
            for holder in &holders {
                let identity = f.age_identity(usize::from(*holder) - 1);
                let Some(Ok(Outcome::BackedUp { sealed, .. })) = results.get(&NodeId(*holder)) else { panic!() };
                shares.push(shardvault_backup::open(sealed, &[&identity]).unwrap().share);
                let Some(Ok(Outcome::BackedUp { seed_shares: from_missing, .. })) = results.get(&NodeId(missing))
                else {
                    panic!()
                };
                let to_holder = &from_missing[&PartyId::new(u8::try_from(*holder).unwrap()).unwrap()];
                seed_shares.push(shardvault_backup::open_seed_share(to_holder, &[&identity]).unwrap());
                // A holder's key opens no seed share meant for another holder.
                for (to, file) in from_missing {
                    if u16::from(to.get()) != *holder {
                        assert!(shardvault_backup::open_seed_share(file, &[&identity]).is_err());
                    }
                }
            }
            // Without the missing party's seed, the hardened path is out of reach.
            let refused = shardvault_mpc::recover_key(&shares, &path).unwrap_err();
            assert!(refused.to_string().contains("chain seed"), "{refused}");
            let seed = shardvault_backup::combine_seed(&seed_shares.iter().collect::<Vec<_>>()).unwrap();
            let party = PartyId::new(u8::try_from(missing).unwrap()).unwrap();
            let seeds = BTreeMap::from([(party, seed)]);
            let key = shardvault_mpc::recover_key_with_seeds(&shares, &seeds, &path).unwrap();
            assert_eq!(key.public_key, child, "{scheme} without party {missing}");
            // One seed share alone is not the seed.
            assert!(shardvault_backup::combine_seed(&[&seed_shares[0]]).is_err());
        }
    }
}
