//! `wrangler dev` as a managed child process.
//!
//! ```no_run
//! use hubspot_edge_tests::{WranglerDev, WranglerOptions};
//! # fn demo() -> hubspot_edge_tests::Result<()> {
//! let wrangler = WranglerDev::start(
//!     WranglerOptions::default()
//!         .var("HUBSPOT_CLIENT_SECRET", "test-client-secret")
//!         .var("FORWARD_URL", "http://127.0.0.1:9999/hook"),
//! )?;
//! let health = hubspot_edge_tests::http::get(&format!("{}/healthz", wrangler.base_url()), None)?;
//! assert_eq!(health.status, 200);
//! // Dropping `wrangler` kills its whole process group (wrangler, workerd, …).
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::process::{lock, ProcessGroup};
use crate::{free_port, http, poll_until, repo_root, verbose, Error, Result};

/// How long [`WranglerDev::start`] waits for `/healthz` by default: the first start builds
/// the Worker (cargo + worker-build via wrangler.toml's `[build]` command).
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(240);
/// How many captured lines a startup error quotes.
const ERROR_TAIL_LINES: usize = 60;
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How many times [`WranglerDev::start`] picks new ports when one was taken meanwhile.
const PORT_ATTEMPTS: u32 = 3;
/// What wrangler prints when its port was taken.
const ADDRESS_IN_USE: &str = "Address already in use";

