//! Acting as a member: log in with an identity, and approve the requests
//! this client creates — after decoding them locally, never trusting the
//! coordinator's account of what they say.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use shardvault_api::{Approve, Health, Login, Pending, Reject, RequestRecord, Session};
use shardvault_governance::{login_message, Identity, Request, RequestId, LOGIN_NAMESPACE, REJECT_NAMESPACE};

use crate::{Answer, Client, Error, Expected, Result};

/// What a creating call came to: done (the call's answer), or a request
/// still waiting (for approvals by others).
#[derive(Debug)]
// One value per call, returned once: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Outcome<T> {
    /// The call ran; its answer.
    Done(T),
    /// The request, still pending.
    Pending(RequestRecord),
}

fn config(message: impl Into<String>) -> Error {
    Error::Config(message.into())
}

impl Client {
    /// Uses a session token (from `SHARDVAULT_TOKEN` or a login).
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// Logs in as `identity` (a signed, once-used login) and keeps the
    /// identity to approve the requests this client creates.
    pub fn login(mut self, identity: impl Into<Arc<Identity>>) -> Result<Self> {
        let identity: Arc<Identity> = identity.into();
        let health: Health = self.get("/v1/health")?.into_typed()?;
        let nonce = RequestId::random().to_string();
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| config("the clock is before 1970"))?
            .as_secs();
        let message = login_message(&health.organisation, time, &nonce);
        let signature = identity
            .sign_in(LOGIN_NAMESPACE, message.as_bytes())
            .and_then(|s| s.to_armored())
            .map_err(|e| config(e.to_string()))?;
        let session: Session = self.post("/v1/sessions", &Login { message, signature }, None)?.into_typed()?;
        self.token = Some(session.token);
        self.identity = Some(identity);
        self.organisation = Some(health.organisation);
        Ok(self)
    }

    /// The identity this client acts as.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_deref()
    }

    /// A creating call's answer: a direct answer as `T`; a pending request
    /// approved by this client's identity (if it has one) and, once that
    /// meets the policy, its call's answer as `T`.
    pub(crate) fn governed<T: DeserializeOwned>(&self, answer: Answer, asked: Expected<'_>) -> Result<T> {
        match self.governed_outcome(answer, asked)? {
            Outcome::Done(value) => Ok(value),
            Outcome::Pending(record) => Err(Error::NotDone {
                message: "it needs more approvals: `shardvault request show` lists them".into(),
                request_id: record.request_id,
                status: record.status,
            }),
        }
    }

    /// A creating call's raw answer, resolved as `governed` does: a 202 is
    /// approved with this client's identity and replaced by the answer of
    /// the call it ran; a request still pending is [`Error::NotDone`].
    pub fn resolve(&self, answer: Answer, asked: Expected<'_>) -> Result<Answer> {
        match self.governed_outcome::<serde_json::Value>(answer, asked)? {
            Outcome::Done(body) => Ok(Answer { status: 200, replayed: false, body }),
            Outcome::Pending(record) => Err(Error::NotDone {
                message: "it needs more approvals: `shardvault request show` lists them".into(),
                request_id: record.request_id,
                status: record.status,
            }),
        }
    }

    /// As `governed`, but a request left pending is an outcome, not an error.
    pub fn governed_outcome<T: DeserializeOwned>(&self, answer: Answer, asked: Expected<'_>) -> Result<Outcome<T>> {
        if answer.status != 202 {
            return answer.into_typed().map(Outcome::Done);
        }
        let pending: Pending = answer.into_typed()?;
        let Some(identity) = &self.identity else {
            return Ok(Outcome::Pending(self.request(&pending.request_id)?));
        };
        self.check_own(identity, &pending, asked)?;
        match self.approve(&pending.request_id, pending.request.as_bytes()) {
            // Running under a concurrent approval: its outcome, once it has one.
            Ok(record) if record.status == "running" => finished(self.settled(&pending.request_id)?),
            Ok(record) => finished(record),
            // Approved already (a repeated call with its Idempotency-Key):
            // its outcome, once it has one.
            Err(error) if error.code() == Some(shardvault_api::ErrorCode::RequestClosed) => {
                finished(self.settled(&pending.request_id)?)
            }
            Err(error) => Err(error),
        }
    }

    /// Refuses a request this client did not make as it asked: another
    /// creator, another organisation, or not decodable.
    fn check_own(&self, identity: &Identity, pending: &Pending, asked: Expected<'_>) -> Result<()> {
        let request = Request::from_bytes(pending.request.as_bytes())
            .map_err(|e| config(format!("the coordinator's request does not decode: {e}")))?;
        let me = identity.member_key().map_err(|e| config(e.to_string()))?;
        if request.creator != me.fingerprint() || request.id.to_string() != pending.request_id {
            return Err(config(format!(
                "the coordinator returned request {} by {} for our call: not approving it",
                request.id, request.creator
            )));
        }
        if let Some(organisation) = self.organisation.as_deref().filter(|o| *o != request.organisation.to_string()) {
            return Err(config(format!(
                "the coordinator's request {} is for organisation {}, not {organisation}: not approving it",
                request.id, request.organisation
            )));
        }
        asked.check(&request.operation).map_err(|swapped| {
            config(format!(
                "the coordinator's request {} is not what was asked ({swapped}): not approving it",
                request.id
            ))
        })
    }

    /// Request `id` once it is no longer running (polled each 100 ms, for at
    /// most the client's timeout).
    pub fn settled(&self, id: &str) -> Result<RequestRecord> {
        let start = std::time::Instant::now();
        loop {
            let record = self.request(id)?;
            if record.status != "running" || start.elapsed() > std::time::Duration::from_secs(180) {
                return Ok(record);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Approves request `id` over its canonical bytes `request` with this
    /// client's identity.
    pub fn approve(&self, id: &str, request: &[u8]) -> Result<RequestRecord> {
        let identity = self.identity.as_ref().ok_or_else(|| config("approving needs --identity"))?;
        let signature = identity.approve(request).and_then(|a| a.to_armored()).map_err(|e| config(e.to_string()))?;
        self.submit_approval(id, &signature)
    }

    /// Submits an approval made elsewhere (e.g. by `ssh-keygen -Y sign`).
    pub fn submit_approval(&self, id: &str, signature: &str) -> Result<RequestRecord> {
        self.post(&format!("/v1/requests/{id}/approvals"), &Approve { signature: signature.to_owned() }, None)?
            .into_typed()
    }

    /// Rejects request `id` (its canonical bytes `request`).
    pub fn reject(&self, id: &str, request: &[u8]) -> Result<RequestRecord> {
        let identity = self.identity.as_ref().ok_or_else(|| config("rejecting needs --identity"))?;
        let signature = identity
            .sign_in(REJECT_NAMESPACE, request)
            .and_then(|a| a.to_armored())
            .map_err(|e| config(e.to_string()))?;
        self.post(&format!("/v1/requests/{id}/rejections"), &Reject { signature }, None)?.into_typed()
    }
}

/// A request record as its call's outcome: the answer once it ran (an error
/// answer as the API error), or still pending.
pub fn finished<T: DeserializeOwned>(record: RequestRecord) -> Result<Outcome<T>> {
    match record.status.as_str() {
        "succeeded" | "failed" => {
            let status = if record.status == "succeeded" { 200 } else { error_status(&record.response) };
            Answer { status, replayed: false, body: record.response }.into_typed().map(Outcome::Done)
        }
        "pending" => Ok(Outcome::Pending(record)),
        other => Err(Error::NotDone {
            request_id: record.request_id,
            status: other.into(),
            message: "it will not run".into(),
        }),
    }
}

fn error_status(body: &serde_json::Value) -> u16 {
    body.get("code")
        .and_then(|c| serde_json::from_value::<shardvault_api::ErrorCode>(c.clone()).ok())
        .map_or(500, |c| c.status())
}
