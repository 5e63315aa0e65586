//! A small client of the coordinator's REST API.

use anyhow::{anyhow, Result};
use serde_json::Value;

/// The API at one base URL.
pub struct Api {
    base: String,
    agent: ureq::Agent,
}

impl Api {
    pub fn new(base: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(180)))
            .build()
            .new_agent();
        Api { base: base.trim_end_matches('/').to_string(), agent }
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        let response = self.agent.get(format!("{}{path}", self.base)).call()?;
        answer(response)
    }

    /// POSTs `body` with an idempotency key, so a retried command is safe.
    pub fn post(&self, path: &str, body: &Value, idempotency_key: Option<&str>) -> Result<Value> {
        let mut request = self.agent.post(format!("{}{path}", self.base));
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        answer(request.send_json(body)?)
    }
}

fn answer(mut response: ureq::http::Response<ureq::Body>) -> Result<Value> {
    let status = response.status();
    let body: Value = response.body_mut().read_json().unwrap_or(Value::Null);
    if status.is_success() {
        Ok(body)
    } else {
        Err(anyhow!(
            "{} ({}): {}",
            body["code"].as_str().unwrap_or("error"),
            status.as_u16(),
            body["message"].as_str().unwrap_or("")
        ))
    }
}
