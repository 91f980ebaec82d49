//! HubSpot API response interpretation (`api::interpret`, `RateLimitHeaders`, `RetryAfter`):
//! any status, headers and body give `Ok` or a typed `ApiError` (never a panic), for every
//! response type the client reads; a 2xx fails only to decode; and every error leads the retry
//! policy to a decision whose `at_ms` is `now_ms + after_ms`.
//!
//! Input: the request kind (1 byte), the attempt (1), `now_ms` (8, little-endian), the jitter
//! (1, as n/255), then an HTTP-like response: the status line (`429`), header lines, an empty
//! line, the body.
#![no_main]

use hubspot_edge_core::api::{
    self, interpret, ApiError, AssociationResult, BatchResponse, CallDecision, Outcome, Page,
    RateLimitHeaders, RequestKind, SimpleObject, TokenResponse,
};
use hubspot_edge_fuzz::{message, Reader};
use libfuzzer_sys::fuzz_target;

fn check<T: serde::de::DeserializeOwned>(
    status: u16,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Option<ApiError> {
    match interpret::<T>(status, headers, body) {
        Ok(_) => {
            assert!((200..300).contains(&status), "only a 2xx is Ok");
            None
        }
        Err(e) => {
            assert!(!e.code().is_empty());
            if (200..300).contains(&status) {
                assert!(
                    matches!(e, ApiError::Decode { .. }),
                    "a 2xx fails only to decode"
                );
            }
            Some(e)
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let kind = match r.u8() % 5 {
        0 => RequestKind::Read,
        1 => RequestKind::Write,
        2 => RequestKind::Create,
        3 => RequestKind::Search,
        _ => RequestKind::OAuth,
    };
    let attempt = u32::from(r.u8());
    let now_ms = r.u64();
    let jitter = f64::from(r.u8()) / 255.0;
    let msg = message(r.rest());
    let Some(status) = std::str::from_utf8(msg.first_line)
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
    else {
        return;
    };
    let (headers, body) = (&msg.headers, msg.body);
    let _ = RateLimitHeaders::from_headers(headers);
    let errors = [
        check::<SimpleObject>(status, headers, body),
        check::<BatchResponse>(status, headers, body),
        check::<BatchResponse<AssociationResult>>(status, headers, body),
        check::<Page>(status, headers, body),
        check::<TokenResponse>(status, headers, body),
        check::<serde_json::Value>(status, headers, body),
        check::<()>(status, headers, body),
    ];
    for error in errors.into_iter().flatten() {
        match &error {
            ApiError::RateLimited {
                retry_after: Some(r),
                ..
            }
            | ApiError::Locked {
                retry_after: Some(r),
                ..
            }
            | ApiError::MigrationInProgress {
                retry_after: Some(r),
                ..
            } => {
                let _ = r.delay_ms(now_ms);
            }
            _ => {}
        }
        let outcome = Outcome::Failed(error);
        if let CallDecision::Retry { after_ms, at_ms } =
            api::decide(kind, attempt, &outcome, now_ms, jitter)
        {
            assert_eq!(at_ms, now_ms.saturating_add(after_ms));
        }
    }
});
