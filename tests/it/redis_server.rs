//! Real Redis for the distributed tests: the shared server on 127.0.0.1:6379 with a unique key
//! namespace per test, or a `redis-server` of the test's own on a free port (to kill, restart or
//! run with AOF). These tests fail, never skip, when Redis cannot be reached: `.ci/run` starts
//! the shared server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shared server's URL (database 0).
pub const SHARED_URL: &str = "redis://127.0.0.1:6379/0";

/// A namespace no other test (or run) uses.
pub fn namespace(test: &str) -> String {
    format!(
        "hytest:{test}:{}:{}",
        std::process::id(),
        crate::util::now_ms()
    )
}

/// Panic with a clear message unless the shared server answers PING.
pub fn require_shared() -> &'static str {
    let ok = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", "6379", "ping"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
        .unwrap_or(false);
    assert!(
        ok,
        "Redis is not answering on 127.0.0.1:6379 (start it: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no)"
    );
    SHARED_URL
}

/// A `redis-server` owned by the test: its own port and directory; killed on drop.
pub struct OwnRedis {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    dir: PathBuf,
    aof: bool,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn ping(port: u16) -> bool {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "ping"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
        .unwrap_or(false)
}

impl OwnRedis {
    /// Start one in `dir` (AOF with `appendfsync always` when `aof`).
    pub fn start(dir: &Path, aof: bool) -> OwnRedis {
        let mut r = OwnRedis {
            child: None,
            port: free_port(),
            dir: dir.to_path_buf(),
            aof,
        };
        r.restart();
        r
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// (Re)start it on the same port and directory; waits until it answers PING.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--bind",
            "127.0.0.1",
            "--port",
            &self.port.to_string(),
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(&self.dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if self.aof {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd
            .spawn()
            .expect("redis-server is installed (Debian package redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ping(self.port) {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9 it (what is not in the AOF is lost).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn the_connection_manager_reconnects_after_a_redis_restart_and_tracks_health() {
    use huiying::config::RedisConfig;
    use huiying::store::redis::Redis;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut own = OwnRedis::start(dir.path(), true);
    let cfg = RedisConfig {
        namespace: namespace("conn"),
        ..RedisConfig::default()
    };
    let r = Redis::connect(&own.url(), &cfg).await.expect("connect");
    let key = r.key("probe");
    assert!(key.starts_with(&cfg.namespace), "{key}");
    let mut c = r.conn();
    let set: redis::RedisResult<()> = redis::cmd("SET")
        .arg(&key)
        .arg("1")
        .query_async(&mut c)
        .await;
    r.track(set).expect("SET");
    assert!(r.is_up());

    own.kill();
    let got: redis::RedisResult<Option<String>> =
        redis::cmd("GET").arg(&key).query_async(&mut c).await;
    assert!(r.track(got).is_err(), "a command while Redis is down fails");
    assert!(!r.is_up());

    // AOF with appendfsync always: the key survived the kill -9.
    own.restart();
    let v = crate::util::within("a command after Redis is back", async {
        loop {
            let got: redis::RedisResult<Option<String>> =
                redis::cmd("GET").arg(&key).query_async(&mut c).await;
            if let Ok(v) = r.track(got) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(v.as_deref(), Some("1"));
    assert!(r.is_up());

    // A password source that is missing is a config error naming it.
    let bad = RedisConfig {
        password_env: Some("HUIYING_TEST_NO_SUCH_VAR".into()),
        ..RedisConfig::default()
    };
    let e = Redis::connect(&own.url(), &bad)
        .await
        .expect_err("no password");
    assert!(e.to_string().contains("HUIYING_TEST_NO_SUCH_VAR"), "{e}");
}

#[test]
fn the_shared_server_answers() {
    require_shared();
}
