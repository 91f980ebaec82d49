//! HubSpot request signatures: v1, v2 and v3 (docs/hubspot.md §1).
//!
//! Verification is split in two so that the expensive part, the SHA-256/HMAC over the body, can
//! run wherever it is cheapest:
//!
//! 1. [`Verifier::challenge`] reads the headers, checks the timestamp window against the `now`
//!    the caller passes in, and builds the exact bytes HubSpot signed. It returns a [`Challenge`].
//! 2. The caller computes the digest, either in software with [`Challenge::check_in_software`]
//!    or with the host's native crypto (WebCrypto in a Worker), and hands it to
//!    [`Challenge::check`], which compares in constant time.
//!
//! [`Verifier::verify`] does both steps in software, for runtimes without a faster digest.

mod error;
mod hex;
mod sign;

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use http::HeaderMap;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

pub use error::SignatureError;
pub use sign::{sign_v1, sign_v2, sign_v3};

/// `X-HubSpot-Signature`: the v1 or v2 signature, lowercase hex (docs/hubspot.md §1.1).
pub const HEADER_SIGNATURE: &str = "x-hubspot-signature";
/// `X-HubSpot-Signature-Version`: `v1` or `v2` (docs/hubspot.md §1.1).
pub const HEADER_SIGNATURE_VERSION: &str = "x-hubspot-signature-version";
/// `X-HubSpot-Signature-v3`: base64 HMAC-SHA256 (docs/hubspot.md §1.1; any case is accepted).
pub const HEADER_SIGNATURE_V3: &str = "x-hubspot-signature-v3";
/// `X-HubSpot-Request-Timestamp`: Unix epoch milliseconds as a decimal string (docs/hubspot.md
/// §1.1).
pub const HEADER_REQUEST_TIMESTAMP: &str = "x-hubspot-request-timestamp";

/// The app's client secret, the key of every HubSpot signature (docs/hubspot.md §1.1: the client
/// secret, not an access token). Its `Debug` output is redacted.
#[derive(Clone)]
pub struct ClientSecret(Box<[u8]>);

impl ClientSecret {
    /// Wraps the secret exactly as HubSpot shows it (a UUID-format string).
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        Self(secret.as_ref().into())
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret([redacted])")
    }
}

/// Which HubSpot signature scheme authenticated a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureVersion {
    /// `sha256(secret + body)`, hex. No timestamp: replayable forever (docs/hubspot.md §1.2).
    V1,
    /// `sha256(secret + method + uri + body)`, hex. No timestamp (docs/hubspot.md §1.3).
    V2,
    /// `base64(hmac_sha256(secret, method + uri + body + timestamp))` (docs/hubspot.md §1.4).
    V3,
}

impl SignatureVersion {
    /// A stable lowercase label (`v1`, `v2`, `v3`) for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
            Self::V3 => "v3",
        }
    }
}

/// Whether requests that carry only v1/v2 headers are accepted.
///
/// v1 signs the body alone and v2 adds method and URI, neither with a timestamp: anyone who
/// captured one genuine request can replay it forever. A request that carries v3 headers is
/// always judged by v3 alone, whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LegacySignatures {
    /// Only v3 is accepted (the default).
    #[default]
    Reject,
    /// v1 and v2 are accepted when no v3 header is present.
    Accept,
}

/// The digest a [`Challenge`] needs the caller to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    /// Plain SHA-256 of [`Challenge::message`] (v1, v2; the secret is inside the message).
    Sha256,
    /// HMAC-SHA256 of [`Challenge::message`] keyed with [`Challenge::hmac_key`] (v3).
    HmacSha256,
}

/// The parts of an incoming request that HubSpot signed.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// HTTP method as received, e.g. `POST`.
    pub method: &'a str,
    /// The full URL HubSpot called: scheme, host, path and query (docs/hubspot.md §1.4
    /// "requestUri").
    pub uri: &'a str,
    /// Request headers; names are matched case-insensitively.
    pub headers: &'a HeaderMap,
    /// The raw body bytes, exactly as received (never a re-serialisation).
    pub body: &'a [u8],
}

/// Verifies HubSpot signatures with a fixed secret and policy.
#[derive(Debug, Clone)]
pub struct Verifier {
    secret: ClientSecret,
    max_age_ms: u64,
    max_future_ms: u64,
    legacy: LegacySignatures,
}

impl Verifier {
    /// HubSpot's rule: reject timestamps older than 5 minutes (docs/hubspot.md §1.4 step 1).
    pub const DEFAULT_MAX_AGE_MS: u64 = 5 * 60 * 1000;
    /// Our choice (HubSpot only specifies "older than"): tolerate 60 s of clock skew into the
    /// future and no more, so a leaked signature cannot be minted far ahead of time.
    pub const DEFAULT_MAX_FUTURE_MS: u64 = 60 * 1000;

    /// A verifier accepting only v3 within the default window.
    pub fn new(secret: ClientSecret) -> Self {
        Self {
            secret,
            max_age_ms: Self::DEFAULT_MAX_AGE_MS,
            max_future_ms: Self::DEFAULT_MAX_FUTURE_MS,
            legacy: LegacySignatures::Reject,
        }
    }

