//! The README's offline walkthrough ("Try it offline"), run as written: its shell blocks are
//! read from README.md and run from the repository root, each in its own process group, and
//! what the README says the user will see is checked.
//!
//! The blocks are fenced as ```` ```sh walkthrough:NAME ```` (`receiver`, `mock`, `worker`: long
//! running, in that order; `try`: the commands the user types) and ```` ```text
//! walkthrough:expect ```` (what terminal 1 shows, `…` matching anything). Only two things
//! differ from a user's terminal: `PERSIST_TO` points the Worker's local state at a fresh
//! directory (a developer's `.wrangler/state` would carry snapshots from an earlier try), and
//! cargo's per-test variables are removed from the environment.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hubspot_edge_tests::{poll_until, repo_root, ProcessGroup};
use libtest_mimic::Failed;
use serde_json::Value;

use super::{check, Outcome};
use hubspot_edge_tests::Fixture;

/// The fixed ports the README uses: the Worker, the mock, the receiver.
const PORTS: [u16; 3] = [8787, 8090, 8091];
/// The first run compiles the receiver and the mock (debug) and may build the Worker.
const START_DEADLINE: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_millis(100);

/// One fenced block of the walkthrough section.
#[derive(Debug)]
struct Block {
    name: String,
    text: String,
}

/// The blocks fenced ```` ```LANG walkthrough:NAME ```` in `readme`, in order.
fn blocks(readme: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    for line in readme.lines() {
        if let Some(block) = current.as_mut() {
            if line.trim_start().starts_with("```") {
                out.extend(current.take());
            } else {
                block.text.push_str(line);
                block.text.push('\n');
            }
        } else if let Some(info) = line.trim_start().strip_prefix("```") {
            if let Some(name) = info
                .split_whitespace()
                .find_map(|w| w.strip_prefix("walkthrough:"))
            {
                current = Some(Block {
                    name: name.to_owned(),
                    text: String::new(),
                });
            }
        }
    }
    out
}

fn block<'a>(blocks: &'a [Block], name: &str) -> Result<&'a str, Failed> {
    blocks
        .iter()
        .find(|b| b.name == name)
        .map(|b| b.text.as_str())
        .ok_or_else(|| format!("README has no ```… walkthrough:{name} block").into())
}

/// `bash -c text` from the repository root, with cargo's per-test variables removed.
fn shell(root: &Path, text: &str, persist_to: &Path) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(text).current_dir(root);
    for (k, _) in std::env::vars_os() {
        if let Some(k) = k.to_str() {
            if k.starts_with("CARGO_PKG_")
                || k.starts_with("CARGO_MANIFEST_")
                || k.starts_with("CARGO_BIN_")
                || matches!(
                    k,
                    "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR"
                )
            {
                cmd.env_remove(k);
            }
        }
    }
    cmd.env("PERSIST_TO", persist_to)
        .env("NO_COLOR", "1")
        .env("WRANGLER_SEND_METRICS", "false");
    cmd
}

/// Waits until a line of `group`'s output contains `needle`, failing early if it exits.
fn wait_line(group: &ProcessGroup, name: &str, needle: &str) -> Outcome {
    poll_until(
        &format!("{name} prints {needle:?}"),
        START_DEADLINE,
        POLL,
        || {
            if group.lines().iter().any(|l| l.contains(needle)) {
                return Some(Ok(()));
            }
            group.exit_status().map(|status| {
                Err(format!(
                    "{name} exited ({status}) before printing {needle:?}:\n{}",
                    tail(&group.lines())
                ))
            })
        },
    )?
    .map_err(Failed::from)
}

fn tail(lines: &[String]) -> String {
    let from = lines.len().saturating_sub(40);
    lines[from..].join("\n")
}

/// Whether the lines of `expected` appear in `output` as consecutive lines, `…` in an expected
/// line matching any text, and as a whole block: the line after them is not one more indented
/// line of the same event (a change the README does not show).
fn shows(output: &[String], expected: &str) -> bool {
    let want: Vec<&str> = expected.lines().collect();
    (0..=output.len().saturating_sub(want.len())).any(|at| {
        let window = &output[at..(at + want.len()).min(output.len())];
        window.len() == want.len()
            && window
                .iter()
                .zip(&want)
                .all(|(got, want)| matches(got, want))
            && output
                .get(at + want.len())
                .is_none_or(|next| !next.starts_with(' '))
    })
}

