//! The built `hubspot-mock` binary: `--help` documents it and exits 0; a bad flag exits 2.

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hubspot-mock"))
        .args(args)
        .output()
        .expect("run hubspot-mock");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_flag_with_defaults_fault_syntax_endpoints_and_examples() {
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, Some(0), "{stdout}");
    for flag in [
        "--port",
        "--token",
        "--seed-contacts",
        "--seed-companies",
        "--seed-deals",
        "--burst",
        "--window-ms",
        "--daily",
        "--search-per-second",
        "--client-id",
        "--client-secret",
        "--refresh-token",
        "--auth-code",
        "--token-ttl-secs",
        "--fault-next",
        "--fault-rate",
        "--fault-status",
        "--fault-seed",
        "--latency-ms",
        "--webhook-url",
        "--webhook-secret",
        "--app-id",
        "--portal-id",
        "--webhook-retry-ms",
        "--webhook-batch-ms",
        "--webhook-max-retries",
        "--webhook-timeout-ms",
        "--developer-api-key",
        "--action-portal-id",
        "--action-sign-v3",
        "--action-timeout-ms",
        "--action-retry-base-ms",
        "--action-retry-cap-ms",
        "--action-max-attempts",
        "--action-concurrency",
        "--retry-after-seconds",
        "--require-typed-outputs",
    ] {
        assert!(
            stdout.contains(flag),
            "--help does not name {flag}:\n{stdout}"
        );
    }
    for text in [
        "[default: 100]",
        "[default: 10000]",
        "[default: 250000]",
        "[default: 1800]",
        "429:POLICY",
        "drop",
        "/__mock/faults",
        "/__mock/stats",
        "/__mock/workflows/enroll",
        "/__mock/clock",
        "Examples:",
    ] {
        assert!(stdout.contains(text), "--help lacks {text:?}:\n{stdout}");
    }
    let (short, short_out, _) = run(&["-h"]);
    assert_eq!(short, Some(0));
    assert!(short_out.contains("--fault-next"));
}

#[test]
fn bad_flags_exit_2_with_an_error_on_stderr() {
    for args in [
        &["--no-such-flag"][..],
        &["--port", "http"],
        &["--fault-next", "503,sometimes"],
        &["--webhook-url", "http://127.0.0.1:1/h"],
    ] {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("error:"), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?} printed {stdout}");
    }
}

#[test]
fn readme_documents_every_flag_of_help() {
    let (_, help, _) = run(&["--help"]);
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read tests/mock/README.md");
    let flags: Vec<&str> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .filter(|w| !matches!(*w, "--help" | "--version"))
        .collect();
    assert!(flags.len() >= 27, "{flags:?}");
    for flag in flags {
        assert!(
            readme.contains(&format!("`{flag} ")) || readme.contains(&format!("`{flag}`")),
            "README.md does not document {flag}"
        );
    }
}
