//! A child process in its own process group, with its output captured line by line; the whole
//! group is killed on drop (wrangler starts workerd and esbuild children).

use std::fmt;
use std::io::{BufRead as _, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::{poll_until, verbose, Result};

/// How long [`ProcessGroup::stop`] waits after SIGTERM before SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(5);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

pub(crate) type Lines = Arc<Mutex<Vec<String>>>;

pub(crate) fn lock(lines: &Lines) -> MutexGuard<'_, Vec<String>> {
    lines
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A spawned command leading its own process group. Stdout and stderr are captured into
/// [`lines`](Self::lines) (and teed to stderr as `[name] line` when `E2E_VERBOSE=1`); stdin
/// is null. Dropping it kills the whole group.
pub struct ProcessGroup {
    name: String,
    child: Mutex<Option<Child>>,
    pgid: u32,
    exit: Mutex<Option<ExitStatus>>,
    pub(crate) lines: Lines,
    readers: Mutex<Vec<JoinHandle<()>>>,
}

/// Process groups started and not yet stopped, for [`kill_all`].
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn live() -> MutexGuard<'static, Vec<u32>> {
    LIVE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// SIGKILLs every process group started by [`ProcessGroup::spawn`] and not yet stopped. For a
/// Ctrl-C / SIGTERM handler, where destructors will not run (each group leads its own process
/// group, so the terminal's SIGINT does not reach it).
pub fn kill_all() {
    for pgid in live().drain(..) {
        let _ = kill(&["-KILL", "--", &format!("-{pgid}")]);
    }
}

impl fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("name", &self.name)
            .field("pgid", &self.pgid)
            .finish_non_exhaustive()
    }
}

impl ProcessGroup {
    /// Spawns `cmd` as the leader of a new process group (stdin null, output captured).
    ///
    /// # Errors
    /// When the command cannot be spawned.
    pub fn spawn(mut cmd: Command, name: &str) -> Result<Self> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn()?;
        let pgid = child.id();
        let lines: Lines = Arc::default();
        let group = Self {
            name: name.to_owned(),
            child: Mutex::new(None),
            pgid,
            exit: Mutex::new(None),
            lines: Arc::clone(&lines),
            readers: Mutex::new(Vec::new()),
        };
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        // Owned by `group` before anything else can fail, so Drop kills it.
        *group.child_lock() = Some(child);
        live().push(pgid);
        if let Some(out) = stdout {
            let reader = spawn_reader(out, Arc::clone(&lines), name)?;
            group.readers_lock().push(reader);
        }
        if let Some(err) = stderr {
            let reader = spawn_reader(err, lines, name)?;
            group.readers_lock().push(reader);
        }
        Ok(group)
    }

    fn readers_lock(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn child_lock(&self) -> MutexGuard<'_, Option<Child>> {
        self.child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The process group id (= the leader's pid).
    pub fn pgid(&self) -> u32 {
        self.pgid
    }

    /// Every captured line so far (stdout and stderr, in arrival order).
    pub fn lines(&self) -> Vec<String> {
        lock(&self.lines).clone()
    }

    /// The leader's exit status, once it has exited (it is reaped here).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let mut exit = self
            .exit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if exit.is_none() {
            if let Some(child) = self.child_lock().as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    *exit = Some(status);
                }
            }
        }
        *exit
    }

    /// Whether any process of the group is still alive (zombies do not count).
    pub fn group_alive(&self) -> bool {
        // Reap the leader first.
        let _ = self.exit_status();
        group_alive(self.pgid)
    }

    /// SIGTERM to the whole group, up to [`TERM_GRACE`] for it to empty, then SIGKILL; then
    /// waits for the output readers (briefly: a process that left the group could hold the
    /// pipes). Idempotent; also run by `Drop`.
    pub fn stop(&self) {
        let Some(mut child) = self.child_lock().take() else {
            return;
        };
        let group = format!("-{}", self.pgid);
        let _ = kill(&["-TERM", "--", &group]);
        let gone = poll_until(
            "the process group to exit after SIGTERM",
            TERM_GRACE,
            POLL_INTERVAL,
            || {
                let _ = child.try_wait();
                (!group_alive(self.pgid)).then_some(())
            },
        );
        if gone.is_err() {
            let _ = kill(&["-KILL", "--", &group]);
            let _ = child.kill();
        }
        if let Ok(status) = child.wait() {
            *self
                .exit
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(status);
        }
        live().retain(|p| *p != self.pgid);
        let readers = std::mem::take(&mut *self.readers_lock());
        let _ = poll_until(
            "output readers to finish",
            Duration::from_secs(2),
            Duration::from_millis(10),
            || readers.iter().all(JoinHandle::is_finished).then_some(()),
        );
        for r in readers {
            if r.is_finished() {
                let _ = r.join();
            }
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a live (not zombie) process is in group `pgid`. Reads `/proc` where there is one:
/// `kill -0` also counts zombies, which never go away when PID 1 does not reap orphans (as in
/// some containers). Elsewhere falls back to `kill -0`.
fn group_alive(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return kill(&["-0", "--", &format!("-{pgid}")]);
    };
    entries.filter_map(Result::ok).any(|entry| {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return false;
        };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // `pid (comm) state ppid pgrp …`; comm may contain spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|p| p.parse::<u32>().ok());
        pgrp == Some(pgid) && !matches!(state, Some("Z" | "X"))
    })
}

