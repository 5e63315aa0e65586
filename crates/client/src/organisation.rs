//! The organisation's side of the API: members, policy, the request
//! history, the governance log and the audit log.
//!
//! Governance changes made here are approved by this client's identity only
//! after the request the coordinator returned decodes to exactly the
//! operation asked for (the same creator, the same member, role and key, the
//! same policy) — a coordinator cannot slip another change under the caller's
//! approval.

use shardvault_api::{
    AddMember, AuditLog, GovernanceLog, MemberList, Pending, PolicyAnswer, Reject, RemoveMember, RequestList,
    RequestRecord, SetPolicy,
};
use shardvault_governance::{Operation, Request};

use crate::governed::finished;
use crate::{Client, Error, Outcome, Result};

/// Filters of `GET /v1/requests`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestFilter {
    /// Only this status (`pending`, `succeeded`, …).
    pub status: Option<String>,
    /// Only this key.
    pub key: Option<String>,
    /// Only requests made at or after this unix time.
    pub since: Option<u64>,
    /// At most this many (the coordinator's default is 100, its maximum 1000).
    pub limit: Option<u32>,
}

impl RequestFilter {
    /// The query string, `?status=…&key=…` (empty without filters), each
    /// value percent-encoded.
    pub fn query(&self) -> String {
        let mut parts = Vec::new();
        if let Some(status) = &self.status {
            parts.push(format!("status={}", percent_encode(status)));
        }
        if let Some(key) = &self.key {
            parts.push(format!("key={}", percent_encode(key)));
        }
        if let Some(since) = self.since {
            parts.push(format!("since={since}"));
        }
        if let Some(limit) = self.limit {
            parts.push(format!("limit={limit}"));
        }
        match parts.is_empty() {
            true => String::new(),
            false => format!("?{}", parts.join("&")),
        }
    }
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

impl Client {
    /// `GET /v1/members`: the coordinator's account (replay `governance()` to check it).
    pub fn members(&self) -> Result<MemberList> {
        self.get("/v1/members")?.into_typed()
    }

    /// `GET /v1/policy`: the coordinator's account (replay `governance()` to check it).
    pub fn policy(&self) -> Result<PolicyAnswer> {
        self.get("/v1/policy")?.into_typed()
    }

    /// `GET /v1/governance`: the genesis and every log entry.
    pub fn governance(&self) -> Result<GovernanceLog> {
        self.get("/v1/governance")?.into_typed()
    }

    /// `GET /v1/audit`.
    pub fn audit(&self) -> Result<AuditLog> {
        self.get("/v1/audit")?.into_typed()
    }

    /// `GET /v1/requests`, newest first.
    pub fn requests(&self, filter: &RequestFilter) -> Result<RequestList> {
        self.get(&format!("/v1/requests{}", filter.query()))?.into_typed()
    }

    /// `POST /v1/members`, approved by this client's identity once the
    /// request is checked to add exactly this member.
    pub fn add_member(&self, body: &AddMember, idempotency_key: Option<&str>) -> Result<Outcome<MemberList>> {
        let bad = |e: shardvault_governance::Error| Error::Config(e.to_string());
        let expected = Operation::AddMember {
            name: body.name.parse().map_err(bad)?,
            role: body.role.parse().map_err(bad)?,
            public_key: body.public_key.parse().map_err(bad)?,
        };
        self.propose_exactly(self.post("/v1/members", body, idempotency_key)?, &expected)
    }

    /// `POST /v1/members/remove`, approved as [`Client::add_member`] is.
    pub fn remove_member(&self, body: &RemoveMember, idempotency_key: Option<&str>) -> Result<Outcome<MemberList>> {
        let name = body.name.parse().map_err(|e: shardvault_governance::Error| Error::Config(e.to_string()))?;
        let expected = Operation::RemoveMember { name };
        self.propose_exactly(self.post("/v1/members/remove", body, idempotency_key)?, &expected)
    }

    /// `POST /v1/policy`, approved as [`Client::add_member`] is.
    pub fn set_policy(&self, body: &SetPolicy, idempotency_key: Option<&str>) -> Result<Outcome<PolicyAnswer>> {
        let policy = serde_json::from_value(body.policy.clone())
            .map_err(|e| Error::Config(format!("the policy does not read: {e}")))?;
        let expected = Operation::SetPolicy { policy };
        self.propose_exactly(self.post("/v1/policy", body, idempotency_key)?, &expected)
    }

