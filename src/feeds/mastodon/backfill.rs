//! The REST backfill after a reconnect: each stream's timeline newer than the last id seen
//! (`since_id`), paged with `max_id`, over the feeds' shared client ([`crate::feeds::http`]).

use super::ids::{bump, id_cmp, value_id};
use super::status::{Notification, Status};
use super::stream::Stream;
use super::url::url_encode;
use super::{Mastodon, SOURCE, SOURCE_DIRECT, SOURCE_NOTIFICATION};
use crate::feeds::http::{self, HttpResponse};
use crate::normalize::Mention;
use serde::Deserialize;
use serde_json::Value;
use std::cmp::Ordering;

/// Items per backfill page (Mastodon's maximum for timelines).
const PAGE: usize = 40;
/// Pages per stream and backfill round at most.
const MAX_PAGES: usize = 10;
/// Largest backfill response body: a page of 40 statuses or notifications is well under 1 MiB.
const MAX_BODY: usize = 2 << 20;

impl Mastodon {
    /// Fetch one stream's timeline newer than `since`: every item (newest pages first).
    async fn fetch(&self, base: &str, stream: &Stream, since: &str) -> Result<Vec<Value>, Fetch> {
        let Some((path, fixed)) = stream.timeline() else {
            return Ok(Vec::new());
        };
        let mut items = Vec::new();
        let mut max_id: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut url = format!("{base}{path}?");
            if !fixed.is_empty() {
                url.push_str(&fixed);
                url.push('&');
            }
            url.push_str(&format!("since_id={}&limit={PAGE}", url_encode(since)));
            if let Some(m) = &max_id {
                url.push_str(&format!("&max_id={}", url_encode(m)));
            }
            let resp = http_get(&self.client, &url, self.token.as_deref())
                .await
                .map_err(Fetch::Failed)?;
            if resp.status == 429 {
                return Err(Fetch::RateLimited(
                    resp.header("x-ratelimit-reset").unwrap_or("?").to_string(),
                ));
            }
            if resp.status != 200 {
                let body = crate::truncate_chars(&String::from_utf8_lossy(&resp.body), 200);
                return Err(Fetch::Failed(format!("HTTP {}: {body}", resp.status)));
            }
            let page: Vec<Value> = serde_json::from_slice(&resp.body)
                .map_err(|e| Fetch::Failed(format!("not a JSON array: {e}")))?;
            let full = page.len() >= PAGE;
            let mut oldest: Option<String> = None;
            for v in page {
                let Some(id) = value_id(&v) else { continue };
                if id_cmp(&id, since) != Ordering::Greater {
                    continue;
                }
                if oldest
                    .as_deref()
                    .is_none_or(|o| id_cmp(&id, o) == Ordering::Less)
                {
                    oldest = Some(id);
                }
                items.push(v);
            }
            match oldest {
                Some(o) if full => max_id = Some(o),
                _ => return Ok(items),
            }
        }
        tracing::warn!(
            feed = %self.feed,
            stream = %stream.key(),
            pages = MAX_PAGES,
            "Mastodon backfill capped; older missed statuses are skipped."
        );
        Ok(items)
    }

    /// Learn the newest mention notification's id when none is known yet (nothing is
    /// delivered), so that the next backfill of the notification streams has a `since_id`: a
    /// feed on `direct` alone sees no notification ids on its stream.
    pub(super) async fn anchor_notifications(&mut self) {
        if self.last_notification.is_some() || !self.streams.iter().any(Stream::is_notifications) {
            return;
        }
        let url = format!(
            "{}/api/v1/notifications?types%5B%5D=mention&limit=1",
            self.rest_base
        );
        let page = match http_get(&self.client, &url, self.token.as_deref()).await {
            Ok(r) if r.status == 200 => serde_json::from_slice::<Vec<Value>>(&r.body)
                .map_err(|e| format!("not a JSON array: {e}")),
            Ok(r) => Err(format!("HTTP {}", r.status)),
            Err(e) => Err(e),
        };
        match page {
            Ok(page) => {
                self.last_notification = page.first().and_then(value_id);
                // Nothing yet: every notification from now on is newer than "0".
                if self.last_notification.is_none() {
                    self.last_notification = Some("0".to_string());
                }
            }
            Err(e) => {
                tracing::warn!(feed = %self.feed, error = %e, "Cannot read the newest notification; no notification backfill until one is seen.")
            }
        }
    }

    pub(super) async fn backfill(&mut self) -> Vec<Mention> {
        let base = self.rest_base.clone();
        let mut out = Vec::new();
        // Both notification streams backfill from the same list: once, keeping only direct
        // messages when `user:notification` itself is not subscribed.
        let all_mentions = self.streams.contains(&Stream::Notifications);
        for stream in self.streams.clone() {
            if stream.timeline().is_none() || (stream == Stream::Direct && all_mentions) {
                continue;
            }
            let key = stream.key();
            let since = if stream.is_notifications() {
                self.last_notification.clone()
            } else {
                self.last_seen.get(&key).cloned().or(self.newest.clone())
            };
            let Some(since) = since else {
                tracing::debug!(feed = %self.feed, stream = %key, "Nothing seen yet on this stream; no backfill.");
                continue;
            };
            let items = match self.fetch(&base, &stream, &since).await {
                Ok(items) => items,
                Err(Fetch::RateLimited(reset)) => {
                    tracing::warn!(
                        feed = %self.feed,
                        stream = %key,
                        reset = %reset,
                        "Mastodon backfill rate limited (HTTP 429); skipping it this time."
                    );
                    break;
                }
                Err(Fetch::Failed(e)) => {
                    tracing::warn!(feed = %self.feed, stream = %key, error = %e, "Mastodon backfill failed.");
                    continue;
                }
            };
            let (mut got, mut bad) = (0usize, 0usize);
            for v in items {
                let Some(id) = value_id(&v) else { continue };
                let m = if stream.is_notifications() {
                    bump(&mut self.last_notification, &id);
                    match Notification::deserialize(&v) {
                        Ok(Notification {
                            kind,
                            status: Some(s),
                            ..
                        }) if kind == "mention" => {
                            if all_mentions {
                                self.mention(&s, false, SOURCE_NOTIFICATION)
                            } else if s.visibility.as_deref() == Some("direct") {
                                self.mention(&s, false, SOURCE_DIRECT)
                            } else {
                                continue;
                            }
                        }
                        Ok(_) => continue,
                        Err(e) => Err(("bad_field", e.to_string())),
                    }
                } else {
                    self.saw_status(Some(&key), &id);
                    match Status::deserialize(&v) {
                        Ok(s) => self.mention(&s, false, SOURCE),
                        Err(e) => Err(("bad_field", e.to_string())),
                    }
                };
                match m {
                    Ok(m) => {
                        if self.recent.insert(&m.id) {
                            got += 1;
                            out.push(m);
                        }
                    }
                    Err((_, e)) => {
                        bad += 1;
                        tracing::debug!(feed = %self.feed, error = %e, "Bad status in the Mastodon backfill.");
                    }
                }
            }
            tracing::info!(feed = %self.feed, stream = %key, since = %since, mentions = got, bad, "Mastodon backfill.");
        }
        // Oldest first: by time, then by status id (the last part of the mention id).
        let sid = |m: &Mention| m.id.rsplit(':').next().unwrap_or("").to_string();
        out.sort_by(|a, b| a.ts.cmp(&b.ts).then_with(|| id_cmp(&sid(a), &sid(b))));
        out
    }
}

