//! Benchmark of the hubspot-edge ingress path for one 100-event, ~30 KB webhook batch: verify
//! the v3 signature, parse, then core's [`triage`] (filter, dedupe keys, once per batch, the
//! queue messages written): what `worker/src/ingress.rs` does, minus the queue sends.
//!
//! The native binary (`src/main.rs`) and the wasm build (`wasm` module, driven by
//! `bench/run.mjs`) share everything here, so both measure the same bytes and the same work.

use std::fmt;

use http::{HeaderMap, HeaderValue};
use hubspot_edge_core::event::{parse_batch, BatchError};
use hubspot_edge_core::filter::{Filter, FilterConfigError};
use hubspot_edge_core::ingress::{triage, Received, Triage};
use hubspot_edge_core::signature::{
    sign_v3, Challenge, ClientSecret, SignatureError, SignedRequest, Verifier,
    HEADER_REQUEST_TIMESTAMP, HEADER_SIGNATURE_V3,
};

pub mod batch;
pub mod enrich;
#[cfg(target_arch = "wasm32")]
mod wasm;

/// The app's client secret (the HMAC key): a made-up fixture, not any app's, of the same length
/// as HubSpot's (a 36-character UUID), so the HMAC costs the same.
pub const CLIENT_SECRET: &str = "bench-fixture-secret-not-a-real-app0";
/// The HTTP method HubSpot uses.
pub const METHOD: &str = "POST";
/// The target URL HubSpot signed.
pub const URI: &str = "https://hooks.example.com/webhooks/hubspot?portal=62515";
/// `X-HubSpot-Request-Timestamp` of the request.
pub const TIMESTAMP_MS: &str = "1764219995000";
/// The "current time" passed to the verifier: 1.5 s after the timestamp.
pub const NOW_MS: u64 = 1_764_219_996_500;
/// The ingress request's id, carried by every queue message (the Worker's is the `cf-ray`).
pub const REQUEST_ID: &str = "8e0c5a1b2f3d4c5e-AMS";
/// The ingress span's `traceparent`, carried by every queue message (the Worker continues
/// HubSpot's trace or starts one).
pub const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A realistic `FILTER_RULES`: selected properties per object, all lifecycle events, no
/// imports, and the two-way-sync loop guard.
pub const FILTER_RULES: &str = r#"{
  "include": [
    {"types": ["contact.propertyChange"], "properties": ["email", "firstname", "lastname", "phone", "lifecyclestage", "hs_lead_status", "jobtitle", "company"]},
    {"types": ["company.propertyChange"], "properties": ["name", "domain", "industry", "annualrevenue", "numberofemployees"]},
    {"types": ["deal.propertyChange"], "properties": ["dealstage", "amount", "closedate", "pipeline", "hubspot_owner_id"]},
    {"types": ["object.propertyChange"], "objectTypes": ["contact", "0-3"], "properties": ["email", "lifecyclestage", "dealstage", "amount"]},
    {"types": ["*.creation", "*.deletion", "*.merge", "*.associationChange"]}
  ],
  "exclude": [
    {"changeSources": ["IMPORT"]},
    {"portalIds": [99999], "types": ["*"]}
  ],
  "ignoreOwnChanges": {"appIds": [1160452], "sourceIds": ["userId:9000001"]}
}"#;

/// The request the benchmark replays: body and signature headers.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The batch (see [`batch::build`]).
    pub body: Vec<u8>,
    /// `X-HubSpot-Signature-v3`.
    pub signature: String,
    /// `X-HubSpot-Request-Timestamp`.
    pub timestamp: String,
}