    /// Submits a rejection made elsewhere (`ssh-keygen -Y sign -n shardvault-reject`).
    pub fn submit_rejection(&self, id: &str, signature: &str) -> Result<RequestRecord> {
        self.post(&format!("/v1/requests/{id}/rejections"), &Reject { signature: signature.to_owned() }, None)?
            .into_typed()
    }

    /// A creating call's answer whose request must be `expected`, by this
    /// client's identity: checked, then approved; without an identity the
    /// request is left pending.
    fn propose_exactly<T: serde::de::DeserializeOwned>(
        &self,
        answer: crate::Answer,
        expected: &Operation,
    ) -> Result<Outcome<T>> {
        if answer.status != 202 {
            return answer.into_typed().map(Outcome::Done);
        }
        let pending: Pending = answer.into_typed()?;
        check_request(&pending, expected, self.identity())?;
        match self.identity() {
            Some(_) => finished(self.approve(&pending.request_id, pending.request.as_bytes())?),
            None => Ok(Outcome::Pending(self.request(&pending.request_id)?)),
        }
    }
}

/// Refuses a pending answer whose request does not decode, is not the one
/// named, was not created by `identity` (when there is one) or asks anything
/// but `expected`.
pub fn check_request(
    pending: &Pending,
    expected: &Operation,
    identity: Option<&shardvault_governance::Identity>,
) -> Result<Request> {
    let refuse = |why: String| Error::Config(format!("not approving request {}: {why}", pending.request_id));
    let request = Request::from_bytes(pending.request.as_bytes())
        .map_err(|e| refuse(format!("the coordinator's request does not decode: {e}")))?;
    if request.id.to_string() != pending.request_id {
        return Err(refuse(format!("its bytes name request {}", request.id)));
    }
    if let Some(identity) = identity {
        let me = identity.member_key().map_err(|e| Error::Config(e.to_string()))?;
        if request.creator != me.fingerprint() {
            return Err(refuse(format!("it was created by {}, not by this identity", request.creator)));
        }
    }
    if &request.operation != expected {
        return Err(refuse(format!(
            "it asks for a {} other than the one sent; the coordinator changed it",
            request.operation.kind()
        )));
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_percent_encoded() {
        assert_eq!(RequestFilter::default().query(), "");
        let filter = RequestFilter {
            status: Some("pending".into()),
            key: Some("a b&c=d".into()),
            since: Some(5),
            limit: Some(10),
        };
        assert_eq!(filter.query(), "?status=pending&key=a%20b%26c%3Dd&since=5&limit=10");
    }

    #[test]
    fn a_request_other_than_the_one_asked_for_is_not_approved() {
        let identity = shardvault_governance::Identity::generate("alice").unwrap();
        let other = shardvault_governance::Identity::generate("mallory").unwrap();
        let genesis = shardvault_governance::Genesis::new(
            "acme",
            vec![shardvault_governance::Owner {
                name: "alice".parse().unwrap(),
                public_key: identity.member_key().unwrap(),
            }],
            1_767_225_600,
        )
        .unwrap();
        let asked = Operation::AddMember {
            name: "bob".parse().unwrap(),
            role: "member".parse().unwrap(),
            public_key: other.member_key().unwrap(),
        };
        let swapped = Operation::AddMember {
            name: "bob".parse().unwrap(),
            role: "owner".parse().unwrap(),
            public_key: other.member_key().unwrap(),
        };
        let pending_for = |operation: Operation| {
            let request =
                Request::new(genesis.id().unwrap(), &identity.member_key().unwrap(), operation, 1_767_225_600, 3600)
                    .unwrap();
            let text = String::from_utf8(request.to_bytes().unwrap()).unwrap();
            Pending {
                request_id: request.id.to_string(),
                status: "pending".into(),
                request_hash: shardvault_governance::request_hash_hex(text.as_bytes()),
                request: text,
            }
        };
        assert!(check_request(&pending_for(asked.clone()), &asked, Some(&identity)).is_ok());
        let error = check_request(&pending_for(swapped), &asked, Some(&identity)).unwrap_err();
        assert!(error.to_string().contains("changed it"), "{error}");
        let error = check_request(&pending_for(asked.clone()), &asked, Some(&other)).unwrap_err();
        assert!(error.to_string().contains("not by this identity"), "{error}");
        let mut renamed = pending_for(asked.clone());
        renamed.request_id = "00000000000000000000000000000000".into();
        assert!(check_request(&renamed, &asked, Some(&identity)).is_err());
    }
}