/// Why a stream's backfill stopped.
enum Fetch {
    /// HTTP 429, with the `X-RateLimit-Reset` the server sent.
    RateLimited(String),
    /// Anything else: transport, status, body.
    Failed(String),
}

/// `GET url` (JSON), with a bearer token if given; a body over [`MAX_BODY`] is an error.
async fn http_get(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> Result<HttpResponse, String> {
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    http::get(req, MAX_BODY).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn unhex(parts: &[&str]) -> Vec<u8> {
        let h: String = parts.concat();
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    }

    // A test CA and a `localhost` certificate it signed (P-256, valid 2000–2100), DER.
    const TEST_CA: &[&str] = &[
        "308201683082010da003020102020101300a06082a8648ce3d040302301a3118301606035504030c0f68756979",
        "696e6720746573742043413020170d3030303130313030303030305a180f32313030303130313030303030305a",
        "301a3118301606035504030c0f68756979696e6720746573742043413059301306072a8648ce3d020106082a86",
        "48ce3d03010703420004fd185763215ac3fc97dc8079ab9ff634b36660391db7a5d6936b99bfb852bb70be0176",
        "2138db65de61894df78779c720571dadcd931386b844b74b8017227e6fa3423040300f0603551d130101ff0405",
        "30030101ff300e0603551d0f0101ff040403020204301d0603551d0e04160414f78a81cdc58af227f2b3651b92",
        "3950c48f0fc440300a06082a8648ce3d0403020349003046022100ebd067ff0bbe5a24fb5962406505aab12200",
        "b6ad061afa55296aee8b7646458c022100815c21e05dfc3d2d33a89021cbe27471b641ffc4a9036230e509ccca",
        "131b35ef",
    ];
    const TEST_LEAF: &[&str] = &[
        "308201ab30820152a003020102020102300a06082a8648ce3d040302301a3118301606035504030c0f68756979",
        "696e6720746573742043413020170d3030303130313030303030305a180f32313030303130313030303030305a",
        "30143112301006035504030c096c6f63616c686f73743059301306072a8648ce3d020106082a8648ce3d030107",
        "03420004f7deabbe99d54f2bfd52a842ec2b19ae1137211923d6ae87b75daa72d5dc84f9fcee6e1940e0418a30",
        "f572c1f5d4f3b24c84fd8ed9ef21498124e2c667c09cb0a3818c308189300c0603551d130101ff04023000300e",
        "0603551d0f0101ff04040302078030130603551d25040c300a06082b0601050507030130140603551d11040d30",
        "0b82096c6f63616c686f7374301f0603551d23041830168014f78a81cdc58af227f2b3651b923950c48f0fc440",
        "301d0603551d0e04160414024ccc74832b7ea6c773e6daa5f67b7e0bfbd19d300a06082a8648ce3d0403020347",
        "00304402201b03906e92dd06641261378e6c5c415419451c0ac8ad2919aef7d0aed57f52ce02205146bd27c8f5",
        "1e82749d9a6d67b9e6a3b918cb4f9394d8be35eb9e8f713237a3",
    ];
    const TEST_LEAF_KEY: &[&str] = &[
        "308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b020101042039112abda07000d15c",
        "91d2f16b6882298c041b4aa784c63a070a1ef9328e2cd1a14403420004f7deabbe99d54f2bfd52a842ec2b19ae",
        "1137211923d6ae87b75daa72d5dc84f9fcee6e1940e0418a30f572c1f5d4f3b24c84fd8ed9ef21498124e2c667",
        "c09cb0",
    ];

    /// `https://` backfill requests: verified TLS, the bearer token, chunked answers, servers
    /// that close without close_notify; an unknown CA is refused.
    #[tokio::test]
    async fn https_get_round_trip() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let cert = rustls::pki_types::CertificateDer::from(unhex(TEST_LEAF));
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(unhex(TEST_LEAF_KEY).into());
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("test certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, mut requests) = tokio::sync::mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut req = Vec::new();
                let mut b = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&b[..n]),
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&req).into_owned());
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n")
                    .await;
                let _ = s.flush().await;
                // Dropped without close_notify.
            }
        });
        let ca = reqwest::Certificate::from_der(&unhex(TEST_CA)).unwrap();
        let trusting = http::client_builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .build()
            .unwrap();
        let url = format!("https://localhost:{port}/api/v1/timelines/public?local=true");
        let r = http_get(&trusting, &url, Some("secret"))
            .await
            .expect("an answer over TLS");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"[1,2]"[..]));
        let req = requests.recv().await.unwrap();
        assert!(
            req.starts_with("GET /api/v1/timelines/public?local=true HTTP/1.1\r\n"),
            "{req}"
        );
        assert!(
            req.contains("\r\nAuthorization: Bearer secret\r\n"),
            "{req}"
        );
        assert!(
            req.contains(&format!("\r\nHost: localhost:{port}\r\n")),
            "{req}"
        );

        let default = http::client_builder().build().unwrap();
        let e = http_get(&default, &url, None).await.unwrap_err();
        assert!(e.contains("TLS handshake"), "{e}");
    }

    /// A 10 MiB answer is not read whole: past [`MAX_BODY`] the page is an error.
    #[tokio::test]
    async fn huge_page_is_refused() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let _ = s.read(&mut [0u8; 4096]).await;
            let body = format!("[\"{}\"]", "x".repeat(10 << 20));
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(body.as_bytes()).await;
        });
        let client = http::client_builder().build().unwrap();
        let url = format!("http://127.0.0.1:{port}/api/v1/timelines/home");
        match http_get(&client, &url, None).await {
            Ok(r) => panic!("a {}-byte page was read", r.body.len()),
            Err(e) => assert!(e.contains("response over"), "{e}"),
        }
    }
}
