//! E-mail through the outbox over real SMTP: a local receiver (written here, speaking enough
//! SMTP for lettre: EHLO, MAIL, RCPT, DATA, QUIT) takes the department's mail when a case is
//! transferred; a 5xx answer fails the job with the server's text, a 4xx is retried.

use crate::util::{self, get_json, start_service, stop, within};
use huiying::api::auth::{token_hash, Role, TokenEntry};
use huiying::store::MemoryStore;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// One message the receiver accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// What the receiver answers to `MAIL FROM` next (`None`: 250), and how many messages it
/// takes and then drops the connection without answering (a broken exchange after DATA).
#[derive(Default)]
struct Script {
    mail_from: std::collections::VecDeque<&'static str>,
    drop_after_data: u32,
}

/// A local SMTP receiver on 127.0.0.1:0.
pub struct Receiver {
    pub port: u16,
    pub got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script: Arc<Mutex<Script>> = Arc::default();
        let (g, sc) = (got.clone(), script.clone());
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let (g, sc) = (g.clone(), sc.clone());
                tokio::spawn(async move {
                    let _ = session(s, g, sc).await;
                });
            }
        });
        Receiver { port, got, script }
    }

    /// Answer the next `MAIL FROM` with `reply` (e.g. `451 try later`, `550 no such user`).
    pub fn answer_next(&self, reply: &'static str) {
        self.script
            .lock()
            .expect("script")
            .mail_from
            .push_back(reply);
    }

    /// Take the next message, then close the connection before answering it.
    pub fn drop_after_data_next(&self) {
        self.script.lock().expect("script").drop_after_data += 1;
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().expect("got").clone()
    }
}

async fn session(
    s: tokio::net::TcpStream,
    got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<Script>>,
) -> std::io::Result<()> {
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 test.local ESMTP\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            w.write_all(b"250-test.local\r\n250 8BITMIME\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            let next = script.lock().expect("script").mail_from.pop_front();
            match next {
                Some(reply) => w.write_all(format!("{reply}\r\n").as_bytes()).await?,
                None => {
                    from = cmd[10..].trim().to_string();
                    to.clear();
                    w.write_all(b"250 OK\r\n").await?;
                }
            }
        } else if upper.starts_with("RCPT TO:") {
            to.push(cmd[8..].trim().to_string());
            w.write_all(b"250 OK\r\n").await?;
        } else if upper == "DATA" {
            w.write_all(b"354 go ahead\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                data.push_str(&line);
            }
            got.lock().expect("got").push(Received {
                from: from.clone(),
                to: to.clone(),
                data,
            });
            let drop = {
                let mut sc = script.lock().expect("script");
                let d = sc.drop_after_data > 0;
                sc.drop_after_data = sc.drop_after_data.saturating_sub(1);
                d
            };
            if drop {
                return Ok(());
            }
            w.write_all(b"250 queued\r\n").await?;
        } else if upper == "QUIT" {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            w.write_all(b"250 OK\r\n").await?;
        } else {
            w.write_all(b"502 not implemented\r\n").await?;
        }
    }
}

/// The decoded `Subject:` of a message (RFC 2047 `=?utf-8?b?…?=` words, as lettre writes them).
fn subject(data: &str) -> String {
    use base64::Engine as _;
    let mut lines = data.lines().skip_while(|l| !l.starts_with("Subject:"));
    let mut raw = lines
        .next()
        .map(|l| l.trim_start_matches("Subject:").trim().to_string())
        .unwrap_or_default();
    for l in lines {
        if l.starts_with(' ') || l.starts_with('\t') {
            raw.push_str(l.trim());
        } else {
            break;
        }
    }
    let mut out = String::new();
    for word in raw.split("?=") {
        let w = word.trim();
        match w.find("=?") {
            Some(i) => {
                out.push_str(&w[..i]);
                let enc = &w[i + 2..];
                let parts: Vec<&str> = enc.splitn(3, '?').collect();
                if parts.len() == 3 && parts[1].eq_ignore_ascii_case("b") {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(parts[2])
                        .unwrap_or_default();
                    out.push_str(&String::from_utf8_lossy(&bytes));
                }
            }
            None => out.push_str(w),
        }
    }
    out
}