impl Fixture {
    /// Builds and signs the batch.
    pub fn new() -> Self {
        let body = batch::build();
        let signature = sign_v3(
            &ClientSecret::new(CLIENT_SECRET),
            METHOD,
            URI,
            &body,
            TIMESTAMP_MS,
        );
        Self {
            body,
            signature,
            timestamp: TIMESTAMP_MS.to_owned(),
        }
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

/// What the path found in one batch; returned so that no work can be optimised away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Elements in the batch.
    pub events: u32,
    /// Events kept by the filter, with a fresh dedupe key.
    pub kept: u32,
    /// Events the filter dropped.
    pub filtered: u32,
    /// Kept events whose key was already seen in this batch.
    pub duplicates: u32,
    /// Elements that are not events (dead letters).
    pub invalid: u32,
    /// Total length of the queue messages.
    pub message_bytes: u32,
}

impl Summary {
    fn of(t: &Triage) -> Self {
        Self {
            events: count(t.counts.events),
            kept: count(t.counts.queued),
            filtered: count(t.counts.filtered),
            duplicates: count(t.counts.duplicates),
            invalid: count(t.counts.dead_lettered),
            message_bytes: count(t.queue.iter().map(String::len).sum()),
        }
    }
}

/// Why the path failed (never expected on the benchmark's own fixture).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BenchError {
    /// The signature headers are not valid header values.
    Header,
    /// Signature rejected.
    Signature(SignatureError),
    /// Body is not a JSON array.
    Batch(BatchError),
    /// `FILTER_RULES` is invalid.
    Filter(FilterConfigError),
    /// The host-HMAC path was finished without being prepared.
    NotPrepared,
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header => f.write_str("signature header is not a valid header value"),
            Self::Signature(e) => write!(f, "{}: {e}", e.code()),
            Self::Batch(e) => write!(f, "{}: {e}", e.code()),
            Self::Filter(e) => write!(f, "{}: {e}", e.code()),
            Self::NotPrepared => f.write_str("finish called without prepare"),
        }
    }
}

impl std::error::Error for BenchError {}

impl From<SignatureError> for BenchError {
    fn from(e: SignatureError) -> Self {
        Self::Signature(e)
    }
}

impl From<BatchError> for BenchError {
    fn from(e: BatchError) -> Self {
        Self::Batch(e)
    }
}

/// The ingress path with its configuration compiled once, as the Worker holds it.
#[derive(Debug, Clone)]
pub struct Pipeline {
    verifier: Verifier,
    filter: Filter,
}

impl Pipeline {
    /// The verifier for [`CLIENT_SECRET`] and the filter compiled from [`FILTER_RULES`].
    ///
    /// # Errors
    /// [`BenchError::Filter`] if the rules do not compile.
    pub fn new() -> Result<Self, BenchError> {
        Ok(Self {
            verifier: Verifier::new(ClientSecret::new(CLIENT_SECRET)),
            filter: Filter::from_json(FILTER_RULES).map_err(BenchError::Filter)?,
        })
    }

    /// Reads the signature headers (as the Worker copies them from the request) and builds the
    /// challenge: timestamp window, base64 decode, signed message.
    ///
    /// # Errors
    /// [`BenchError::Header`] or [`BenchError::Signature`].
    pub fn challenge(
        &self,
        body: &[u8],
        signature: &str,
        timestamp: &str,
    ) -> Result<Challenge, BenchError> {
        let headers = headers(signature, timestamp)?;
        let request = SignedRequest {
            method: METHOD,
            uri: URI,
            headers: &headers,
            body,
        };
        Ok(self.verifier.challenge(&request, NOW_MS)?)
    }

    /// Verifies the signature with the software HMAC (`sha2`/`hmac`).
    ///
    /// # Errors
    /// [`BenchError::Header`] or [`BenchError::Signature`].
    pub fn verify(&self, body: &[u8], signature: &str, timestamp: &str) -> Result<(), BenchError> {
        self.challenge(body, signature, timestamp)?
            .check_in_software()?;
        Ok(())
    }

    /// Parses the batch and triages it ([`triage`]: filter, dedupe keys, repeats within the
    /// batch queued once, the queue messages written): the Worker's ingress without the sends.
    ///
    /// # Errors
    /// [`BenchError::Batch`] when the body is not a JSON array.
    pub fn parse_filter_keys(&self, body: &[u8]) -> Result<Summary, BenchError> {
        self.triage(body).map(|t| Summary::of(&t))
    }