fn matches(got: &str, want: &str) -> bool {
    let mut parts = want.split('…');
    let Some(first) = parts.next() else {
        return got.is_empty();
    };
    let Some(mut rest) = got.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// The README's offline walkthrough, as written: the receiver, the mock and the Worker
/// started by the README's commands, the README's `curl`s, and the receiver's output showing
/// the mapped change with its true old value.
pub(super) fn walkthrough_from_the_readme(_fx: &Fixture) -> Outcome {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md"))?;
    let blocks = blocks(&readme);

    // The README's enrichment example is the map the walkthrough runs with.
    let offline = std::fs::read_to_string(root.join(".dev.vars.offline"))?;
    let map = offline
        .lines()
        .find_map(|l| l.strip_prefix("ENRICHMENT_MAP="))
        .ok_or("no ENRICHMENT_MAP in .dev.vars.offline")?;
    check(readme.contains(&format!("`{map}`")), || {
        format!("README's ENRICHMENT_MAP example is not .dev.vars.offline's: {map}")
    })?;

    for port in PORTS {
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            return Err(format!(
                "port {port} is in use: the README's walkthrough needs 8787, 8090 and 8091 free \
                 (is `./scripts/run.sh` or the mock running?)"
            )
            .into());
        }
    }
    let state = tempdir("walkthrough-state")?;

    let receiver = ProcessGroup::spawn(
        shell(&root, block(&blocks, "receiver")?, &state),
        "walkthrough-receiver",
    )?;
    wait_line(
        &receiver,
        "the receiver",
        "receiving on http://127.0.0.1:8091/hook",
    )?;
    let mock = ProcessGroup::spawn(
        shell(&root, block(&blocks, "mock")?, &state),
        "walkthrough-mock",
    )?;
    wait_line(&mock, "the mock", "listening on http://127.0.0.1:8090")?;
    let worker = ProcessGroup::spawn(
        shell(&root, block(&blocks, "worker")?, &state),
        "walkthrough-worker",
    )?;
    wait_line(&worker, "the Worker", "Ready on http://127.0.0.1:8787")?;
    wait_line(
        &worker,
        "run.sh's configuration report",
        "==> configuration ok",
    )?;
    check(
        !worker
            .lines()
            .iter()
            .any(|l| l.contains("Unable to fetch the `Request.cf` object")),
        || "wrangler tried to fetch Request.cf (run.sh should turn it off)".to_owned(),
    )?;
    poll_until("the Worker answers /healthz", START_DEADLINE, POLL, || {
        hubspot_edge_tests::http::get("http://127.0.0.1:8787/healthz", None)
            .ok()
            .filter(|r| r.status == 200)
    })?;

    let out = shell(&root, block(&blocks, "try")?, &state).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    check(out.status.success(), || {
        format!(
            "the README's commands failed ({}): {stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    // Two JSON documents, back to back: the read through the Worker, then the mock's answer to
    // the PATCH.
    let docs: Vec<Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the curls did not print JSON ({e}): {stdout}"))?;
    let read = docs.first().ok_or("the first curl printed nothing")?;
    check(
        read["id"] == "1" && read["properties"]["firstname"] == "Alice",
        || format!("the seeded contact read through the Worker is not contact 1, Alice: {read}"),
    )?;
    check(
        docs.get(1)
            .is_some_and(|d| d["properties"]["firstname"] == "Ada"),
        || format!("the PATCH in the mock did not answer the updated record: {stdout}"),
    )?;

    let expected = block(&blocks, "expect")?;
    poll_until(
        "the receiver shows the README's expected output",
        Duration::from_secs(60),
        POLL,
        || shows(&receiver.lines(), expected).then_some(()),
    )
    .map_err(|e| {
        format!(
            "{e}\nexpected:\n{expected}\nthe receiver printed:\n{}\nthe Worker's last lines:\n{}",
            tail(&receiver.lines()),
            tail(&worker.lines())
        )
    })?;
    check(
        !receiver.lines().iter().any(|l| l.starts_with("REJECTED")),
        || {
            format!(
                "the receiver rejected a request:\n{}",
                tail(&receiver.lines())
            )
        },
    )?;

    worker.stop();
    mock.stop();
    receiver.stop();
    let _ = std::fs::remove_dir_all(&state);
    Ok(())
}

/// A fresh directory under `target/e2e`.
fn tempdir(prefix: &str) -> Result<PathBuf, Failed> {
    let dir = repo_root()
        .join("target/e2e")
        .join(format!("{prefix}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
