//! Standard Webhooks known-answer vectors (the example used by the reference libraries' test
//! suites) with negative twins, against the public API of `outbound`.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use hubspot_edge_core::outbound::{WebhookSecret, WebhookVerifyError};

/// The public example secret of the Standard Webhooks reference test suites (not a secret).
const EXAMPLE_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[test]
fn standard_webhooks_known_answer() {
    // The example from the Standard Webhooks reference libraries' test suites.
    let secret = WebhookSecret::parse(EXAMPLE_SECRET).expect("the example secret parses");
    let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    let body = br#"{"test": 2432232314}"#;
    let sig = secret.sign(id, 1_614_265_330, body);
    assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    assert_eq!(
        secret.verify(id, "1614265330", &sig, body, 1_614_265_330, 300),
        Ok(())
    );
    let both = format!("v1,AAAA {sig}");
    assert_eq!(
        secret.verify(id, "1614265330", &both, body, 1_614_265_330, 300),
        Ok(())
    );
    // Negative twins.
    let err = |r: Result<(), WebhookVerifyError>| r.expect_err("verification should fail");
    assert_eq!(
        err(secret.verify(id, "1614265330", &sig, b"{}", 1_614_265_330, 300)),
        WebhookVerifyError::Mismatch
    );
    assert_eq!(
        err(secret.verify("msg_x", "1614265330", &sig, body, 1_614_265_330, 300)),
        WebhookVerifyError::Mismatch
    );
    assert_eq!(
        err(secret.verify(id, "1614265331", &sig, body, 1_614_265_330, 300)),
        WebhookVerifyError::Mismatch
    );
    assert_eq!(
        err(secret.verify(id, "1614265330", &sig, body, 1_614_265_330 + 301, 300)),
        WebhookVerifyError::TimestampOutOfWindow
    );
    assert_eq!(
        err(secret.verify(id, "x", &sig, body, 0, 300)),
        WebhookVerifyError::TimestampInvalid
    );
}

#[test]
fn secrets_must_be_whsec_base64_and_are_redacted() {
    assert!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
    assert!(WebhookSecret::parse("whsec_!!!").is_err());
    assert!(WebhookSecret::parse("whsec_c2hvcnQ=").is_err());
    let s = WebhookSecret::parse(EXAMPLE_SECRET).expect("the example secret parses");
    assert_eq!(format!("{s:?}"), "WebhookSecret([redacted])");
}
