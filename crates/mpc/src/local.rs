//! Runs every party of a session in one process: the reference the networked
//! system is compared with, and the test bed for misbehaving peers.

use std::collections::{BTreeMap, VecDeque};

use crate::error::Error;
use crate::session::{Envelope, Machine, Session};
use crate::types::PartyId;

/// What [`run_with`] does with one delivery.
#[derive(Debug)]
pub enum Delivery {
    /// Deliver it (possibly modified).
    Deliver(Envelope),
    /// Drop it.
    Drop,
}

/// Runs started sessions to completion, delivering every envelope unchanged.
pub fn run<M: Machine>(
    started: Vec<(Session<M>, Vec<Envelope>)>,
) -> Result<BTreeMap<PartyId, M::Output>, Error> {
    run_with(started, |_, envelope| Delivery::Deliver(envelope))
}

/// Runs started sessions to completion; `network` sees each delivery
/// (recipient, envelope) first and may change or drop it. The first error
/// any party reports ends the run.
pub fn run_with<M: Machine>(
    started: Vec<(Session<M>, Vec<Envelope>)>,
    mut network: impl FnMut(PartyId, Envelope) -> Delivery,
) -> Result<BTreeMap<PartyId, M::Output>, Error> {
    let mut sessions = BTreeMap::new();
    let mut queue = VecDeque::new();
    for (session, out) in started {
        let me = session.me();
        fan_out(&session, out, &mut queue);
        sessions.insert(me, session);
    }
    while let Some((to, envelope)) = queue.pop_front() {
        let Delivery::Deliver(envelope) = network(to, envelope) else {
            continue;
        };
        let Some(session) = sessions.get_mut(&to) else {
            continue;
        };
        let out = session.receive(envelope)?;
        let session = &sessions[&to];
        fan_out(session, out, &mut queue);
    }
    let mut outputs = BTreeMap::new();
    for (party, mut session) in sessions {
        let output = session.take_output().ok_or_else(|| {
            Error::Protocol(format!(
                "party {party} did not finish: a message is missing"
            ))
        })?;
        outputs.insert(party, output);
    }
    Ok(outputs)
}

fn fan_out<M: Machine>(
    session: &Session<M>,
    out: Vec<Envelope>,
    queue: &mut VecDeque<(PartyId, Envelope)>,
) {
    for envelope in out {
        match envelope.to {
            Some(to) => queue.push_back((to, envelope)),
            None => {
                for peer in session.peers() {
                    queue.push_back((*peer, envelope.clone()));
                }
            }
        }
    }
}
