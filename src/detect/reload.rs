//! Hot reload: the live rule set sits behind an `ArcSwap`; a change in the rules directory
//! builds a new set off to the side and swaps it in only if it is valid.

use super::rules::{RuleErrors, RuleSet};
use crate::detect::Analyzer;
use crate::normalize::Normalizer;
use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The shared, swappable rule set.
pub type SharedRules = Arc<ArcSwap<RuleSet>>;

/// Rebuild from `dir` and swap it in; on error the old set stays and the errors are returned.
pub fn reload(
    shared: &ArcSwap<RuleSet>,
    dir: &Path,
    normalizer: &Normalizer,
) -> Result<(), RuleErrors> {
    let rs = load_checked(dir, normalizer)?;
    install(shared, rs, dir);
    Ok(())
}

/// Load the rules in `dir` without putting them in force; a failure is counted and logged (the
/// rules in force stay).
pub fn load_checked(dir: &Path, normalizer: &Normalizer) -> Result<RuleSet, RuleErrors> {
    RuleSet::load(dir, normalizer).inspect_err(|e| {
        crate::metrics::global()
            .rules_reloads
            .with_label_values(&["error"])
            .inc();
        tracing::error!(dir = %dir.display(), errors = %e, "Rules reload failed; keeping the old rules.");
    })
}

/// Put rules loaded by [`load_checked`] in force (counted as a reload).
pub fn install(shared: &ArcSwap<RuleSet>, rs: RuleSet, dir: &Path) {
    shared.store(Arc::new(rs));
    crate::metrics::global()
        .rules_reloads
        .with_label_values(&["ok"])
        .inc();
    tracing::info!(dir = %dir.display(), "Rules reloaded.");
}

/// Watch `dir` and reload on change (debounced by 300 ms) until `cancel` fires.
pub fn spawn_watcher(
    shared: SharedRules,
    dir: PathBuf,
    analyzer: Arc<Analyzer>,
    cancel: tokio_util::sync::CancellationToken,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            if !ev.kind.is_access() {
                let _ = tx.send(());
            }
        }
    })?;
    watcher.watch(&dir, RecursiveMode::Recursive)?;
    let handle = std::thread::Builder::new()
        .name("rules-watch".into())
        .spawn(move || {
            let _keep = watcher;
            while !cancel.is_cancelled() {
                match rx.recv_timeout(Duration::from_millis(250)) {
                    Ok(()) => {
                        // Editors write files in several steps: wait for the burst to end.
                        while rx.recv_timeout(Duration::from_millis(300)).is_ok() {}
                        let _ = reload(&shared, &dir, &analyzer.normalizer);
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
        })?;
    Ok(handle)
}

/// The stage: with `watch`, reload the rules when their directory changes (a failed watch
/// leaves hot reload off, with a warning).
pub fn start(watch: bool, cx: &crate::stage::Context) -> crate::stage::Handle {
    if !watch {
        return crate::stage::Handle::new("rules", Vec::new());
    }
    let (rules, dir, analyzer) = (cx.rules.clone(), cx.rules_dir.clone(), cx.analyzer.clone());
    match spawn_watcher(rules, dir, analyzer, cx.cancel.clone()) {
        Ok(h) => crate::stage::Handle::new(
            "rules",
            vec![tokio::task::spawn_blocking(move || {
                let _ = h.join();
            })],
        ),
        Err(e) => {
            tracing::warn!(error = %e, "Cannot watch the rules directory; hot reload is off.");
            crate::stage::Handle::new("rules", Vec::new())
        }
    }
}