const OP: &str = "hy_email_operator";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_mails_the_departments_duty_address_once_through_the_outbox() {
    let smtp = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = util::respond_config(util::rules_dir(), dir.path().join("data"), &[]);
    cfg.respond.smtp = Some(huiying::respond::SmtpConfig {
        url: format!("smtp://127.0.0.1:{}", smtp.port),
        from: "huiying@office.example".into(),
        credentials_env: None,
        per_hour: 600,
        timeout_secs: 5,
    });
    cfg.cases
        .duty_addresses
        .insert("water".into(), "water-duty@bureau.example".into());
    cfg.cases
        .duty_addresses
        .insert("housing".into(), "housing-duty@bureau.example".into());
    cfg.auth.tokens.push(TokenEntry {
        name: "duty-li".into(),
        role: Role::Operator,
        sha256: token_hash(OP),
        owner: None,
    });
    let svc = start_service(cfg, Arc::new(MemoryStore::default())).await;
    let create = |text: &'static str, reference: &'static str| {
        let addr = svc.addr;
        async move {
            let a = util::request(
                addr,
                "POST",
                "/api/cases",
                &[("Authorization", &format!("Bearer {OP}"))],
                json!({"text": text, "reference": reference, "department": "water"})
                    .to_string()
                    .as_bytes(),
            )
            .await;
            assert_eq!(a.status, 201, "{}", a.body);
            let v: Value = serde_json::from_str(&a.body).expect("json");
            v["case"]["id"].as_str().expect("id").to_string()
        }
    };
    let id = create("朝阳区望京西园三区自来水发黄三天了", "mail-1").await;
    let mail = within("the department's e-mail", async {
        loop {
            if let Some(m) = smtp.received().into_iter().next() {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(mail.to, ["<water-duty@bureau.example>"]);
    assert!(
        mail.from.contains("huiying@office.example"),
        "{}",
        mail.from
    );
    let s = subject(&mail.data);
    assert!(s.contains(&id) && s.contains("新转办诉求"), "{s}");
    assert!(
        mail.data.contains("Message-ID: <") && mail.data.contains("@huiying>"),
        "{}",
        mail.data
    );
    // The case page shows the mail delivered.
    let page = within("the mail job done", async {
        loop {
            let v = get_json(svc.addr, &format!("/api/cases/{id}")).await;
            if v["replies"].as_array().is_some_and(|r| {
                r.iter()
                    .any(|x| x["action"] == "mail" && x["state"] == "done")
            }) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        page["replies"]
            .to_string()
            .contains("water-duty@bureau.example"),
        "{page}"
    );

    // A permanent refusal fails the job with the server's text; nothing is sent twice.
    smtp.answer_next("550 5.1.1 mailbox unavailable");
    let id2 = create("海淀区某小区水压太低，楼上没水", "mail-2").await;
    let failed = within("the refused mail", async {
        loop {
            let v = get_json(svc.addr, &format!("/api/cases/{id2}")).await;
            let r = v["replies"].as_array().cloned().unwrap_or_default();
            if let Some(x) = r
                .into_iter()
                .find(|x| x["action"] == "mail" && x["state"] == "failed")
            {
                return x;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        failed["error"].as_str().unwrap_or("").contains("550"),
        "{failed}"
    );
    assert_eq!(
        smtp.received().len(),
        1,
        "only the first e-mail was accepted"
    );

    // The connection breaks after the message was taken: uncertain, so it is sent again under
    // the same Message-ID (receivers de-duplicate by it), and the job ends done.
    smtp.drop_after_data_next();
    let id3 = create("丰台区某小区供水管破裂，路面积水", "mail-3").await;
    within("the resent mail", async {
        loop {
            let v = get_json(svc.addr, &format!("/api/cases/{id3}")).await;
            if v["replies"].as_array().is_some_and(|r| {
                r.iter()
                    .any(|x| x["action"] == "mail" && x["state"] == "done")
            }) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let got = smtp.received();
    let ids: Vec<&str> = got[1..]
        .iter()
        .filter_map(|m| m.data.lines().find(|l| l.starts_with("Message-ID:")))
        .collect();
    assert_eq!(ids.len(), 2, "sent twice: {got:#?}");
    assert_eq!(ids[0], ids[1], "the same Message-ID");
    stop(svc).await;
}
