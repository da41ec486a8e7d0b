//! Hot reload: the policy file is watched by polling, and re-read on SIGHUP.
//!
//! Polling the path (following symlinks) catches what file-event APIs miss: an editor's
//! write-to-temp-then-rename replaces the inode, and a Kubernetes ConfigMap swaps a `..data`
//! symlink without touching the path the gateway was given. A change of the resolved path, the
//! inode, the size or the modification time triggers a read; the text is loaded only when it
//! differs from the text in force. A file that does not load is refused with its diagnostics on
//! stderr, and the policy in force stays; counters are kept across reloads.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mcp_policy::{Evaluator, PolicyError};

/// What identifies one version of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    resolved: Option<PathBuf>,
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
    ctime: i64,
    ctime_nsec: i64,
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Fingerprint {
        resolved: std::fs::canonicalize(path).ok(),
        dev: meta.dev(),
        ino: meta.ino(),
        len: meta.len(),
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec(),
        ctime: meta.ctime(),
        ctime_nsec: meta.ctime_nsec(),
    })
}

/// Watches the policy file at `path` for `evaluator`.
pub struct Reloader<S> {
    evaluator: Arc<Evaluator<S>>,
    path: PathBuf,
    /// The text in force (as last loaded or refused), so that a touch does not reload.
    text: Option<String>,
    seen: Option<Fingerprint>,
}

/// What a reload attempt did.
#[derive(Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The file is unchanged.
    Unchanged,
    /// The new policy is in force (its digest).
    Reloaded(String),
    /// The file was refused; the policy in force stays.
    Refused,
}

impl<S> Reloader<S> {
    /// A reloader for `path`, whose current text `text` is in force.
    pub fn new(evaluator: Arc<Evaluator<S>>, path: PathBuf, text: String) -> Self {
        let seen = fingerprint(&path);
        Reloader { evaluator, path, text: Some(text), seen }
    }

    /// Looks at the file; reloads when it changed (`force`: read it whatever the metadata
    /// says, as on SIGHUP).
    pub fn check(&mut self, force: bool) -> ReloadOutcome {
        let now = fingerprint(&self.path);
        if !force && now == self.seen {
            return ReloadOutcome::Unchanged;
        }
        self.seen = now;
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) => {
                // Missing for a moment during a replace: the next look will see the new file.
                if force {
                    eprintln!(
                        "mcp-policy-gateway: cannot read the policy `{}`: {e}; the policy in \
                         force stays",
                        self.path.display()
                    );
                }
                return ReloadOutcome::Unchanged;
            }
        };
        if self.text.as_deref() == Some(text.as_str()) {
            return ReloadOutcome::Unchanged;
        }
        let outcome = match self.evaluator.reload_from_str(&text) {
            Ok(()) => {
                let digest = self.evaluator.policy().digest().to_owned();
                eprintln!(
                    "mcp-policy-gateway: reloaded the policy `{}` (digest {digest})",
                    self.path.display()
                );
                ReloadOutcome::Reloaded(digest)
            }
            Err(e) => {
                eprintln!("{}", describe_error(&self.path, &e));
                ReloadOutcome::Refused
            }
        };
        self.text = Some(text);
        outcome
    }
}

/// The diagnostics of a policy that failed to load, one per line, `file:line:column: ...`.
pub fn describe_error(path: &Path, e: &PolicyError) -> String {
    let file = path.display();
    let diagnostics = e.diagnostics();
    if diagnostics.is_empty() {
        return format!(
            "mcp-policy-gateway: the policy `{file}` is refused: {e}; the policy in force stays"
        );
    }
    let mut out = format!(
        "mcp-policy-gateway: the policy `{file}` is refused ({} problem{}); the policy in force stays",
        diagnostics.len(),
        if diagnostics.len() == 1 { "" } else { "s" }
    );
    for d in diagnostics {
        out.push_str(&format!("\n{file}:{d}"));
    }
    out
}

/// Reads and loads the policy the gateway starts with; on failure, says why on stderr (every
/// diagnostic with its line) and returns `None`.
pub fn initial_policy(path: &Path) -> Option<(String, mcp_policy::Policy)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("mcp-policy-gateway: cannot read the policy `{}`: {e}", path.display());
            return None;
        }
    };
    match mcp_policy::Policy::from_json_str(&text) {
        Ok(policy) => Some((text, policy)),
        Err(e) => {
            eprintln!("{}", describe_error(path, &e));
            None
        }
    }
}