    /// Sets how old a v3 timestamp may be.
    #[must_use]
    pub fn with_max_age_ms(mut self, ms: u64) -> Self {
        self.max_age_ms = ms;
        self
    }

    /// Sets how far in the future a v3 timestamp may be.
    #[must_use]
    pub fn with_max_future_ms(mut self, ms: u64) -> Self {
        self.max_future_ms = ms;
        self
    }

    /// Sets whether v1/v2-only requests are accepted.
    #[must_use]
    pub fn with_legacy(mut self, legacy: LegacySignatures) -> Self {
        self.legacy = legacy;
        self
    }

    /// Verifies `request` in software, checking the v3 timestamp against `now_ms`.
    ///
    /// # Errors
    /// Any [`SignatureError`]: missing or malformed headers, a timestamp outside the window,
    /// a v1/v2-only request when legacy signatures are rejected, or a signature that does not
    /// match.
    pub fn verify(
        &self,
        request: &SignedRequest<'_>,
        now_ms: u64,
    ) -> Result<SignatureVersion, SignatureError> {
        self.challenge(request, now_ms)?.check_in_software()
    }

    /// Like [`Verifier::verify`] but without the timestamp window: for replaying stored
    /// requests in tests or tools, never for live traffic.
    ///
    /// # Errors
    /// As [`Verifier::verify`], except the window errors.
    pub fn verify_ignoring_timestamp(
        &self,
        request: &SignedRequest<'_>,
    ) -> Result<SignatureVersion, SignatureError> {
        self.build_challenge(request, None)?.check_in_software()
    }

    /// Reads the headers, checks the timestamp window and builds the signed bytes; the digest
    /// is left to the caller (see the module docs).
    ///
    /// # Errors
    /// Any [`SignatureError`] that can be decided before computing the digest.
    pub fn challenge(
        &self,
        request: &SignedRequest<'_>,
        now_ms: u64,
    ) -> Result<Challenge, SignatureError> {
        self.build_challenge(request, Some(now_ms))
    }

    fn build_challenge(
        &self,
        request: &SignedRequest<'_>,
        now_ms: Option<u64>,
    ) -> Result<Challenge, SignatureError> {
        let headers = request.headers;
        // A request carrying v3 headers is judged by v3 alone, so that a stripped or forged v3
        // header can never fall back to the replayable v1.
        if let Some(signature) = headers.get(HEADER_SIGNATURE_V3) {
            let timestamp = headers
                .get(HEADER_REQUEST_TIMESTAMP)
                .ok_or(SignatureError::TimestampMissing)?
                .to_str()
                .map_err(|_| SignatureError::TimestampInvalid)?;
            let timestamp_ms = parse_timestamp(timestamp)?;
            if let Some(now_ms) = now_ms {
                if now_ms.saturating_sub(timestamp_ms) > self.max_age_ms {
                    return Err(SignatureError::TimestampExpired);
                }
                if timestamp_ms.saturating_sub(now_ms) > self.max_future_ms {
                    return Err(SignatureError::TimestampInFuture);
                }
            }
            let expected = decode_base64_signature(signature.as_bytes())?;
            let uri = v3_canonical_uri(request.uri);
            let mut message = Vec::with_capacity(
                request.method.len() + uri.len() + request.body.len() + timestamp.len(),
            );
            message.extend_from_slice(request.method.as_bytes());
            message.extend_from_slice(uri.as_bytes());
            message.extend_from_slice(request.body);
            // The exact header string, never a re-formatted number (docs/hubspot.md §1.4).
            message.extend_from_slice(timestamp.as_bytes());
            return Ok(Challenge {
                version: SignatureVersion::V3,
                algorithm: DigestAlgorithm::HmacSha256,
                key: self.secret.clone(),
                message,
                expected,
            });
        }

        let Some(signature) = headers.get(HEADER_SIGNATURE) else {
            return Err(SignatureError::Missing);
        };
        let version = match headers.get(HEADER_SIGNATURE_VERSION).map(|v| v.as_bytes()) {
            Some(v) if v.eq_ignore_ascii_case(b"v1") => SignatureVersion::V1,
            Some(v) if v.eq_ignore_ascii_case(b"v2") => SignatureVersion::V2,
            Some(_) => return Err(SignatureError::VersionUnsupported),
            None => return Err(SignatureError::VersionMissing),
        };
        if self.legacy == LegacySignatures::Reject {
            return Err(SignatureError::LegacyRejected);
        }
        let expected = hex::decode_32(signature.as_bytes()).ok_or(SignatureError::Malformed)?;
        let secret = self.secret.as_bytes();
        let mut message = Vec::with_capacity(
            secret.len() + request.method.len() + request.uri.len() + request.body.len(),
        );
        message.extend_from_slice(secret);
        if version == SignatureVersion::V2 {
            // v2 signs the URI verbatim: the decode table is v3's alone (docs/hubspot.md §1.3).
            message.extend_from_slice(request.method.as_bytes());
            message.extend_from_slice(request.uri.as_bytes());
        }
        message.extend_from_slice(request.body);
        Ok(Challenge {
            version,
            algorithm: DigestAlgorithm::Sha256,
            key: self.secret.clone(),
            message,
            expected,
        })
    }
}

