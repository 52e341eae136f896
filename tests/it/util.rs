//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The repository's rules directory.
pub fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules")
}

/// A file under tests/data.
pub fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Copy a directory tree (rules with a test matrix, for example).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("dir entry");
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

/// A `Write` whose bytes can be read after the writer moved into another thread.
#[derive(Clone, Default)]
pub struct SharedBuf(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer lock").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    /// Everything written, as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("buffer lock").clone()).expect("utf-8 output")
    }
}

/// Replay `file` with the shipped rules; returns (stdout, stderr diagnostics, summary).
pub fn replay_file(
    file: &std::path::Path,
    emit: huiying::app::Emit,
    workers: usize,
) -> (String, String, huiying::app::ReplaySummary) {
    let out = SharedBuf::default();
    let mut diag: Vec<u8> = Vec::new();
    let summary = huiying::app::replay(
        file,
        &rules_dir(),
        huiying::feeds::jsonl::Speed::Max,
        emit,
        Some(workers),
        out.clone(),
        &mut diag,
    )
    .expect("replay runs");
    (
        out.text(),
        String::from_utf8_lossy(&diag).into_owned(),
        summary,
    )
}

/// Parse JSON lines.
pub fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).expect("each output line is JSON"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Service helpers: a bounded wait, a tiny HTTP/1.1 client, `/api/stream` clients, mentions and
// metrics.

/// How long any single wait in the service tests may take before the test fails.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Await `f`, failing the test (naming `what`) if it takes longer than [`WAIT`].
pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(WAIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// The API token every service started by [`start_service`] accepts (role `admin`): the tests
/// that are not about authentication send it from [`http`] and [`stream`].
pub const TEST_TOKEN: &str = "hy_integration_suite_test_token";

/// `config` plus the suite's [`TEST_TOKEN`] (given by hash, as a config may).
pub fn with_test_auth(mut config: huiying::config::Config) -> huiying::config::Config {
    config.auth.tokens.push(huiying::api::auth::TokenEntry {
        name: "test-suite".into(),
        role: huiying::api::auth::Role::Admin,
        sha256: huiying::api::auth::token_hash(TEST_TOKEN),
        owner: None,
    });
    config
}

/// One HTTP/1.1 request with the suite's [`TEST_TOKEN`]; returns the status and the body.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, String) {
    let auth = format!("Bearer {TEST_TOKEN}");
    let a = request(addr, method, path, &[("Authorization", &auth)], body).await;
    (a.status, a.body)
}

/// An HTTP answer: status, headers (names lower case) and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// Body (chunked bodies decoded).
    pub body: String,
}

