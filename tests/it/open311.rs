//! Open311 GeoReport v2 against a real client library (Python's `georeport` from PyPI, in a
//! virtual environment the test makes once under the target directory; `.ci/run` makes it
//! first), and the refusals over the service.

use crate::util::{self, start_service, stop, within};
use huiying::api::auth::{token_hash, Role, TokenEntry};
use huiying::store::MemoryStore;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

const INGEST: &str = "hy_open311_ingest_key";

/// The Python with `georeport` installed: `HUIYING_OPEN311_PYTHON`, or a virtual environment in
/// the target directory, made when missing. Fails (never skips) when it cannot be made.
fn python() -> PathBuf {
    if let Ok(p) = std::env::var("HUIYING_OPEN311_PYTHON") {
        return PathBuf::from(p);
    }
    util::python_venv(
        "open311-venv",
        "import georeport, requests",
        "georeport==0.3.1",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_open311_client_discovers_posts_and_reads_requests() {
    let py = tokio::task::spawn_blocking(python).await.expect("venv");
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = util::respond_config(util::rules_dir(), dir.path().join("data"), &[]);
    cfg.auth.tokens.push(TokenEntry {
        name: "city-app".into(),
        role: Role::Ingest,
        sha256: token_hash(INGEST),
        owner: None,
    });
    let svc = start_service(cfg, Arc::new(MemoryStore::default())).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/open311/client.py");
    let out = within(
        "the Open311 client",
        tokio::process::Command::new(&py)
            .arg(&script)
            .arg(format!("http://{}", svc.addr))
            .arg(INGEST)
            .output(),
    )
    .await
    .expect("python runs");
    assert!(
        out.status.success(),
        "client.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("client output");
    // 6 kinds × 16 departments, in both formats.
    assert_eq!(seen["services_json"], 96, "{seen}");
    assert_eq!(seen["services_xml"], 96, "{seen}");
    assert_eq!(seen["definition_xml"], "complaint.water");
    assert_eq!(seen["discovery"], "http://wiki.open311.org/GeoReport_v2");
    let id = seen["created"].as_str().expect("id");
    let one = &seen["one"];
    assert_eq!(one["service_request_id"], id);
    assert_eq!(one["status"], "open");
    assert_eq!(one["service_code"], "complaint.water");
    assert!(
        one["agency_responsible"]
            .as_str()
            .unwrap_or("")
            .contains("水务"),
        "{one}"
    );
    assert_eq!(one["address"], "北京市朝阳区望京西园三区");
    assert!(
        one["expected_datetime"]
            .as_str()
            .is_some_and(|d| d.ends_with('Z')),
        "{one}"
    );
    assert_eq!(one["lat"], 39.996);
    assert_eq!(one["media_url"], "https://example.org/photo.jpg");
    // The requester's contact details are never in a request.
    let keys = seen["one_keys"].to_string();
    assert!(
        !keys.contains("email") && !keys.contains("first_name"),
        "{keys}"
    );
    assert!(!seen.to_string().contains("li@example.org"));
    assert_eq!(seen["open_ids"], serde_json::json!([id]));
    assert_eq!(seen["closed_ids"], serde_json::json!([]));
    assert_eq!(
        (seen["by_code"].as_u64(), seen["by_other_code"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(seen["one_xml"]["service_request_id"], id);
    // The spec's errors: a missing service_code, a bad key, an unknown id; nothing created.
    assert_eq!(seen["missing_code"][0], 400);
    assert_eq!(seen["missing_code"][1][0]["code"], 400);
    assert!(seen["missing_code"][1][0]["description"]
        .as_str()
        .unwrap_or("")
        .contains("service_code"));
    assert_eq!(seen["bad_key"][0], 403);
    assert!(
        seen["bad_key"][1]
            .as_str()
            .unwrap_or("")
            .contains("<errors><error><code>403</code>"),
        "{seen}"
    );
    assert_eq!(seen["unknown"][0], 404);
    assert_eq!(util::get_json(svc.addr, "/api/cases").await["total"], 1);
    // The office sees the contact details the client gave, kept apart.
    let page = util::get_json(svc.addr, &format!("/api/cases/{id}")).await;
    assert_eq!(page["channel"]["via"], "open311", "{page}");
    assert_eq!(
        page["contacts"]["open311:city-app"]["email"], "li@example.org",
        "{page}"
    );
    stop(svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open311_refuses_bad_requests_in_the_specs_format() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = util::respond_config(util::rules_dir(), dir.path().join("data"), &[]);
    cfg.auth.tokens.push(TokenEntry {
        name: "city-app".into(),
        role: Role::Ingest,
        sha256: token_hash(INGEST),
        owner: None,
    });
    cfg.auth.tokens.push(TokenEntry {
        name: "wall".into(),
        role: Role::Viewer,
        sha256: token_hash("hy_open311_viewer"),
        owner: None,
    });
    let svc = start_service(cfg, Arc::new(MemoryStore::default())).await;
    let post = |body: &'static str| {
        let addr = svc.addr;
        async move {
            util::request(
                addr,
                "POST",
                "/open311/v2/requests.json",
                &[("Content-Type", "application/x-www-form-urlencoded")],
                body.as_bytes(),
            )
            .await
        }
    };
    for (body, status, needle) in [
        ("service_code=complaint.water&description=x&lat=1&long=1", 403, "api_key"),
        ("api_key=hy_open311_viewer&service_code=complaint.water&description=x&lat=1&long=1", 403, "api_key"),
        ("api_key=hy_open311_ingest_key&description=x&lat=1&long=1", 400, "service_code"),
        ("api_key=hy_open311_ingest_key&service_code=wish.water&description=x&lat=1&long=1", 400, "service_code"),
        ("api_key=hy_open311_ingest_key&service_code=complaint.water&description=x", 400, "location"),
        ("api_key=hy_open311_ingest_key&service_code=complaint.water&description=x&lat=91&long=1", 400, "lat"),
        ("api_key=hy_open311_ingest_key&service_code=complaint.water&lat=1&long=1", 400, "description"),
        ("api_key=hy_open311_ingest_key&service_code=complaint.water&description=x&lat=1&long=1&media_url=file:///etc/passwd", 400, "media_url"),
    ] {
        let a = post(body).await;
        assert_eq!(a.status, status, "{body}: {}", a.body);
        let v: Value = serde_json::from_str(&a.body).expect("json errors");
        assert_eq!(v[0]["code"], status, "{body}");
        assert!(v[0]["description"].as_str().unwrap_or("").contains(needle), "{body}: {v}");
    }
    for (path, status) in [
        ("/open311/v2/services/nothing.json", 404),
        ("/open311/v2/services/complaint.water.txt", 404),
        ("/open311/v2/requests.json?status=lost", 400),
        ("/open311/v2/requests.json?start_date=yesterday", 400),
    ] {
        let a = util::request(svc.addr, "GET", path, &[], b"").await;
        assert_eq!(a.status, status, "{path}: {}", a.body);
    }
    assert_eq!(util::get_json(svc.addr, "/api/cases").await["total"], 0);
    stop(svc).await;
}
