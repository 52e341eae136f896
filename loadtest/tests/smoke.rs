//! The CI-sized smoke run: the engine in-process on port 0, the harness's feed server, driver
//! and fake platform on real sockets. One test runs both scenarios in turn, because in-process
//! engines share the process's metrics registry.

use huiying_loadtest::run::{self, EngineMode, RunOptions};
use std::path::{Path, PathBuf};

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

async fn run_in_process(scenario_dir: PathBuf, out: &Path) -> huiying_loadtest::report::RunResult {
    let opts = RunOptions {
        scenario_dir,
        out_dir: out.to_path_buf(),
        engine: EngineMode::InProcess,
        max_duration: None,
        rules: run::default_rules(),
    };
    match tokio::time::timeout(std::time::Duration::from_secs(120), run::run(opts)).await {
        Ok(r) => r.unwrap_or_else(|e| panic!("the run failed: {e:#}")),
        Err(_) => panic!("the run took more than 120 s"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smoke_detects_the_injection_and_a_small_fanout_stays_within_limits() {
    // 1. Traffic with an injected flood in 密云区.
    let dir = tempfile::tempdir().expect("tempdir");
    let r = run_in_process(scenarios().join("smoke"), dir.path()).await;
    for f in ["result.json", "report.md", "chart.svg", "engine.toml"] {
        let p = dir.path().join(f);
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{} missing or empty", p.display());
    }
    let report = std::fs::read_to_string(dir.path().join("report.md")).expect("report");
    assert!(report.contains("flood-miyun"), "{report}");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("result.json")).expect("result"),
    )
    .expect("result is JSON");
    assert_eq!(json["scenario"], "smoke");
    assert!(r.stream_ended_early.is_none(), "{:?}", r.stream_ended_early);
    assert!(r.ingest.sent >= 2500, "sent {}", r.ingest.sent);
    assert_eq!(r.ingest.lost, 0, "{:?}", r.ingest);
    assert_eq!(r.missed_injections, 0, "{:#?}", r.injections);
    let inj = &r.injections[0];
    let inc = inj.incident.as_ref().expect("an incident");
    assert_eq!(inc.kind, "emergency");
    assert!(inj.as_expected, "{inj:#?}");
    let delay = inj.delay_event_secs.expect("delay");
    assert!((0.0..30.0).contains(&delay), "{inj:#?}");
    assert!(
        inj.delay_mentions.is_some_and(|m| (1..=20).contains(&m)),
        "{inj:#?}"
    );
    assert!(r.latency_opened.count >= 1, "{:?}", r.latency_opened);
    assert!(r.resources.rss_max_mb > 0.0);
    assert!(!r.timeline.is_empty());

    // 2. A small fan-out: 5 accounts, 2 notices, limits that bind on the second one.
    let sdir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        sdir.path().join("scenario.toml"),
        "name = \"fanout-smoke\"\ndescription = \"5 accounts, 2 notices\"\nduration_secs = 60\ndrain_secs = 1\n\n[fanout]\naccounts = 5\nnotices = 2\nper_hour = 1800\n",
    )
    .expect("write scenario");
    let out = tempfile::tempdir().expect("tempdir");
    let r = run_in_process(sdir.path().to_path_buf(), out.path()).await;
    let f = r.fanout.expect("fan-out result");
    assert_eq!(f.notices.len(), 2);
    assert!(f.notices.iter().all(|n| n.posts == 5), "{f:#?}");
    assert_eq!((f.limit_violations, f.duplicates), (0, 0), "{f:#?}");
    // The second notice waits for the limiters: at least the period, as the minimum says (the
    // platform timestamps a post on arrival, so the gap between two posts of one account may
    // look shorter than the limiter's period by the difference of two requests' latencies).
    let second = &f.notices[1];
    assert!(second.min_allowed_ms > 0, "{f:#?}");
    assert!(
        second.approval_to_last_ms + 100 >= second.min_allowed_ms,
        "{f:#?}"
    );
    assert!(std::fs::read_to_string(out.path().join("report.md"))
        .expect("report")
        .contains("Limit violations"));
}
