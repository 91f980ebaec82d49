//! The wasm-bindgen surface used by `bench/run.mjs` (`wasm-bindgen --target nodejs`).
//!
//! Every call takes the body and the header strings from JS, as the Worker receives them, so
//! the copy into wasm memory is part of what is measured.
//!
//! - `fullSoftware(body, signature, timestamp)`: the whole path with the `sha2`/`hmac` digest.
//! - `prepare(body, signature, timestamp)` then `finish(digest)`: the Worker's path. `prepare`
//!   reads the headers, checks the timestamp and returns the bytes to HMAC; JS digests them with
//!   the host's native crypto and hands the 32 bytes to `finish`, which compares them in
//!   constant time and runs parse, filter and dedupe keys.

use hubspot_edge_core::signature::Challenge;
use js_sys::Uint8Array;
use wasm_bindgen::prelude::*;

use crate::{
    BenchError, Fixture, Pipeline, Summary, CLIENT_SECRET, FILTER_RULES, METHOD, REQUEST_ID,
    TRACEPARENT, URI,
};

fn js(e: BenchError) -> JsError {
    JsError::new(&e.to_string())
}

/// The compiled pipeline plus the fixture, and the request waiting for its host digest.
#[wasm_bindgen]
#[derive(Debug)]
pub struct Bench {
    pipeline: Pipeline,
    fixture: Fixture,
    pending: Option<(Challenge, Vec<u8>)>,
}

#[wasm_bindgen]
impl Bench {
    /// Compiles the filter and builds the signed fixture.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Result<Bench, JsError> {
        Ok(Self {
            pipeline: Pipeline::new().map_err(js)?,
            fixture: Fixture::new(),
            pending: None,
        })
    }

    /// The batch body bytes (the JS baseline measures the very same bytes).
    pub fn body(&self) -> Vec<u8> {
        self.fixture.body.clone()
    }

    /// `X-HubSpot-Signature-v3` of the fixture.
    pub fn signature(&self) -> String {
        self.fixture.signature.clone()
    }

    /// `X-HubSpot-Request-Timestamp` of the fixture.
    pub fn timestamp(&self) -> String {
        self.fixture.timestamp.clone()
    }

    /// Constants of the fixture as JSON: secret, method, uri, nowMs, requestId, traceparent,
    /// filterRules.
    pub fn config(&self) -> String {
        format!(
            r#"{{"secret":"{CLIENT_SECRET}","method":"{METHOD}","uri":"{URI}","nowMs":{},"requestId":"{REQUEST_ID}","traceparent":"{TRACEPARENT}","filterRules":{FILTER_RULES}}}"#,
            crate::NOW_MS
        )
    }

    /// The whole path with the software HMAC; returns the number of kept events.
    #[wasm_bindgen(js_name = fullSoftware)]
    pub fn full_software(
        &self,
        body: &[u8],
        signature: &str,
        timestamp: &str,
    ) -> Result<u32, JsError> {
        self.pipeline
            .full(body, signature, timestamp)
            .map(kept)
            .map_err(js)
    }

    /// Software verification only.
    #[wasm_bindgen(js_name = verifySoftware)]
    pub fn verify_software(
        &self,
        body: &[u8],
        signature: &str,
        timestamp: &str,
    ) -> Result<(), JsError> {
        self.pipeline.verify(body, signature, timestamp).map_err(js)
    }

    /// Parse, filter and dedupe keys only; returns the number of kept events.
    #[wasm_bindgen(js_name = parseFilterKeys)]
    pub fn parse_filter_keys(&self, body: &[u8]) -> Result<u32, JsError> {
        self.pipeline.parse_filter_keys(body).map(kept).map_err(js)
    }

    /// First half of the host-HMAC path: keeps the body and returns the bytes to HMAC with the
    /// client secret.
    pub fn prepare(
        &mut self,
        body: Vec<u8>,
        signature: &str,
        timestamp: &str,
    ) -> Result<Uint8Array, JsError> {
        let challenge = self
            .pipeline
            .challenge(&body, signature, timestamp)
            .map_err(js)?;
        let message = Uint8Array::from(challenge.message());
        self.pending = Some((challenge, body));
        Ok(message)
    }

    /// Second half: checks the host's digest, then parse, filter and dedupe keys; returns the
    /// number of kept events.
    pub fn finish(&mut self, digest: &[u8]) -> Result<u32, JsError> {
        let (challenge, body) = self
            .pending
            .take()
            .ok_or_else(|| js(BenchError::NotPrepared))?;
        self.pipeline
            .finish(challenge, digest, &body)
            .map(kept)
            .map_err(js)
    }

    /// The queue messages of the kept events, one per line (cross-check with the JS
    /// baseline; a message is one line of JSON).
    #[wasm_bindgen(js_name = keptMessages)]
    pub fn kept_messages(&self, body: &[u8]) -> Result<String, JsError> {
        self.pipeline
            .kept_messages(body)
            .map(|messages| messages.join("\n"))
            .map_err(js)
    }
}

fn kept(s: Summary) -> u32 {
    s.kept
}

/// The enrichment benchmark (see [`crate::enrich`]).
#[wasm_bindgen]
#[derive(Debug)]
pub struct EnrichBench {
    inner: crate::enrich::Enrich,
}

#[wasm_bindgen]
impl EnrichBench {
    /// Builds the map and the 100-record batch.
    #[wasm_bindgen(constructor)]
    pub fn new() -> EnrichBench {
        Self {
            inner: crate::enrich::Enrich::new(),
        }
    }

    /// The baseline: decode every record's properties; returns the number of properties.
    #[wasm_bindgen(js_name = decodeOnly)]
    pub fn decode_only(&self) -> u32 {
        u32::try_from(self.inner.decode_only()).unwrap_or(0)
    }

    /// Decode, map, snapshot, diff; returns the number of changed fields.
    pub fn full(&self) -> u32 {
        u32::try_from(self.inner.full().fields).unwrap_or(0)
    }
}

impl Default for EnrichBench {
    fn default() -> Self {
        Self::new()
    }
}