impl Answer {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`) with extra `headers`.
/// Fails the test on timeout or a malformed answer.
pub async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let what = format!("{method} {path}");
    // Boxed: callers make many requests in one test, and debug builds keep every inline
    // future's buffers in the caller's state (a test once overflowed its stack).
    Box::pin(within(&what, async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("{what}: connect {addr}: {e}"));
        let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        // A server may answer (and close) before reading all of a refused body: a failed write
        // is not an error as long as an answer arrives.
        let _ = s.write_all(&req).await;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                // A reset after the answer (unread request bytes) loses nothing we need.
                Err(_) if !buf.is_empty() => break,
                Err(e) => panic!("{what}: read: {e}"),
            }
        }
        parse_http_answer(&buf).unwrap_or_else(|e| {
            panic!(
                "{what}: bad HTTP answer ({e}): {:?}",
                String::from_utf8_lossy(&buf)
            )
        })
    }))
    .await
}

/// Parse a complete HTTP/1.1 response: status and body.
pub fn parse_http_response(buf: &[u8]) -> Result<(u16, String), String> {
    parse_http_answer(buf).map(|a| (a.status, a.body))
}

/// Parse a complete HTTP/1.1 response with its headers.
pub fn parse_http_answer(buf: &[u8]) -> Result<Answer, String> {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&buf[..split]).map_err(|e| e.to_string())?;
    let mut raw = &buf[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("no status line")?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not HTTP/1.x: {status_line}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {status_line}"))?;
    let mut chunked = false;
    let mut length = None;
    let mut headers = Vec::new();
    for l in lines {
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| format!("bad header: {l}"))?;
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        headers.push((k.clone(), v.to_string()));
        if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if k == "content-length" {
            length = Some(v.parse::<usize>().map_err(|e| e.to_string())?);
        }
    }
    let body = if chunked {
        let mut out = Vec::new();
        loop {
            let eol = raw
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("truncated chunk size")?;
            let size_str = std::str::from_utf8(&raw[..eol]).map_err(|e| e.to_string())?;
            let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|e| format!("bad chunk size {size_str:?}: {e}"))?;
            raw = &raw[eol + 2..];
            if size == 0 {
                break;
            }
            if raw.len() < size + 2 {
                return Err("truncated chunk".into());
            }
            out.extend_from_slice(&raw[..size]);
            raw = &raw[size + 2..];
        }
        out
    } else if let Some(n) = length {
        if raw.len() < n {
            return Err(format!("body is {} bytes, Content-Length {n}", raw.len()));
        }
        raw[..n].to_vec()
    } else {
        raw.to_vec()
    };
    let body = String::from_utf8(body).map_err(|e| e.to_string())?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// Parse a body that must be JSON.
pub fn json_body(what: &str, body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {body}"))
}

/// A websocket client of the service.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connect to `/api/stream` (with `mention.assigned` events when `assignments`). Once this
/// returns the server has subscribed the client to the event bus.
pub async fn stream(addr: std::net::SocketAddr, assignments: bool) -> Ws {
    stream_with(addr, if assignments { "?assignments=true" } else { "" }).await
}

/// A websocket request to `url` with the test token in the `Authorization` header (an admin
/// token is not taken in the URL).
pub fn stream_request(url: &str) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().expect("stream request");
    let auth = format!("Bearer {TEST_TOKEN}")
        .parse()
        .expect("header value");
    req.headers_mut().insert("authorization", auth);
    req
}

/// `/api/stream{query}` with the test token.
pub async fn stream_with(addr: std::net::SocketAddr, query: &str) -> Ws {
    let url = format!("ws://{addr}/api/stream{query}");
    let req = stream_request(&url);
    let (ws, resp) = within(
        "the stream to connect",
        tokio_tungstenite::connect_async(req),
    )
    .await
    .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    assert_eq!(resp.status().as_u16(), 101, "{url}: not upgraded");
    ws
}

/// Read stream events until `pred` accepts one (returned). Fails the test on timeout, on a
/// stream that ends first, or on a line that is not JSON.
pub async fn next_event(
    ws: &mut Ws,
    what: &str,
    mut pred: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    within(what, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: serde_json::Value = serde_json::from_str(t.as_str())
                        .unwrap_or_else(|e| panic!("stream line is not JSON ({e}): {t}"));
                    if pred(&v) {
                        return v;
                    }
                }
                Some(Ok(Message::Close(_))) | None => panic!("the stream ended before {what}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("stream error before {what}: {e}"),
            }
        }
    })
    .await
}

/// Now, in unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A mention in the generic format.
pub fn mention(id: &str, author: &str, text: &str, ts: i64) -> serde_json::Value {
    serde_json::json!({"id": id, "ts": ts, "author": author, "text": text})
}

/// The value of one series in a Prometheus text exposition, e.g.
/// `huiying_rejected_mentions_total{reason="invalid_json"}` (labels as rendered: sorted by name).
pub fn metric(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Start the service, bounded in time.
pub async fn start_service(
    config: huiying::config::Config,
    store: std::sync::Arc<dyn huiying::store::Store>,
) -> huiying::app::Service {
    within(
        "the service to start",
        huiying::app::start(huiying::app::ServiceOptions {
            config: with_test_auth(config),
            store,
            demo: false,
            auth_clock: None,
        }),
    )
    .await
    .expect("the service starts")
}

/// Shut the service down, bounded in time.
pub async fn stop(svc: huiying::app::Service) {
    within("the service to shut down", svc.shutdown())
        .await
        .expect("the service shuts down cleanly");
}

/// `GET path` answered 200 with JSON.
pub async fn get_json(addr: std::net::SocketAddr, path: &str) -> serde_json::Value {
    let (status, text) = http(addr, "GET", path, b"").await;
    assert_eq!(status, 200, "GET {path}: {text}");
    json_body(&format!("GET {path}"), &text)
}

/// The `/metrics` text.
pub async fn get_metrics(addr: std::net::SocketAddr) -> String {
    let (status, text) = http(addr, "GET", "/metrics", b"").await;
    assert_eq!(status, 200, "GET /metrics: {text}");
    text
}

/// Run `promtool <args…>` on `contents` (a temporary file on stdin, and in place of any `FILE`
/// argument); fails the test, with promtool's output, unless it succeeds. A missing promtool fails too: the check is part of
/// the suite (Debian: apt-get install -y prometheus; .ci/run installs it).
pub async fn promtool(args: &[&str], contents: &str) {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    std::io::Write::write_all(&mut file, contents.as_bytes()).expect("write promtool input");
    let input = file.reopen().expect("reopen promtool input");
    let path = file.path().to_string_lossy().into_owned();
    let run = tokio::process::Command::new("promtool")
        .args(
            args.iter()
                .map(|a| if *a == "FILE" { path.as_str() } else { a }),
        )
        .stdin(std::process::Stdio::from(input))
        .output();
    let out = match within("promtool", run).await {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not on PATH: this test needs it (Debian: apt-get install -y prometheus; .ci/run installs it)"
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    assert!(
        out.status.success(),
        "promtool {args:?} failed ({}):\nstdout: {}\nstderr: {}\ninput:\n{contents}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A service config on port 0 with the respond stage on: `rules`, data under `data_dir`, drafts
/// from severity 1, and one operator per (name, environment variable holding the token).
pub fn respond_config(
    rules: PathBuf,
    data_dir: PathBuf,
    operators: &[(&str, &str)],
) -> huiying::config::Config {
    huiying::config::Config {
        listen: "127.0.0.1:0".into(),
        watch_rules: false,
        rules,
        respond: huiying::respond::RespondConfig {
            enabled: true,
            data_dir,
            policy: huiying::respond::notices::ApprovalPolicy {
                draft_threshold: 1,
                ..Default::default()
            },
            operators: operators
                .iter()
                .map(|(name, var)| huiying::respond::Operator {
                    name: name.to_string(),
                    token_env: Some(var.to_string()),
                    token_file: None,
                })
                .collect(),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The pipeline's analyzer and the shipped rules it normalised, built once per test binary.
pub fn analyzer_and_rules() -> &'static (
    huiying::detect::Analyzer,
    std::sync::Arc<huiying::detect::RuleSet>,
) {
    type Pair = (
        huiying::detect::Analyzer,
        std::sync::Arc<huiying::detect::RuleSet>,
    );
    static S: std::sync::OnceLock<Pair> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        let a = huiying::detect::Analyzer::new();
        let r = huiying::detect::RuleSet::load(&rules_dir(), &a.normalizer)
            .unwrap_or_else(|e| panic!("shipped rules invalid:\n{e}"));
        (a, std::sync::Arc::new(r))
    })
}

/// The shipped rules, loaded once per test binary.
pub fn shipped_rules() -> &'static huiying::detect::RuleSet {
    static R: std::sync::OnceLock<huiying::detect::RuleSet> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        huiying::detect::RuleSet::load(&rules_dir(), &huiying::normalize::Normalizer::new())
            .unwrap_or_else(|e| panic!("shipped rules invalid:\n{e}"))
    })
}

/// The shipped account matrix.
pub fn shipped_matrix() -> &'static huiying::respond::matrix::Matrix {
    static M: std::sync::OnceLock<huiying::respond::matrix::Matrix> = std::sync::OnceLock::new();
    M.get_or_init(|| {
        huiying::respond::matrix::Matrix::load(&rules_dir().join("matrix"), shipped_rules())
            .unwrap_or_else(|e| panic!("shipped matrix invalid:\n{e}"))
    })
}

/// The shipped notice templates.
pub fn shipped_templates() -> &'static huiying::respond::templates::Templates {
    static T: std::sync::OnceLock<huiying::respond::templates::Templates> =
        std::sync::OnceLock::new();
    T.get_or_init(|| {
        huiying::respond::templates::Templates::load(
            &rules_dir().join("templates"),
            shipped_rules(),
        )
        .unwrap_or_else(|e| panic!("shipped templates invalid:\n{e}"))
    })
}

/// Wait for a `mention.assigned` to `incident` of every id in `ids`; a mention assigned that
/// is not in `ids`, or assigned twice, fails the test.
pub async fn wait_assigned(ws: &mut Ws, incident: &str, ids: &std::collections::BTreeSet<String>) {
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < ids.len() {
        let v = next_event(
            ws,
            &format!(
                "the assignment of {} more mentions to {incident}",
                ids.len() - seen.len()
            ),
            |v| v["event"] == "mention.assigned" && v["incident_id"] == incident,
        )
        .await;
        let mid = v["mention_id"].as_str().expect("mention_id").to_string();
        assert!(ids.contains(&mid), "unexpected mention assigned: {v}");
        assert!(seen.insert(mid), "mention assigned twice: {v}");
    }
}

/// Serve `app` on a port of its own (a fake webhook, bot or platform): its address.
pub async fn serve_at(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// [`serve_at`], as a base URL (`http://127.0.0.1:port`).
pub async fn serve(app: axum::Router) -> String {
    format!("http://{}", serve_at(app).await)
}

/// A Python 3 in a virtual environment `name` under the target directory where `check` runs,
/// made (with `package` from PyPI) when missing: for the tests that drive a real client library
/// (Open311's georeport, feedparser). Fails, never skips, when it cannot be made.
pub fn python_venv(name: &str, check: &str, package: &str) -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let py = venv.join("bin/python");
    let ok = |py: &PathBuf| {
        std::process::Command::new(py)
            .args(["-c", check])
            .status()
            .is_ok_and(|s| s.success())
    };
    if ok(&py) {
        return py;
    }
    let run = |cmd: &mut std::process::Command| {
        let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}{}\n(this test needs Python 3 and PyPI's {package}; .ci/run installs it)",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(std::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv));
    run(std::process::Command::new(&py).args(["-m", "pip", "install", "-q", package]));
    assert!(ok(&py), "{check:?} fails in {}", venv.display());
    py
}
