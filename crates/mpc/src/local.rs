//! Runs every party of a session in one process: the reference the networked
//! system is compared with, and the test bed for misbehaving networks.

use std::collections::{BTreeMap, VecDeque};

use crate::error::{Error, Rejection};
use crate::session::{Envelope, Machine, Session};
use crate::PartyId;

/// The result of a run: every party's output, and every message a party
/// refused (and dropped) on the way.
#[derive(Debug)]
pub struct Run<O> {
    /// Output per party.
    pub outputs: BTreeMap<PartyId, O>,
    /// (recipient, why) for each refused message.
    pub refused: Vec<(PartyId, Rejection)>,
}

/// Runs started sessions to completion, delivering every envelope unchanged.
pub fn run<M: Machine>(started: Vec<(Session<M>, Vec<Envelope>)>) -> Result<BTreeMap<PartyId, M::Output>, Error> {
    run_with(started, |_, envelope| vec![envelope]).map(|run| run.outputs)
}

/// Runs started sessions to completion through a `network` that sees each
/// delivery (recipient, envelope) first and returns what actually arrives:
/// nothing, the envelope, a changed one, or several. Refused messages are
/// recorded and dropped, as a node does; any other error ends the run.
pub fn run_with<M: Machine>(
    started: Vec<(Session<M>, Vec<Envelope>)>,
    mut network: impl FnMut(PartyId, Envelope) -> Vec<Envelope>,
) -> Result<Run<M::Output>, Error> {
    let mut sessions = BTreeMap::new();
    let mut queue = VecDeque::new();
    for (session, out) in started {
        fan_out(&session, out, &mut queue);
        sessions.insert(session.me(), session);
    }
    let mut refused = Vec::new();
    while let Some((to, envelope)) = queue.pop_front() {
        for envelope in network(to, envelope) {
            let Some(session) = sessions.get_mut(&to) else {
                continue;
            };
            match session.receive(envelope) {
                Ok(out) => fan_out(session, out, &mut queue),
                Err(Error::Rejected(why)) => refused.push((to, why)),
                Err(error) => return Err(error),
            }
        }
    }
    let mut outputs = BTreeMap::new();
    for (party, mut session) in sessions {
        let output = session
            .take_output()
            .ok_or_else(|| Error::Protocol(format!("party {party} did not finish: a message is missing")))?;
        outputs.insert(party, output);
    }
    Ok(Run { outputs, refused })
}

fn fan_out<M: Machine>(session: &Session<M>, out: Vec<Envelope>, queue: &mut VecDeque<(PartyId, Envelope)>) {
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
