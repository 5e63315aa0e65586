//! Replacing a lost node, on each node (docs/DESIGN.md "Replacing a lost
//! node"): seed escrow, the pinning of a replaced node's new keys on an
//! approved request, and share repair as helper or as the new node.

use std::collections::{BTreeMap, BTreeSet};

use shardvault_governance::Operation;
use shardvault_mpc::{escrow_seed, repair_as_helper, repair_as_target, Envelope, Helping, OsRng, PartyId};
use shardvault_wire::{Cluster, IdentityPublicKey, Job, NodeId, NoisePublicKey};

use super::{Node, NodeError, Protocol};
use crate::governance::{Approved, Machine};
use crate::store::ReplacedNode;

impl Node {
    /// This machine: its node id and its own public keys.
    pub(super) fn machine(&self) -> Result<Machine, NodeError> {
        Ok(Machine {
            node: self.id,
            noise: NoisePublicKey::from_secret(&self.secret)?.0,
            identity: self.identity.public().0,
        })
    }

    /// The cluster as this node pins it: the cluster file, with the keys of
    /// every node replaced by an approved request over it.
    pub(super) fn pinned_cluster(&self) -> Result<Cluster, NodeError> {
        let mut cluster = self.cluster.clone();
        for replaced in self.store.replaced_nodes()? {
            cluster.nodes.insert(replaced.node, NoisePublicKey(replaced.noise));
            cluster.identities.insert(replaced.node, IdentityPublicKey(replaced.identity));
        }
        Ok(cluster)
    }

    /// On a job carrying an approved node replacement: the new node checks
    /// that the request names its own keys; every other node pins them.
    pub(super) fn apply_replacement(&self, approved: &Approved) -> Result<(), NodeError> {
        let Operation::ReplaceNode { node, noise_key, identity_key, .. } = &approved.operation else { return Ok(()) };
        let node = NodeId(*node);
        let keys =
            <[u8; 32]>::try_from(noise_key.as_slice()).ok().zip(<[u8; 32]>::try_from(identity_key.as_slice()).ok());
        let Some((noise, identity)) = keys else {
            return Err(NodeError::Refused("a node replacement names 32-byte keys".into()));
        };
        self.check_new_keys(node, &noise, &identity)?;
        if node == self.id {
            let me = self.machine()?;
            if me.noise != noise || me.identity != identity {
                return Err(NodeError::Refused(format!(
                    "the replacement of node {node} names other keys than this node's: it is for another machine"
                )));
            }
            return Ok(());
        }
        let replaced =
            ReplacedNode { node, noise, identity, request: approved.id.to_string(), created_at: approved.created_at };
        if !self.store.replaced_nodes()?.contains(&replaced) {
            self.store.pin_replaced_node(&replaced)?;
            tracing::warn!(node = %self.id, replaced = %node, request = %approved.id, "node replaced: its new keys are pinned");
        }
        Ok(())
    }

    /// Refuses a replacement of a node the cluster does not have, or whose
    /// new keys are another machine's: naming node 1's keys for node 3
    /// would hand party 3's share to node 1, which would then hold two, and
    /// naming the lost machine's own keys would let its (stolen) disk back
    /// in. Keys already pinned for `node` by a replacement are its own.
    fn check_new_keys(&self, node: NodeId, noise: &[u8; 32], identity: &[u8; 32]) -> Result<(), NodeError> {
        let pinned = self.pinned_cluster()?;
        if !pinned.nodes.contains_key(&node) {
            return Err(NodeError::Refused(format!(
                "the replacement names node {node}, which the cluster does not have"
            )));
        }
        let replaced = self.store.replaced_nodes()?;
        if replaced.iter().any(|r| r.node == node && r.noise == *noise && r.identity == *identity) {
            return Ok(());
        }
        let new_machine = node == self.id;
        let is_other = |id: &NodeId| *id != node;
        let in_file = |id: &NodeId| !(new_machine && *id == node);
        let taken = pinned.coordinator.0 == *noise
            || pinned.nodes.iter().any(|(id, key)| is_other(id) && key.0 == *noise)
            || pinned.identities.iter().any(|(id, key)| is_other(id) && key.0 == *identity)
            || self.cluster.nodes.iter().any(|(id, key)| in_file(id) && key.0 == *noise)
            || self.cluster.identities.iter().any(|(id, key)| in_file(id) && key.0 == *identity);
        if taken {
            return Err(NodeError::Refused(format!(
                "the replacement of node {node} names keys another machine of the cluster has or had"
            )));
        }
        Ok(())
    }

    /// Starts the escrow of this node's chain seed among all the key's parties.
    /// Only over a party map pinned before (at key generation, or by an
    /// approved derivation or refresh): the escrow needs no approval, so it
    /// must not be the job that decides which node gets which piece.
    pub(super) fn start_escrow(&self, job: &Job, me: PartyId) -> Result<(Protocol, Vec<Envelope>), NodeError> {
        if self.store.key_parties(job.key_id)?.is_none() {
            return Err(NodeError::Refused(format!(
                "key {} has no pinned party map on this node; derive an address of it (or refresh it) once, then \
                 escrow its seeds",
                job.key_id
            )));
        }
        let share = self.share_for(job, me, None)?;
        if job.participants.keys().copied().ne(share.threshold().party_ids()) {
            return Err(NodeError::Refused("a seed escrow needs every party of the key".into()));
        }
        let (session, out) = escrow_seed(&share, job.session)?;
        Ok((Protocol::Escrow(session), out))
    }

    /// Starts this node's part in repairing party `target` of the job's key:
    /// as the new node of that party, or as one of the helpers.
    pub(super) fn start_repair(
        &self,
        job: &Job,
        me: PartyId,
        target: PartyId,
        parties: &BTreeMap<PartyId, NodeId>,
    ) -> Result<(Protocol, Vec<Envelope>), NodeError> {
        if job.participants.iter().any(|(party, node)| parties.get(party) != Some(node)) {
            return Err(NodeError::Refused("the repair's participants are not the key's parties".into()));
        }
        let helpers: BTreeSet<PartyId> = job.participants.keys().copied().filter(|p| *p != target).collect();
        let parties = parties.clone();
        if me == target {
            let (session, out) = repair_as_target(job.key_id, target, &helpers, job.session)?;
            return Ok((Protocol::Repair { session, parties, epoch: None }, out));
        }
        let share = self.share_for(job, me, None)?;
        if self.store.key_parties(job.key_id)?.as_ref() != Some(&parties) {
            return Err(NodeError::Refused(format!(
                "the repair describes key {}'s parties otherwise than this node pinned them",
                job.key_id
            )));
        }
        let (piece, commitment) = self.store.seed_piece(job.key_id, target)?.ok_or_else(|| {
            NodeError::Refused(format!(
                "this node holds no escrowed piece of party {target}'s chain seed of key {}: the key's seed escrow \
                 never ran, so the lost node can only be restored from its backup",
                job.key_id
            ))
        })?;
        let helping =
            Helping { share: &share, helpers: &helpers, target, seed_piece: &piece, seed_commitment: &commitment };
        let (session, out) = repair_as_helper(&helping, job.session, &job.digest()?, &mut OsRng)?;
        Ok((Protocol::Repair { session, parties, epoch: Some(share.epoch()) }, out))
    }
}
