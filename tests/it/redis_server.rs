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

/// A port free right now (bound and released).
pub fn free_port() -> u16 {
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
    use huiying::store::redis::Redis;
    use huiying::store::redis::RedisConfig;
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

/// A TLS-only `redis-server` with a throwaway CA: (server, CA file). Certificates are made with
/// the `openssl` command.
pub fn start_tls(dir: &Path) -> (Child, u16, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=huiying test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    ]);
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
        .arg("--tls-cert-file")
        .arg(dir.join("server.crt"))
        .arg("--tls-key-file")
        .arg(dir.join("server.key"))
        .arg("--tls-ca-cert-file")
        .arg(dir.join("ca.crt"))
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = Command::new("redis-cli")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "--tls",
                "--cacert",
            ])
            .arg(dir.join("ca.crt"))
            .arg("ping")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
            .unwrap_or(false);
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the TLS redis-server did not answer"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, port, dir.join("ca.crt"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_connects_with_the_configured_ca_and_refuses_an_unknown_one() {
    use huiying::store::redis::Redis;
    use huiying::store::redis::RedisConfig;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut server, port, ca) = start_tls(dir.path());
    let url = format!("rediss://127.0.0.1:{port}/0");
    let cfg = RedisConfig {
        namespace: namespace("tls"),
        ca_file: Some(ca),
        ..RedisConfig::default()
    };
    let r = Redis::connect(&url, &cfg).await.expect("connect over TLS");
    let mut c = r.conn();
    let _: () = redis::cmd("SET")
        .arg(r.key("tls"))
        .arg("ok")
        .query_async(&mut c)
        .await
        .expect("SET over TLS");
    // The publishing side's blocking connection takes the same settings.
    let b = huiying::respond::redis::Blocking::new(&url, &cfg).expect("client");
    let v: Option<String> = b
        .run(|c| redis::cmd("GET").arg(r.key("tls")).query(c))
        .expect("GET over TLS");
    assert_eq!(v.as_deref(), Some("ok"));
    // Without the CA the server's certificate is not trusted.
    let plain = RedisConfig {
        namespace: cfg.namespace.clone(),
        ..RedisConfig::default()
    };
    assert!(
        Redis::connect(&url, &plain).await.is_err(),
        "an untrusted certificate was accepted"
    );
    let _ = server.kill();
    let _ = server.wait();
}
