//! The coordinator's copy of the governance state: the genesis it was
//! configured with and the log it stores, replayed with the same code the
//! nodes run. It decides only who may call the API and what to tell a
//! caller early; every node re-checks every job itself.

use shardvault_governance::{Genesis, LogEntry, Member, State as Governance};
use shardvault_wire::Governed;

use crate::db::Db;

/// The genesis, the log and the state they make.
#[derive(Debug)]
pub(crate) struct Organisation {
    genesis: Genesis,
    log: Vec<LogEntry>,
    state: Governance,
}

impl Organisation {
    /// Replays the stored log over `genesis`; a stored entry that does not
    /// verify is an error (the database was edited or belongs to another
    /// organisation), never skipped.
    pub(crate) fn load(genesis: Genesis, db: &Db) -> Result<Self, String> {
        let log = db.governance_log().map_err(|e| format!("reading the governance log: {e}"))?;
        let state = Governance::replay(&genesis, &log)
            .map_err(|e| format!("the stored governance log does not verify against the genesis: {e}"))?;
        Ok(Organisation { genesis, log, state })
    }

    pub(crate) fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    pub(crate) fn state(&self) -> &Governance {
        &self.state
    }

    pub(crate) fn log(&self) -> &[LogEntry] {
        &self.log
    }

    /// The member with this key fingerprint.
    pub(crate) fn member(&self, fingerprint: &str) -> Option<&Member> {
        self.state.member_by_fingerprint(fingerprint)
    }

    /// Verifies and stores a new entry (after the stored ones).
    pub(crate) fn append(&mut self, entry: LogEntry, db: &Db) -> Result<(), String> {
        let mut next = self.state.clone();
        next.apply(&entry).map_err(|e| e.to_string())?;
        db.append_governance(self.log.len(), &entry).map_err(|e| format!("storing the change: {e}"))?;
        self.log.push(entry);
        self.state = next;
        Ok(())
    }

    /// What a job carries for a request and its approvals.
    pub(crate) fn governed(&self, request: &str, approvals: Vec<String>) -> Governed {
        Governed { request: request.to_owned(), approvals, log: self.log.clone() }
    }
}
