use thiserror::Error;

/// Why a request's HubSpot signature was not accepted.
///
/// Every variant is the sender's fault (or an attacker's); none is ours. [`code`] is stable and
/// precise (for logs and metrics); [`public_code`] is coarser and is what an HTTP response
/// should show, so that an error body does not help a forger narrow things down.
///
/// [`code`]: SignatureError::code
/// [`public_code`]: SignatureError::public_code
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// Neither `X-HubSpot-Signature-v3` nor `X-HubSpot-Signature` was sent.
    #[error("no hubspot signature header")]
    Missing,
    /// v3 signature sent without `X-HubSpot-Request-Timestamp`.
    #[error("v3 signature without a request timestamp")]
    TimestampMissing,
    /// The timestamp is not a decimal count of milliseconds.
    #[error("request timestamp is not a decimal millisecond count")]
    TimestampInvalid,
    /// The timestamp is older than the allowed age (5 minutes by default).
    #[error("request timestamp is too old")]
    TimestampExpired,
    /// The timestamp is further in the future than the allowed skew.
    #[error("request timestamp is in the future")]
    TimestampInFuture,
    /// `X-HubSpot-Signature` without `X-HubSpot-Signature-Version`.
    #[error("legacy signature without a signature version")]
    VersionMissing,
    /// `X-HubSpot-Signature-Version` is neither `v1` nor `v2`.
    #[error("unsupported signature version")]
    VersionUnsupported,
    /// Only v1/v2 headers were sent and the policy requires v3.
    #[error("v1/v2 signatures are not accepted; v3 is required")]
    LegacyRejected,
    /// The signature is not 32 bytes of hex (v1/v2) or base64 (v3).
    #[error("signature is not a well-formed sha-256 value")]
    Malformed,
    /// The signature is well formed but does not match the request.
    #[error("signature does not match the request")]
    Mismatch,
}

impl SignatureError {
    /// A stable, precise snake_case code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "signature_missing",
            Self::TimestampMissing => "timestamp_missing",
            Self::TimestampInvalid => "timestamp_invalid",
            Self::TimestampExpired => "timestamp_expired",
            Self::TimestampInFuture => "timestamp_in_future",
            Self::VersionMissing => "signature_version_missing",
            Self::VersionUnsupported => "signature_version_unsupported",
            Self::LegacyRejected => "legacy_signature_rejected",
            Self::Malformed => "signature_malformed",
            Self::Mismatch => "signature_mismatch",
        }
    }

    /// A stable, coarse code that is safe to return to the caller: `signature_missing`,
    /// `timestamp_out_of_window` or `signature_invalid`.
    pub fn public_code(&self) -> &'static str {
        match self {
            Self::Missing | Self::TimestampMissing => "signature_missing",
            Self::TimestampExpired | Self::TimestampInFuture => "timestamp_out_of_window",
            _ => "signature_invalid",
        }
    }
}