    /// The whole path: software verify, then [`Pipeline::parse_filter_keys`].
    ///
    /// # Errors
    /// As [`Pipeline::verify`] and [`Pipeline::parse_filter_keys`].
    pub fn full(
        &self,
        body: &[u8],
        signature: &str,
        timestamp: &str,
    ) -> Result<Summary, BenchError> {
        self.verify(body, signature, timestamp)?;
        self.parse_filter_keys(body)
    }

    /// The whole path with the digest computed by the host (the Worker's WebCrypto path):
    /// compare `digest` with the challenge, then [`Pipeline::parse_filter_keys`].
    ///
    /// # Errors
    /// As [`Pipeline::full`].
    pub fn finish(
        &self,
        challenge: Challenge,
        digest: &[u8],
        body: &[u8],
    ) -> Result<Summary, BenchError> {
        challenge.check(digest)?;
        self.parse_filter_keys(body)
    }

    /// The queue messages of the kept events, in order: the cross-check against the JS
    /// baseline, which must write the very same bytes.
    ///
    /// # Errors
    /// [`BenchError::Batch`] when the body is not a JSON array.
    pub fn kept_messages(&self, body: &[u8]) -> Result<Vec<String>, BenchError> {
        Ok(self.triage(body)?.queue)
    }

    fn triage(&self, body: &[u8]) -> Result<Triage, BenchError> {
        let elements = parse_batch(body)?;
        let received = Received {
            at_ms: NOW_MS,
            request_id: REQUEST_ID,
            traceparent: Some(TRACEPARENT),
        };
        Ok(triage(&elements, &self.filter, received))
    }
}

/// The two signature headers, built per request as the Worker does.
fn headers(signature: &str, timestamp: &str) -> Result<HeaderMap, BenchError> {
    let mut map = HeaderMap::with_capacity(4);
    map.insert(
        HEADER_SIGNATURE_V3,
        HeaderValue::from_str(signature).map_err(|_| BenchError::Header)?,
    );
    map.insert(
        HEADER_REQUEST_TIMESTAMP,
        HeaderValue::from_str(timestamp).map_err(|_| BenchError::Header)?,
    );
    Ok(map)
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_verifies_and_the_filter_keeps_a_realistic_share() {
        let fixture = Fixture::new();
        let pipeline = Pipeline::new().unwrap();
        let s = pipeline
            .full(&fixture.body, &fixture.signature, &fixture.timestamp)
            .unwrap();
        assert_eq!(s.events, 100);
        assert_eq!(s.invalid, 0);
        assert!(s.kept > 30 && s.filtered > 10, "{s:?}");
        let messages = pipeline.kept_messages(&fixture.body).unwrap();
        assert_eq!(messages.len(), usize::try_from(s.kept).unwrap());
        assert!(
            messages[0].starts_with(r#"{"v":1,"key":"hs1_62515_1160452_"#),
            "{}",
            messages[0]
        );
    }

    #[test]
    fn host_digest_path_agrees_and_rejects_a_wrong_digest() {
        let fixture = Fixture::new();
        let pipeline = Pipeline::new().unwrap();
        let challenge = pipeline
            .challenge(&fixture.body, &fixture.signature, &fixture.timestamp)
            .unwrap();
        assert_eq!(challenge.hmac_key(), CLIENT_SECRET.as_bytes());
        let wrong = [0u8; 32];
        assert_eq!(
            pipeline.finish(challenge, &wrong, &fixture.body),
            Err(BenchError::Signature(SignatureError::Mismatch))
        );
        let mut tampered = fixture.body.clone();
        tampered[10] ^= 1;
        assert!(pipeline
            .verify(&tampered, &fixture.signature, &fixture.timestamp)
            .is_err());
    }
}
