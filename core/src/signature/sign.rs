//! Producing HubSpot signatures: for tests, for the local HubSpot mock, and for any runtime
//! that needs to call an endpoint expecting HubSpot-signed requests.

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::{hex, hmac_sha256, v3_canonical_uri, ClientSecret};

/// The `X-HubSpot-Signature` value for a v1 request: `hex(sha256(secret + body))`.
pub fn sign_v1(secret: &ClientSecret, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(secret.as_bytes());
    hasher.update(body);
    hex::encode(&hasher.finalize())
}

/// The `X-HubSpot-Signature` value for a v2 request:
/// `hex(sha256(secret + method + uri + body))`, the URI taken verbatim.
pub fn sign_v2(secret: &ClientSecret, method: &str, uri: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(secret.as_bytes());
    hasher.update(method.as_bytes());
    hasher.update(uri.as_bytes());
    hasher.update(body);
    hex::encode(&hasher.finalize())
}

/// The `X-HubSpot-Signature-v3` value:
/// `base64(hmac_sha256(secret, method + uri + body + timestamp))`, with the URI read through
/// HubSpot's decode table ([`v3_canonical_uri`]) and the timestamp as the exact header string.
pub fn sign_v3(
    secret: &ClientSecret,
    method: &str,
    uri: &str,
    body: &[u8],
    timestamp_ms: &str,
) -> String {
    let uri = v3_canonical_uri(uri);
    let mut message =
        Vec::with_capacity(method.len() + uri.len() + body.len() + timestamp_ms.len());
    message.extend_from_slice(method.as_bytes());
    message.extend_from_slice(uri.as_bytes());
    message.extend_from_slice(body);
    message.extend_from_slice(timestamp_ms.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(hmac_sha256(secret.as_bytes(), &message))
}