/// Runs `kill ARGS`; true when it succeeded. (The workspace forbids `unsafe`, so no
/// `libc::kill`; `kill -- -PGID` signals a whole group.)
fn kill(args: &[&str]) -> bool {
    Command::new("kill")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn spawn_reader(
    stream: impl Read + Send + 'static,
    lines: Lines,
    name: &str,
) -> Result<JoinHandle<()>> {
    let tee = verbose().then(|| format!("[{name}] "));
    Ok(thread::Builder::new()
        .name(format!("{name}-output"))
        .spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&buf);
                        let line = strip_ansi(text.trim_end_matches(['\r', '\n']));
                        if let Some(prefix) = &tee {
                            eprintln!("{prefix}{line}");
                        }
                        lock(&lines).push(line);
                    }
                }
            }
        })?)
}

/// Removes ANSI escape sequences (`ESC [ … letter`), in case something ignores `NO_COLOR`.
pub(crate) fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn stop_kills_the_whole_group_including_grandchildren() {
        let mut cmd = Command::new("sh");
        // A grandchild that ignores nothing, one that ignores SIGTERM, and output on both pipes.
        cmd.args([
            "-c",
            "sleep 300 & (trap '' TERM; exec sleep 301) & echo \"kids $!\"; echo err >&2; wait",
        ]);
        let group = ProcessGroup::spawn(cmd, "test").unwrap();
        poll_until(
            "output",
            Duration::from_secs(5),
            Duration::from_millis(10),
            || {
                let l = group.lines();
                (l.iter().any(|x| x.starts_with("kids")) && l.iter().any(|x| x == "err"))
                    .then_some(())
            },
        )
        .unwrap();
        assert!(group.group_alive());
        assert!(group.exit_status().is_none());
        let started = Instant::now();
        group.stop();
        // The TERM-ignoring grandchild forces the SIGKILL path after the grace period.
        assert!(started.elapsed() >= TERM_GRACE);
        assert!(started.elapsed() < TERM_GRACE + Duration::from_secs(5));
        assert!(!group.group_alive());
        assert!(group.exit_status().is_some());
        group.stop(); // idempotent
    }

    #[test]
    fn drop_kills_and_ansi_is_stripped() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "printf '\\033[32mready\\033[0m on\\n'; sleep 300 & wait",
        ]);
        let group = ProcessGroup::spawn(cmd, "test").unwrap();
        let pgid = group.pgid();
        poll_until(
            "ready",
            Duration::from_secs(5),
            Duration::from_millis(10),
            || group.lines().iter().any(|l| l == "ready on").then_some(()),
        )
        .unwrap();
        let started = Instant::now();
        drop(group);
        assert!(started.elapsed() < TERM_GRACE);
        assert!(!group_alive(pgid));
    }
}
