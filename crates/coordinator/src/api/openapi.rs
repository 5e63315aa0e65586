//! The OpenAPI 3.1 document at `/openapi.json`, generated from the
//! `shardvault-api` types and each handler's `#[utoipa::path]`; this module
//! adds only what is common to every call: the answers of the cross-site
//! guard (403, 421) and of its body checks (400, 413, 415) on every POST.

use serde_json::{json, Value};
use shardvault_api::ErrorBody;
use utoipa::OpenApi;

/// The header that makes a creating call safe to repeat.
#[derive(utoipa::IntoParams)]
#[into_params(names("Idempotency-Key"), parameter_in = Header)]
#[allow(dead_code)] // only its parameter description is used
pub(super) struct IdempotencyKey(
    /// Repeat a creating call safely: the same key, method, path and body
    /// return the first answer (with header `idempotent-replay: true`);
    /// another request under the same key is a 409.
    Option<String>,
);

/// The key a call is about.
#[derive(utoipa::IntoParams)]
#[into_params(names("key_id"), parameter_in = Path)]
#[allow(dead_code)] // only its parameter description is used
pub(super) struct KeyPath(
    /// The key id (32 hex characters).
    String,
);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "shardvault coordinator",
        description = "The REST API of a shardvault coordinator. Every error is an `ErrorBody` whose `code` is one \
                       of `ErrorCode` (each code's status is listed there). Every POST must be sent with \
                       `Content-Type: application/json`; cross-site browser requests and foreign `Host` names \
                       are refused."
    ),
    components(schemas(ErrorBody, shardvault_api::ErrorCode)),
    tags(
        (name = "cluster", description = "the nodes"),
        (name = "keys", description = "key generation, refresh"),
        (name = "addresses", description = "attested addresses"),
        (name = "signing", description = "messages and transactions"),
        (name = "requests", description = "request records"),
        (name = "backups", description = "encrypted key-share backups"),
    )
)]
struct Base;

/// The document before the routes are added.
pub(super) fn base() -> utoipa::openapi::OpenApi {
    Base::openapi()
}

fn error(description: &str) -> Value {
    json!({ "description": description,
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } } })
}

/// The document with the guard's answers added to every operation.
pub(super) fn finish(document: utoipa::openapi::OpenApi) -> Value {
    let mut document = match serde_json::to_value(&document) {
        Ok(document) => document,
        // utoipa's document is plain data; it always serializes.
        Err(error) => return json!({ "error": error.to_string() }),
    };
    if let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut().filter_map(Value::as_object_mut) {
            for (method, operation) in item.iter_mut() {
                let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) else {
                    continue;
                };
                let mut add = |status: &str, description: &str| {
                    responses.entry(status).or_insert_with(|| error(description));
                };
                add("403", "`cross_site`: a browser request from another site (`Origin`, `Sec-Fetch-Site`)");
                add("421", "`unknown_host`: the `Host` is not one of the coordinator's names");
                if method == "post" {
                    add("400", "`invalid_request`: the body is not the call's JSON object");
                    add("413", "`body_too_large`: over 2 MiB");
                    add("415", "`unsupported_media_type`: not sent as `Content-Type: application/json`");
                }
            }
        }
    }
    document
}