/// The bytes to digest and the signature to compare against; see the module docs.
///
/// Its `Debug` output omits the message and key (a v1/v2 message contains the secret).
pub struct Challenge {
    version: SignatureVersion,
    algorithm: DigestAlgorithm,
    key: ClientSecret,
    message: Vec<u8>,
    expected: [u8; 32],
}

impl fmt::Debug for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Challenge")
            .field("version", &self.version)
            .field("algorithm", &self.algorithm)
            .field("message_len", &self.message.len())
            .finish_non_exhaustive()
    }
}

impl Challenge {
    /// The signature scheme this challenge checks.
    pub fn version(&self) -> SignatureVersion {
        self.version
    }

    /// Which digest [`Challenge::check`] expects.
    pub fn algorithm(&self) -> DigestAlgorithm {
        self.algorithm
    }

    /// The HMAC key for [`DigestAlgorithm::HmacSha256`] (the client secret).
    pub fn hmac_key(&self) -> &[u8] {
        self.key.as_bytes()
    }

    /// The bytes to digest.
    pub fn message(&self) -> &[u8] {
        &self.message
    }

    /// Compares the caller-computed digest with the received signature in constant time.
    ///
    /// # Errors
    /// [`SignatureError::Mismatch`] when they differ.
    pub fn check(self, digest: &[u8]) -> Result<SignatureVersion, SignatureError> {
        if bool::from(self.expected.as_slice().ct_eq(digest)) {
            Ok(self.version)
        } else {
            Err(SignatureError::Mismatch)
        }
    }

    /// Computes the digest in software (`sha2`/`hmac`) and checks it.
    ///
    /// # Errors
    /// [`SignatureError::Mismatch`] when the signature does not match.
    pub fn check_in_software(self) -> Result<SignatureVersion, SignatureError> {
        let digest = digest_in_software(self.algorithm, self.key.as_bytes(), &self.message);
        self.check(&digest)
    }
}

pub(crate) fn digest_in_software(
    algorithm: DigestAlgorithm,
    key: &[u8],
    message: &[u8],
) -> [u8; 32] {
    match algorithm {
        DigestAlgorithm::Sha256 => Sha256::digest(message).into(),
        DigestAlgorithm::HmacSha256 => hmac_sha256(key, message),
    }
}

pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn parse_timestamp(value: &str) -> Result<u64, SignatureError> {
    if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::TimestampInvalid);
    }
    value.parse().map_err(|_| SignatureError::TimestampInvalid)
}

fn decode_base64_signature(value: &[u8]) -> Result<[u8; 32], SignatureError> {
    // A proxy has been seen turning `+` into a space in this header (docs/hubspot.md §1.7); a space
    // is never valid base64, so reading it back as `+` cannot make a wrong signature match.
    let value: Cow<'_, [u8]> = if value.contains(&b' ') {
        Cow::Owned(
            value
                .iter()
                .map(|&b| if b == b' ' { b'+' } else { b })
                .collect(),
        )
    } else {
        Cow::Borrowed(value)
    };
    let mut out = [0u8; 32];
    match base64::engine::general_purpose::STANDARD.decode_slice(value.as_ref(), &mut out) {
        Ok(32) => Ok(out),
        _ => Err(SignatureError::Malformed),
    }
}

/// The URI as v3 signs it: HubSpot's 12 listed escapes decoded, everything else verbatim.
///
/// docs/hubspot.md §1.4 step 2 lists exactly these uppercase escapes. Whether HubSpot also decodes
/// lowercase ones is unconfirmed; we decode them too (case-insensitively), because a URI that
/// contains `%3a` is the same URI as one that contains `%3A` and HubSpot signs the URI it
/// called. Other escapes (`%20`, `%26`, …) stay encoded. Keep target URLs free of reserved
/// characters and every reading gives the same bytes.
pub fn v3_canonical_uri(uri: &str) -> Cow<'_, str> {
    if !uri.contains('%') {
        return Cow::Borrowed(uri);
    }
    let bytes = uri.as_bytes();
    let mut out = String::with_capacity(uri.len());
    let mut i = 0;
    let mut last = 0;
    while i + 2 < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(decoded) = decode_listed_escape(bytes[i + 1], bytes[i + 2]) {
                out.push_str(&uri[last..i]);
                out.push(decoded);
                i += 3;
                last = i;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&uri[last..]);
    Cow::Owned(out)
}

fn decode_listed_escape(hi: u8, lo: u8) -> Option<char> {
    let lo = lo.to_ascii_uppercase();
    Some(match (hi, lo) {
        (b'3', b'A') => ':',
        (b'2', b'F') => '/',
        (b'3', b'F') => '?',
        (b'4', b'0') => '@',
        (b'2', b'1') => '!',
        (b'2', b'4') => '$',
        (b'2', b'7') => '\'',
        (b'2', b'8') => '(',
        (b'2', b'9') => ')',
        (b'2', b'A') => '*',
        (b'2', b'C') => ',',
        (b'3', b'B') => ';',
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
