//! Group bots of the IM tools Chinese offices use, for alerting the people on duty: WeCom
//! (企业微信), DingTalk (钉钉) and Feishu (飞书) custom bots, each spoken as its documentation
//! says. The text's first line is the title.
//!
//! | bot | request | signing | success | too fast |
//! |---|---|---|---|---|
//! | WeCom | `POST <webhook>?key=…` `{"msgtype":"markdown","markdown":{"content":…}}` | none (the key in the URL is the secret) | `{"errcode":0}` | `errcode` 45009 (20 messages a minute) |
//! | DingTalk | `POST <webhook>&timestamp=<ms>&sign=<s>` `{"msgtype":"markdown","markdown":{"title":…,"text":…}}` | `s` = URL-encoded Base64 of HMAC-SHA256(key = secret, message = `"<ms>\n<secret>"`) | `{"errcode":0}` | `errcode` 130101 (20 a minute) |
//! | Feishu | `POST <webhook>` `{"timestamp":"<s>","sign":…,"msg_type":"text","content":{"text":…}}` | `sign` = Base64 of HMAC-SHA256(key = `"<s>\n<secret>"`, empty message) | `{"code":0}` (older: `{"StatusCode":0}`) | `code` 9499 / 11232 |
//!
//! The three answer HTTP 200 with an error code in the body: the code decides. A signature or
//! key the bot refuses (DingTalk 310000, 300001; Feishu 19021; WeCom 93000) is `Auth`; a too-fast
//! answer is `RateLimited`, retried after a minute; other codes are `Rejected`. None has a read
//! API: an uncertain outcome is resent (a duplicate alert is better than a missing one).

use super::{
    now_ms, read_response, status_error, ErrorKind, PostRequest, Posted, PublishError, Publisher,
};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::time::Duration;

/// Which IM tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BotKind {
    /// 企业微信 group bot.
    Wecom,
    /// 钉钉 custom robot.
    Dingtalk,
    /// 飞书 custom bot.
    Feishu,
}

impl BotKind {
    /// `wecom`, `dingtalk`, `feishu`.
    pub fn as_str(self) -> &'static str {
        match self {
            BotKind::Wecom => "wecom",
            BotKind::Dingtalk => "dingtalk",
            BotKind::Feishu => "feishu",
        }
    }
}

/// One group bot: its webhook address (it holds the bot's key) and signing secret.
pub struct ImBotPublisher {
    client: reqwest::Client,
    kind: BotKind,
    url: String,
    secret: Option<String>,
}

/// Shows neither the address (it holds the key) nor the secret.
impl std::fmt::Debug for ImBotPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImBotPublisher")
            .field("kind", &self.kind)
            .field("url", &"<redacted>")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn hmac_base64(key: &[u8], message: &[u8]) -> String {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// DingTalk's `sign` for `timestamp_ms` (before URL encoding).
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    hmac_base64(
        secret.as_bytes(),
        format!("{timestamp_ms}\n{secret}").as_bytes(),
    )
}

/// Feishu's `sign` for `timestamp_s`.
pub fn feishu_sign(secret: &str, timestamp_s: i64) -> String {
    hmac_base64(format!("{timestamp_s}\n{secret}").as_bytes(), b"")
}

impl ImBotPublisher {
    /// A bot of `kind` at `url`, signing with `secret` (DingTalk and Feishu bots with 加签 on).
    pub fn new(
        client: reqwest::Client,
        kind: BotKind,
        url: impl Into<String>,
        secret: Option<String>,
    ) -> ImBotPublisher {
        ImBotPublisher {
            client,
            kind,
            url: url.into(),
            secret,
        }
    }

    /// The address and body of one message.
    fn request(&self, text: &str, now: i64) -> (String, serde_json::Value) {
        let title = text.lines().next().unwrap_or("").trim();
        match self.kind {
            BotKind::Wecom => (
                self.url.clone(),
                serde_json::json!({"msgtype": "markdown", "markdown": {"content": text}}),
            ),
            BotKind::Dingtalk => {
                let mut url = self.url.clone();
                if let Some(secret) = &self.secret {
                    let sign = dingtalk_sign(secret, now);
                    let sep = if url.contains('?') { '&' } else { '?' };
                    url = format!(
                        "{url}{sep}timestamp={now}&sign={}",
                        sign.replace('+', "%2B")
                            .replace('/', "%2F")
                            .replace('=', "%3D")
                    );
                }
                (
                    url,
                    serde_json::json!({"msgtype": "markdown",
                                       "markdown": {"title": title, "text": text}}),
                )
            }
            BotKind::Feishu => {
                let mut body = serde_json::json!({"msg_type": "text", "content": {"text": text}});
                if let Some(secret) = &self.secret {
                    let ts = now / 1000;
                    body["timestamp"] = serde_json::json!(ts.to_string());
                    body["sign"] = serde_json::json!(feishu_sign(secret, ts));
                }
                (self.url.clone(), body)
            }
        }
    }
}

