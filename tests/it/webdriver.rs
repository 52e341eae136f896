//! chromedriver for the browser tests (console, wall): started on a free port in its own process
//! group, spoken to over HTTP with reqwest; dropping it ends the group, so a failing test never
//! leaves Chromium running.

use crate::util::within;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Debian's Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's chromedriver (package chromium-driver).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The flags every test browser gets.
pub const CHROMIUM_ARGS: [&str; 4] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
];

/// A running chromedriver.
pub struct Chromedriver {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The client to speak WebDriver with.
    pub http: reqwest::Client,
    process: tokio::process::Child,
}

impl Chromedriver {
    /// Start it and wait until it is ready. Fails (never skips) when Chromium or chromedriver is
    /// missing: `.ci/run` installs them.
    pub async fn start() -> Chromedriver {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: install Debian chromium and chromium-driver (apt-get install -y chromium chromium-driver; .ci/run does)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let process = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // Its own process group, so that a failing test takes Chromium down with it.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        within("chromedriver to be ready", async {
            loop {
                if let Ok(r) = http.get(format!("{base}/status")).send().await {
                    let v: Value = r.json().await.unwrap_or_default();
                    if v["value"]["ready"] == true {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        Chromedriver {
            base,
            http,
            process,
        }
    }
}

impl Drop for Chromedriver {
    /// A test that fails before `quit` must not leave Chromium running: end the whole group.
    fn drop(&mut self) {
        if let Some(pid) = self.process.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    }
}
