//! A signed webhook: the post as JSON to a receiver that publishes it (an office's own system,
//! a gateway to a platform without a public API).
//!
//! ```text
//! POST <url>
//! Content-Type: application/json
//! Idempotency-Key: <key>
//! X-Huiying-Timestamp: <unix seconds>
//! X-Huiying-Signature: sha256=<lowercase hex of HMAC-SHA256(secret, timestamp + "." + body)>
//!
//! {"idempotency_key":"…","account":"…","text":"…","action":"post|repost|reply|comment",
//!  "target":null|"…","language":null|"zh","visibility":null|"public"}
//! ```
//!
//! **Signature scheme.** The signed message is the timestamp header's value, a `.`, and the raw
//! body bytes, so a captured request cannot be replayed with a new timestamp. Receivers check it
//! with [`verify_signature`] (constant-time) and should refuse timestamps older than a few
//! minutes ([`verify_signature_at`]).
//!
//! **Answer.** Any 2xx is success; `post_id` is the JSON `id` of the answer (string or number)
//! if there is one, else the idempotency key. Other statuses are classified like every HTTP
//! platform (429/5xx retryable, 401/403 auth, other 4xx rejected) with the body's `error` or
//! `message` as the message.
//!
//! **Guarantee.** A webhook has no read API, so [`Publisher::find_recent`] returns `Ok(None)`
//! and an uncertain outcome is resent with the **same** `Idempotency-Key`: delivery is at least
//! once, and the effect is exactly once provided the receiver de-duplicates by that key
//! (answering a repeated key with 2xx and the first post's `id`).

use super::{now_ms, rate_info, read_ok, ErrorKind, PostRequest, Posted, PublishError, Publisher};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use std::time::Duration;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Huiying-Signature";
/// The timestamp header (unix seconds).
pub const TIMESTAMP_HEADER: &str = "X-Huiying-Timestamp";

/// One webhook endpoint with its secret.
pub struct WebhookPublisher {
    client: reqwest::Client,
    url: String,
    secret: Vec<u8>,
    /// Send the job's text as the body, unchanged (a JSON document made when the job was
    /// enqueued: the linkage stage's push), instead of the post body above.
    raw: bool,
}

/// Shows neither the secret nor the URL's path and query (webhook URLs often embed a token).
impl std::fmt::Debug for WebhookPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookPublisher")
            .field("origin", &origin(&self.url))
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// `scheme://host[:port]` of a URL (what may be logged).
pub(crate) fn origin(url: &str) -> &str {
    let start = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[start..].find(['/', '?', '#']) {
        Some(end) => &url[..start + end],
        None => url,
    }
}

/// The JSON body.
#[derive(Serialize)]
struct Body<'a> {
    idempotency_key: &'a str,
    account: &'a str,
    text: &'a str,
    action: &'static str,
    target: Option<&'a str>,
    language: Option<&'a str>,
    visibility: Option<&'a str>,
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Huiying-Signature` value for `timestamp` and `body`: `sha256=<hex>`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Whether `header` (`sha256=<hex>`) is the signature of `timestamp` and `body` under `secret`.
/// The comparison is constant-time; a malformed header is simply false.
pub fn verify_signature(secret: &[u8], timestamp: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    mac(secret, timestamp, body).verify_slice(&sig).is_ok()
}

/// [`verify_signature`], and the timestamp is within `tolerance` of `now_s` (unix seconds):
/// what a receiver should use, so old captured requests are refused.
pub fn verify_signature_at(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    header: &str,
    now_s: i64,
    tolerance: Duration,
) -> bool {
    let Ok(ts) = timestamp.trim().parse::<i64>() else {
        return false;
    };
    let tol = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    now_s.abs_diff(ts) <= tol.unsigned_abs() && verify_signature(secret, timestamp, body, header)
}

impl WebhookPublisher {
    /// A publisher posting to `url`, signing with `secret`.
    pub fn new(
        client: reqwest::Client,
        url: impl Into<String>,
        secret: impl Into<Vec<u8>>,
    ) -> WebhookPublisher {
        WebhookPublisher {
            client,
            url: url.into(),
            secret: secret.into(),
            raw: false,
        }
    }

    /// Send each job's text as the request body unchanged (it is a JSON document made when the
    /// job was enqueued), signed and keyed as above.
    pub fn raw_body(mut self) -> WebhookPublisher {
        self.raw = true;
        self
    }
}

impl Publisher for WebhookPublisher {
    async fn publish(&self, req: &PostRequest) -> Result<Posted, PublishError> {
        let body = if self.raw {
            req.text.as_bytes().to_vec()
        } else {
            serde_json::to_vec(&Body {
                idempotency_key: &req.idempotency_key,
                account: &req.account_handle,
                text: &req.text,
                action: req.action.name(),
                target: req.action.target(),
                language: req.language.as_deref(),
                visibility: req.visibility.as_deref(),
            })
            .map_err(|e| PublishError::new(ErrorKind::Rejected, format!("webhook body: {e}")))?
        };
        let timestamp = (now_ms() / 1000).to_string();
        let signature = sign(&self.secret, &timestamp, &body);
        tracing::debug!(
            origin = origin(&self.url),
            account = %req.account_handle,
            key = %req.idempotency_key,
            "Webhook: publishing."
        );
        let resp = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", &req.idempotency_key)
            .header(TIMESTAMP_HEADER, &timestamp)
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        let (headers, body, now) = read_ok(resp, true).await?;
        let id = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| match v.get("id")? {
                serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
        let (rate_remaining, rate_reset_at) = rate_info(&headers, now);
        Ok(Posted {
            post_id: id.unwrap_or_else(|| req.idempotency_key.clone()),
            url: None,
            rate_remaining,
            rate_reset_at,
        })
    }

    // No read API: the default `find_recent` (`Ok(None)`: resend with the same key); see the
    // module docs.
    fn platform(&self) -> &'static str {
        "webhook"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let body = br#"{"text":"hi"}"#;
        let sig = sign(b"s3cret", "1780000000", body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert!(verify_signature(b"s3cret", "1780000000", body, &sig));
        assert!(!verify_signature(b"s3cret", "1780000001", body, &sig));
        assert!(!verify_signature(
            b"s3cret",
            "1780000000",
            br#"{"text":"hI"}"#,
            &sig
        ));
        assert!(!verify_signature(b"other", "1780000000", body, &sig));
        assert!(!verify_signature(
            b"s3cret",
            "1780000000",
            body,
            "sha256=zz"
        ));
        assert!(!verify_signature(b"s3cret", "1780000000", body, &sig[7..]));
        let tol = Duration::from_secs(300);
        assert!(verify_signature_at(
            b"s3cret",
            "1780000000",
            body,
            &sig,
            1_780_000_200,
            tol
        ));
        assert!(!verify_signature_at(
            b"s3cret",
            "1780000000",
            body,
            &sig,
            1_780_000_400,
            tol
        ));
    }

    #[test]
    fn signs_timestamp_dot_body() {
        let sig = sign(b"key", "1", b"x");
        let mut m = Hmac::<Sha256>::new_from_slice(b"key").expect("key");
        m.update(b"1.x");
        assert_eq!(
            sig,
            format!("sha256={}", hex::encode(m.finalize().into_bytes()))
        );
    }

    #[test]
    fn origin_only() {
        assert_eq!(
            origin("https://hooks.example/T0/B1/xyz?a=1"),
            "https://hooks.example"
        );
        assert_eq!(origin("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
    }
}
