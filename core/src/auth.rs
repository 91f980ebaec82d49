//! Bearer-token checks for operator endpoints.

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// Whether an `Authorization` header value is `Bearer <expected>`.
///
/// Both tokens are hashed before a constant-time comparison, so neither the content nor the
/// length of the expected token leaks through timing. An empty expected token never matches.
pub fn bearer_matches(authorization: Option<&str>, expected: &str) -> bool {
    let Some(given) = authorization.and_then(|h| {
        let (scheme, token) = h.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }) else {
        return false;
    };
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    !expected.is_empty() && bool::from(a.ct_eq(&b))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn table() {
        let cases = [
            (Some("Bearer s3cret"), "s3cret", true),
            (Some("bearer s3cret"), "s3cret", true),
            (Some("  Bearer   s3cret "), "s3cret", true),
            (Some("Bearer s3cre"), "s3cret", false),
            (Some("Bearer s3cret2"), "s3cret", false),
            (Some("Basic s3cret"), "s3cret", false),
            (Some("s3cret"), "s3cret", false),
            (Some("Bearer "), "", false),
            (None, "s3cret", false),
        ];
        for (header, expected, ok) in cases {
            assert_eq!(bearer_matches(header, expected), ok, "{header:?}");
        }
    }
}