impl<S: Send + Sync + 'static> Reloader<S> {
    /// Polls every `interval` (never when it is zero) and reloads on SIGHUP, until the runtime
    /// stops.
    pub fn spawn(self, interval: Duration) -> tokio::task::JoinHandle<()> {
        self.spawn_with(interval, |_| {})
    }

    /// [`spawn`](Reloader::spawn), telling `on_outcome` what each check did (metrics count
    /// reloads with it).
    pub fn spawn_with(
        mut self,
        interval: Duration,
        on_outcome: impl Fn(&ReloadOutcome) + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let polling = !interval.is_zero();
        // An interval of a day when polling is off: only SIGHUP wakes the task in practice.
        let interval = if polling { interval } else { Duration::from_secs(86_400) };
        tokio::spawn(async move {
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                let force = match &mut hup {
                    Some(h) => tokio::select! {
                        _ = tick.tick() => false,
                        _ = h.recv() => true,
                    },
                    None => {
                        tick.tick().await;
                        false
                    }
                };
                if !force && !polling {
                    continue;
                }
                // Reading a small file is quick; keep it off the relay's threads anyway.
                let Ok((r, outcome)) = tokio::task::spawn_blocking(move || {
                    let outcome = self.check(force);
                    (self, outcome)
                })
                .await
                else {
                    return;
                };
                self = r;
                on_outcome(&outcome);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_policy::ToolCall;

    const DENY: &str = r#"{"version": "1", "default": "deny"}"#;
    const ALLOW: &str = r#"{"version": "1", "default": "allow"}"#;

    fn setup() -> (tempfile::TempDir, PathBuf, Arc<Evaluator>, Reloader<mcp_policy::MemoryStore>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.json");
        std::fs::write(&path, DENY).unwrap();
        let evaluator = Arc::new(Evaluator::new(DENY.parse().unwrap()));
        let r = Reloader::new(evaluator.clone(), path.clone(), DENY.to_owned());
        (dir, path, evaluator, r)
    }

    fn allowed(e: &Evaluator) -> bool {
        e.evaluate(&ToolCall::new("t")).is_allowed()
    }

    #[test]
    fn reloads_a_file_replaced_by_rename() {
        let (dir, path, evaluator, mut r) = setup();
        assert_eq!(r.check(false), ReloadOutcome::Unchanged);
        let tmp = dir.path().join(".policy.json.swp");
        std::fs::write(&tmp, ALLOW).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert!(matches!(r.check(false), ReloadOutcome::Reloaded(_)));
        assert!(allowed(&evaluator));
        assert_eq!(r.check(false), ReloadOutcome::Unchanged);
    }

    #[test]
    fn follows_a_symlink_swap_like_a_configmap() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("v1");
        let v2 = dir.path().join("v2");
        std::fs::create_dir(&v1).unwrap();
        std::fs::create_dir(&v2).unwrap();
        std::fs::write(v1.join("policy.json"), DENY).unwrap();
        std::fs::write(v2.join("policy.json"), ALLOW).unwrap();
        let data = dir.path().join("..data");
        std::os::unix::fs::symlink(&v1, &data).unwrap();
        let path = dir.path().join("policy.json");
        std::os::unix::fs::symlink("..data/policy.json", &path).unwrap();
        let evaluator = Arc::new(Evaluator::new(DENY.parse().unwrap()));
        let mut r = Reloader::new(evaluator.clone(), path.clone(), DENY.to_owned());
        // Swap `..data` atomically, as the kubelet does.
        let tmp = dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&v2, &tmp).unwrap();
        std::fs::rename(&tmp, &data).unwrap();
        assert!(matches!(r.check(false), ReloadOutcome::Reloaded(_)));
        assert!(allowed(&evaluator));
    }

    #[test]
    fn refuses_an_invalid_file_and_keeps_the_policy() {
        let (_dir, path, evaluator, mut r) = setup();
        std::fs::write(&path, r#"{"version": "2"}"#).unwrap();
        assert_eq!(r.check(true), ReloadOutcome::Refused);
        assert!(!allowed(&evaluator));
        // The same bad text is not reported again.
        assert_eq!(r.check(true), ReloadOutcome::Unchanged);
        std::fs::write(&path, ALLOW).unwrap();
        assert!(matches!(r.check(true), ReloadOutcome::Reloaded(_)));
        assert!(allowed(&evaluator));
    }

    #[test]
    fn diagnostics_name_file_line_and_column() {
        let e = mcp_policy::Policy::from_json_str("{\"version\": \"1\",\n \"default\": 3}")
            .unwrap_err();
        let text = describe_error(Path::new("p.json"), &e);
        assert!(text.contains("p.json:2:"), "{text}");
    }
}