/// The error code of an answer (`errcode`, `code` or `StatusCode`), 0 for success.
fn answer_code(body: &[u8]) -> Option<(i64, String)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = ["errcode", "code", "StatusCode"]
        .iter()
        .find_map(|k| v.get(*k).and_then(serde_json::Value::as_i64))?;
    let msg = ["errmsg", "msg", "StatusMessage"]
        .iter()
        .find_map(|k| v.get(*k).and_then(serde_json::Value::as_str))
        .unwrap_or("")
        .to_string();
    Some((code, msg))
}

/// How a bot's error code is treated (see the module docs).
pub fn classify(kind: BotKind, code: i64) -> ErrorKind {
    match (kind, code) {
        (BotKind::Wecom, 45009) | (BotKind::Dingtalk, 130101) | (BotKind::Feishu, 9499 | 11232) => {
            ErrorKind::RateLimited
        }
        (BotKind::Wecom, 93000 | 40014 | 42001)
        | (BotKind::Dingtalk, 310000 | 300001 | 400102)
        | (BotKind::Feishu, 19021 | 19001) => ErrorKind::Auth,
        (BotKind::Wecom | BotKind::Dingtalk, -1) => ErrorKind::Server,
        _ => ErrorKind::Rejected,
    }
}

impl Publisher for ImBotPublisher {
    async fn publish(&self, req: &PostRequest) -> Result<Posted, PublishError> {
        let now = now_ms();
        let (url, body) = self.request(&req.text, now);
        tracing::debug!(bot = self.kind.as_str(), key = %req.idempotency_key, "IM bot: sending.");
        let resp = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await;
        let (status, headers, answer) = read_response(resp, true).await?;
        if !(200..300).contains(&status) {
            let msg = String::from_utf8_lossy(&answer).into_owned();
            return Err(status_error(status, &headers, msg, now_ms()));
        }
        match answer_code(&answer) {
            Some((0, _)) => Ok(Posted {
                post_id: req.idempotency_key.clone(),
                url: None,
                rate_remaining: None,
                rate_reset_at: None,
            }),
            Some((code, msg)) => {
                let kind = classify(self.kind, code);
                let err =
                    PublishError::new(kind, format!("{} bot: {code} {msg}", self.kind.as_str()))
                        .with_status(status);
                Err(if kind == ErrorKind::RateLimited {
                    err.with_retry_after(Some(Duration::from_secs(60)))
                } else {
                    err
                })
            }
            None => Err(PublishError::new(
                ErrorKind::Uncertain,
                format!("{} bot: an answer without a code", self.kind.as_str()),
            )
            .with_status(status)),
        }
    }

    // No read API: the default `find_recent` (`Ok(None)`: resend).
    fn platform(&self) -> &'static str {
        self.kind.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signatures as the bots' own documentation computes them (Python's `hmac` and
    /// `base64`, the values below computed with them).
    #[test]
    fn signatures_follow_each_bot() {
        assert_eq!(
            dingtalk_sign("SEC123", 1_700_000_000_000),
            "lkcPI1uoxBY1gUnCnnPH1Kkru0Hqjo7rFpA3haIVhEQ="
        );
        assert_eq!(
            feishu_sign("secret-x", 1_700_000_000),
            "f0Zc7aub/UTkjiu6Qyj6NSiwTgK4vSIxai8zLV5MxdU="
        );
    }

    #[test]
    fn codes_are_classified() {
        assert_eq!(classify(BotKind::Wecom, 45009), ErrorKind::RateLimited);
        assert_eq!(classify(BotKind::Dingtalk, 130101), ErrorKind::RateLimited);
        assert_eq!(classify(BotKind::Feishu, 9499), ErrorKind::RateLimited);
        assert_eq!(classify(BotKind::Dingtalk, 310000), ErrorKind::Auth);
        assert_eq!(classify(BotKind::Feishu, 19021), ErrorKind::Auth);
        assert_eq!(classify(BotKind::Wecom, 40058), ErrorKind::Rejected);
        assert_eq!(
            answer_code(br#"{"errcode":0,"errmsg":"ok"}"#),
            Some((0, "ok".into()))
        );
        assert_eq!(
            answer_code(br#"{"code":19021,"msg":"sign match fail"}"#),
            Some((19021, "sign match fail".into()))
        );
        assert_eq!(
            answer_code(br#"{"StatusCode":0}"#),
            Some((0, String::new()))
        );
        assert_eq!(answer_code(b"nope"), None);
    }
}