/// Builds the Worker bundle (`scripts/build-worker.sh`, what wrangler.toml's `[build]` runs).
///
/// # Errors
/// When the build fails (its output is in the message).
pub fn build_worker() -> Result<()> {
    let root = repo_root();
    let out = Command::new("bash")
        .arg(root.join("scripts/build-worker.sh"))
        .current_dir(&root)
        .output()
        .map_err(|e| Error::new(format!("cannot run scripts/build-worker.sh: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::new(format!(
            "scripts/build-worker.sh failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// wrangler.toml without its `[build]` step, `main` pointing at the built bundle, written as
/// `target/e2e/{name}`: for Workers started once the bundle exists. Without `[build]`, a
/// second Worker does not rebuild the bundle under a running one, and no Worker restarts when
/// a source file changes during a long run (wrangler watches `[build]`'s `watch_dir`).
///
/// # Errors
/// When wrangler.toml cannot be read or the copy written.
pub fn prebuilt_config(name: &str) -> Result<PathBuf> {
    write_config(name, &repo_root().join("worker/build"))
}

/// Like [`prebuilt_config`], with `extra` TOML appended (e.g. a binding wrangler.toml leaves
/// commented out).
///
/// # Errors
/// When the config cannot be written.
pub fn prebuilt_config_with(name: &str, extra: &str) -> Result<PathBuf> {
    let path = prebuilt_config(name)?;
    let io = |e: std::io::Error| Error::new(format!("prebuilt wrangler config {name}: {e}"));
    let mut text = std::fs::read_to_string(&path).map_err(io)?;
    text.push('\n');
    text.push_str(extra);
    std::fs::write(&path, text).map_err(io)?;
    Ok(path)
}

/// Like [`prebuilt_config`], with a private copy of the built bundle (under
/// `target/e2e/{name}.bundle/`): a long run (a benchmark) keeps the code it started with even
/// if the bundle is rebuilt meanwhile (wrangler reloads when `main` changes).
///
/// # Errors
/// When the bundle cannot be copied or the config written.
pub fn prebuilt_config_with_own_bundle(name: &str) -> Result<PathBuf> {
    prebuilt_config_with_bundle_from(name, &repo_root().join("worker/build"))
}

/// Like [`prebuilt_config_with_own_bundle`], copying the bundle from `from` (another build's
/// `worker/build/`, for a benchmark that compares two builds side by side).
///
/// # Errors
/// When the bundle cannot be copied or the config written.
pub fn prebuilt_config_with_bundle_from(name: &str, from: &Path) -> Result<PathBuf> {
    let bundle = repo_root()
        .join("target/e2e")
        .join(format!("{name}.bundle"));
    copy_dir(from, &bundle)
        .map_err(|e| Error::new(format!("copying the Worker bundle for {name}: {e}")))?;
    write_config(name, &bundle)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn write_config(name: &str, bundle: &Path) -> Result<PathBuf> {
    let root = repo_root();
    let io = |e: std::io::Error| Error::new(format!("prebuilt wrangler config {name}: {e}"));
    let text = std::fs::read_to_string(root.join("wrangler.toml")).map_err(io)?;
    let mut out = String::new();
    let mut in_build = false;
    for line in text.lines() {
        if line.starts_with('[') {
            in_build = line.trim() == "[build]";
        }
        if in_build {
            continue;
        }
        if line.starts_with("main = ") {
            out.push_str(&format!("main = {:?}\n", bundle.join("index.js")));
        } else if let Some(dir) = line.strip_prefix("directory = ") {
            // `[assets] directory` is relative to the config file: make it absolute, as the
            // config moves to target/e2e/.
            let dir = dir.trim().trim_matches('"');
            out.push_str(&format!("directory = {:?}\n", root.join(dir)));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    let dir = root.join("target/e2e");
    std::fs::create_dir_all(&dir).map_err(io)?;
    let path = dir.join(name);
    std::fs::write(&path, out).map_err(io)?;
    Ok(path)
}

/// How to start `wrangler dev`.
#[derive(Debug, Clone)]
pub struct WranglerOptions {
    /// Worker variables, passed as `--var KEY:VALUE` (they override wrangler.toml's `[vars]`
    /// and `.dev.vars`).
    pub vars: Vec<(String, String)>,
    /// How long to wait for `GET {ready_path}` to answer (see [`is_ready`]).
    pub ready_timeout: Duration,
    /// The readiness path (default `/healthz`).
    pub ready_path: String,
    /// `--config` (default: wrangler's own discovery from the repository root).
    pub config: Option<PathBuf>,
    /// `--log-level` (default: wrangler's default).
    pub log_level: Option<String>,
    /// Extra environment variables for wrangler (and its build command).
    pub env: Vec<(String, String)>,
    /// Extra arguments appended after the standard ones.
    pub extra_args: Vec<String>,
    /// `--persist-to` this directory (local KV, Queues, Durable Objects), which the caller owns
    /// and which outlives the Worker: a second `wrangler dev` started with it finds the first
    /// one's state (a Worker restarted). Default: a fresh directory deleted on drop.
    pub persist_to: Option<PathBuf>,
}

impl Default for WranglerOptions {
    fn default() -> Self {
        Self {
            vars: Vec::new(),
            ready_timeout: DEFAULT_READY_TIMEOUT,
            ready_path: "/healthz".into(),
            config: None,
            log_level: None,
            env: Vec::new(),
            extra_args: Vec::new(),
            persist_to: None,
        }
    }
}

impl WranglerOptions {
    /// Adds (or replaces) one Worker variable.
    #[must_use]
    pub fn var(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.vars.retain(|(k, _)| *k != key);
        self.vars.push((key, value.into()));
        self
    }

    /// Adds (or replaces) several Worker variables.
    #[must_use]
    pub fn vars<K: Into<String>, V: Into<String>>(
        self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        vars.into_iter().fold(self, |o, (k, v)| o.var(k, v))
    }

    /// Sets the readiness timeout.
    #[must_use]
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Adds an environment variable for wrangler.
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Appends a command-line argument.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }
}

/// A running `wrangler dev`, in its own process group; dropping it kills the group and
/// deletes its state directory.
#[derive(Debug)]
pub struct WranglerDev {
    group: ProcessGroup,
    port: u16,
    inspector_port: u16,
    work_dir: PathBuf,
    persist: PathBuf,
}

impl WranglerDev {
    /// Starts `wrangler dev` from the repository root and waits until the Worker answers
    /// `GET {ready_path}` ([`is_ready`]: 200, or `/healthz`'s 503 for a misconfigured Worker,
    /// which is running and is what a misconfiguration test starts).
    ///
    /// # Errors
    /// When wrangler or its configuration is missing, it cannot be spawned, it exits before
    /// being ready (the error quotes its last output lines), or it is not ready in time.
    /// Whatever was started is killed before returning.
    pub fn start(opts: WranglerOptions) -> Result<Self> {
        let root = repo_root();
        let bin_dir = root.join("node_modules").join(".bin");
        let wrangler = bin_dir.join("wrangler");
        if !wrangler.exists() {
            return Err(Error::new(format!(
                "{} not found: run `npm ci` (scripts/tools.sh does) in {}",
                wrangler.display(),
                root.display()
            )));
        }
        let config_present = match &opts.config {
            Some(c) => c.exists(),
            None => wrangler_config_present(&root),
        };
        if !config_present {
            return Err(Error::new(format!(
                "no wrangler configuration ({}) in {}",
                opts.config
                    .as_deref()
                    .map_or("wrangler.toml".into(), |p| p.display().to_string()),
                root.display()
            )));
        }

        // `free_port` releases the port before wrangler binds it, so a scenario starting in
        // parallel can take it first (seen once in CI: "Address already in use"). That is
        // the harness's race, not the Worker's: pick new ports and start again.
        let mut attempt = 1;
        loop {
            match Self::launch(&opts, &root, &wrangler, &bin_dir) {
                Err(e) if attempt < PORT_ATTEMPTS && e.to_string().contains(ADDRESS_IN_USE) => {
                    if verbose() {
                        eprintln!(
                            "[wrangler] port taken before wrangler bound it; attempt {}",
                            attempt + 1
                        );
                    }
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn launch(
        opts: &WranglerOptions,
        root: &std::path::Path,
        wrangler: &std::path::Path,
        bin_dir: &std::path::Path,
    ) -> Result<Self> {
        let port = free_port()?;
        let inspector_port = loop {
            let p = free_port()?;
            if p != port {
                break p;
            }
        };
        let work_dir = make_work_dir()?;
        let persist = opts
            .persist_to
            .clone()
            .unwrap_or_else(|| work_dir.join("state"));
        let log_dir = work_dir.join("wrangler-logs");
        std::fs::create_dir_all(&persist)?;
        std::fs::create_dir_all(&log_dir)?;

        let mut cmd = Command::new(wrangler);
        cmd.current_dir(root)
            .arg("dev")
            .args(["--port", &port.to_string()])
            .args(["--ip", "127.0.0.1"])
            .args(["--inspector-port", &inspector_port.to_string()])
            .arg("--persist-to")
            .arg(&persist)
            .arg("--show-interactive-dev-session=false");
        if let Some(config) = &opts.config {
            cmd.arg("--config").arg(config);
        }
        if let Some(level) = &opts.log_level {
            cmd.args(["--log-level", level]);
        }
        for (k, v) in &opts.vars {
            // `--var=` keeps values that start with `-` or look like flags intact; wrangler
            // splits at the first `:`, so values may contain `:` (URLs, JSON).
            cmd.arg(format!("--var={k}:{v}"));
        }
        cmd.args(&opts.extra_args);

        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![bin_dir.to_path_buf()];
        paths.extend(std::env::split_paths(&path));
        cmd.env(
            "PATH",
            std::env::join_paths(paths).map_err(|e| Error::new(e.to_string()))?,
        )
        .env("CI", "true")
        .env("NO_COLOR", "1")
        .env("FORCE_COLOR", "0")
        .env("WRANGLER_SEND_METRICS", "false")
        // As scripts/run.sh: the Worker does not use Request.cf; offline, fetching it only
        // prints an error stack.
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .env("WRANGLER_LOG_PATH", &log_dir);
        // The test binary runs with cargo's per-package variables; the Worker's build command
        // runs cargo again and must not see them.
        for (k, _) in std::env::vars_os() {
            if let Some(k) = k.to_str() {
                if k.starts_with("CARGO_PKG_")
                    || k.starts_with("CARGO_MANIFEST_")
                    || matches!(
                        k,
                        "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR"
                    )
                {
                    cmd.env_remove(k);
                }
            }
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let group = match ProcessGroup::spawn(cmd, "wrangler") {
            Ok(g) => g,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&work_dir);
                return Err(Error::new(format!("starting {}: {e}", wrangler.display())));
            }
        };
        // Every line is kept for the personal-data scan (crate::logscan), even after a stop.
        crate::logscan::register(std::sync::Arc::clone(&group.lines));
        // From here on, Drop cleans up whatever happens.
        let dev = Self {
            group,
            port,
            inspector_port,
            work_dir,
            persist,
        };
        dev.wait_ready(opts)?;
        Ok(dev)
    }

    fn wait_ready(&self, opts: &WranglerOptions) -> Result<()> {
        let url = format!("{}{}", self.base_url(), opts.ready_path);
        let started = Instant::now();
        let what =
            format!("wrangler dev to answer GET {url} (200, or the Worker's 503 misconfigured)");
        let mut last = String::from("no attempt yet");
        let outcome = poll_until(&what, opts.ready_timeout, POLL_INTERVAL, || {
            if let Some(status) = self.group.exit_status() {
                return Some(Err(format!(
                    "wrangler exited before it was ready ({status})"
                )));
            }
            match http::request_with_timeout("GET", &url, &[], None, Duration::from_secs(5)) {
                Ok(r) if is_ready(r.status, &r.body) => Some(Ok(())),
                Ok(r) => {
                    last = format!("status {} body {}", r.status, r.text());
                    None
                }
                Err(e) => {
                    last = e.to_string();
                    None
                }
            }
        });
        let failure = match outcome {
            Ok(Ok(())) => {
                if verbose() {
                    eprintln!(
                        "[wrangler] ready on {} after {:.1?}",
                        self.base_url(),
                        started.elapsed()
                    );
                }
                return Ok(());
            }
            Ok(Err(exit)) => exit,
            Err(timeout) => format!("{timeout} (last attempt: {last})"),
        };
        // Kill it, and let the readers drain what it wrote.
        self.group.stop();
        Err(Error::new(format!(
            "{failure}\n--- last wrangler output ---\n{}",
            self.tail(ERROR_TAIL_LINES)
        )))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The process group of wrangler and everything it started (workerd): for sampling their
    /// resources from `/proc`.
    pub fn pgid(&self) -> u32 {
        self.group.pgid()
    }

    /// The HTTP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The devtools inspector port.
    pub fn inspector_port(&self) -> u16 {
        self.inspector_port
    }

    /// The `--persist-to` directory (local KV, Queues, … state; deleted on drop unless
    /// [`WranglerOptions::persist_to`] named it).
    pub fn persist_dir(&self) -> PathBuf {
        self.persist.clone()
    }

    /// Every line wrangler (and the Worker's `console.log`) wrote so far, stdout and stderr
    /// interleaved in arrival order.
    pub fn logs(&self) -> Vec<String> {
        lock(&self.group.lines).clone()
    }

    /// The number of lines so far: pass it to the `*_since` methods to look only at what
    /// comes after (the Worker is shared by scenarios).
    pub fn log_mark(&self) -> usize {
        lock(&self.group.lines).len()
    }

    /// The lines written after `mark`.
    pub fn logs_since(&self, mark: usize) -> Vec<String> {
        lock(&self.group.lines)
            .get(mark..)
            .map(<[String]>::to_vec)
            .unwrap_or_default()
    }

    /// The last `n` lines, joined, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let lines = lock(&self.group.lines);
        let start = lines.len().saturating_sub(n);
        lines[start..].join("\n")
    }

    /// Every line that holds a JSON object (the Worker's structured logs), parsed.
    pub fn json_logs(&self) -> Vec<Value> {
        self.json_logs_since(0)
    }

    /// The JSON-object lines written after `mark`, parsed.
    pub fn json_logs_since(&self, mark: usize) -> Vec<Value> {
        lock(&self.group.lines)
            .get(mark..)
            .unwrap_or_default()
            .iter()
            .filter_map(|l| json_object_in(l))
            .collect()
    }

    /// Waits until a line satisfies `pred`; returns it.
    ///
    /// # Errors
    /// On timeout (with the last lines of output).
    pub fn wait_for_log(
        &self,
        pred: impl FnMut(&str) -> bool,
        timeout: Duration,
    ) -> Result<String> {
        self.wait_for_log_since(0, pred, timeout)
    }

    /// Waits until a line after `mark` satisfies `pred`; returns it.
    ///
    /// # Errors
    /// On timeout (with the last lines of output).
    pub fn wait_for_log_since(
        &self,
        mark: usize,
        mut pred: impl FnMut(&str) -> bool,
        timeout: Duration,
    ) -> Result<String> {
        let mut seen = mark;
        poll_until(
            "a matching wrangler log line",
            timeout,
            POLL_INTERVAL,
            || {
                let lines = lock(&self.group.lines);
                let found = lines.get(seen..)?.iter().find(|l| pred(l)).cloned();
                seen = lines.len();
                found
            },
        )
        .map_err(|e| self.with_tail(e))
    }

    /// Waits until a JSON log object after `mark` satisfies `pred`; returns it.
    ///
    /// # Errors
    /// On timeout (with the last lines of output).
    pub fn wait_for_json_log_since(
        &self,
        mark: usize,
        mut pred: impl FnMut(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value> {
        let mut seen = mark;
        poll_until("a matching json log line", timeout, POLL_INTERVAL, || {
            let lines = lock(&self.group.lines);
            let found = lines
                .get(seen..)?
                .iter()
                .filter_map(|l| json_object_in(l))
                .find(|v| pred(v));
            seen = lines.len();
            found
        })
        .map_err(|e| self.with_tail(e))
    }

    /// Waits until a JSON log object satisfies `pred`; returns it.
    ///
    /// # Errors
    /// On timeout (with the last lines of output).
    pub fn wait_for_json_log(
        &self,
        pred: impl FnMut(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value> {
        self.wait_for_json_log_since(0, pred, timeout)
    }

    /// Whether the wrangler process is still running.
    pub fn is_running(&self) -> bool {
        self.group.exit_status().is_none()
    }

    fn with_tail(&self, e: Error) -> Error {
        Error::new(format!(
            "{e}\n--- last wrangler output ---\n{}",
            self.tail(20)
        ))
    }

    /// Kills wrangler's process group: SIGTERM, up to [`TERM_GRACE`](crate::process::TERM_GRACE),
    /// then SIGKILL. Idempotent; also run by
    /// `Drop`.
    pub fn stop(&self) {
        self.group.stop();
    }
}

impl Drop for WranglerDev {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}

fn make_work_dir() -> Result<PathBuf> {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let base = std::env::temp_dir();
    for _ in 0..100 {
        let dir = base.join(format!(
            "hubspot-edge-e2e-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::new(format!(
        "could not create a fresh directory in {}",
        base.display()
    )))
}

/// The JSON object in a log line: the line itself, or whatever starts at its first `{`
/// (wrangler may prefix lines, e.g. with a timestamp or level).
pub fn json_object_in(line: &str) -> Option<Value> {
    let start = line.find('{')?;
    let candidate = line[start..].trim_end();
    match serde_json::from_str::<Value>(candidate) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => {
            // Tolerate trailing text after the object.
            let mut stream = serde_json::Deserializer::from_str(candidate).into_iter::<Value>();
            match stream.next() {
                Some(Ok(v @ Value::Object(_))) => Some(v),
                _ => None,
            }
        }
    }
}

/// Whether a readiness answer means the Worker is up: 200, or the Worker's own 503
/// `{"status":"misconfigured",…}` from `/healthz` (a misconfigured Worker is running; a 503
/// from wrangler itself while it starts is not this body).
pub fn is_ready(status: u16, body: &[u8]) -> bool {
    status == 200
        || (status == 503
            && serde_json::from_slice::<Value>(body).is_ok_and(|v| v["status"] == "misconfigured"))
}

/// Whether the repository has a wrangler configuration (the Worker can be started).
pub fn wrangler_config_present(root: &Path) -> bool {
    ["wrangler.toml", "wrangler.json", "wrangler.jsonc"]
        .iter()
        .any(|f| root.join(f).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_with_and_without_prefix() {
        let v = json_object_in(r#"{"level":"info","message":"x"}"#).unwrap();
        assert_eq!(v["message"], "x");
        let v = json_object_in(r#"[wrangler:info] {"event":"forwarded","n":1} trailing"#).unwrap();
        assert_eq!(v["n"], 1);
        assert!(json_object_in("GET /healthz 200 OK (3ms)").is_none());
        assert!(json_object_in("{not json").is_none());
        assert!(json_object_in("[1,2]").is_none());
    }

    #[test]
    fn exit_before_ready_is_an_error_with_output_and_cleans_up() {
        if !repo_root().join("node_modules/.bin/wrangler").exists() {
            eprintln!("skipped: no node_modules/.bin/wrangler");
            return;
        }
        let dir = make_work_dir().unwrap();
        let config = dir.join("wrangler.toml");
        std::fs::write(&config, "name = [this is not toml\n").unwrap();
        let opts = WranglerOptions {
            config: Some(config),
            ready_timeout: Duration::from_secs(60),
            ..WranglerOptions::default()
        };
        let started = Instant::now();
        let err = WranglerDev::start(opts).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(60), "{err}");
        let msg = err.message();
        assert!(msg.contains("wrangler exited before it was ready"), "{msg}");
        assert!(msg.contains("--- last wrangler output ---"), "{msg}");
        assert!(msg.contains("wrangler.toml"), "{msg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ready_on_200_or_the_workers_misconfigured_503() {
        assert!(is_ready(200, b"{\"status\":\"ok\"}"));
        assert!(is_ready(200, b""));
        assert!(is_ready(
            503,
            br#"{"status":"misconfigured","problems":[{"key":"FORWARD_URL"}]}"#
        ));
        assert!(!is_ready(503, b"Service Unavailable"));
        assert!(!is_ready(503, br#"{"status":"ok"}"#));
        assert!(!is_ready(500, br#"{"status":"misconfigured"}"#));
        assert!(!is_ready(404, b""));
    }

    #[test]
    fn options_replace_vars() {
        let o = WranglerOptions::default()
            .var("A", "1")
            .vars([("B", "2"), ("A", "3")]);
        assert_eq!(
            o.vars,
            [
                ("B".to_owned(), "2".to_owned()),
                ("A".to_owned(), "3".to_owned())
            ]
        );
    }
}
