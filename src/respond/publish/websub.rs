//! A WebSub publisher's ping: tells a hub (W3C WebSub) that topics changed, so the hub fetches
//! them and delivers the new entries to its subscribers (a portal's CMS, a newsroom).
//!
//! ```text
//! POST <hub>
//! Content-Type: application/x-www-form-urlencoded
//!
//! hub.mode=publish&hub.url=<topic>[&hub.url=<topic>…]
//! ```
//!
//! The WebSub recommendation leaves the publisher–hub exchange to the hub; this is the form
//! PubSubHubbub 0.4 defined and the public hubs (Google's, Superfeedr, websub.rocks) take. The
//! job's text **is** the form body, made when the job was enqueued.
//!
//! **Answer.** Any 2xx is success (hubs answer `204 No Content`); the post id is the job's
//! idempotency key. Other statuses are classified like every HTTP platform (429/5xx retryable,
//! other 4xx rejected, with the hub's message).
//!
//! **Guarantee.** A hub has no read API, so [`Publisher::find_recent`] returns `Ok(None)` and an
//! uncertain ping is sent again: harmless by design (the hub fetches the topic and delivers
//! only entries its subscribers have not had).

use super::{rate_info, read_ok, PostRequest, Posted, PublishError, Publisher};

/// One hub.
pub struct WebSubPublisher {
    client: reqwest::Client,
    hub: String,
}

/// Shows the hub's origin only.
impl std::fmt::Debug for WebSubPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSubPublisher")
            .field("hub", &super::webhook::origin(&self.hub))
            .finish()
    }
}

/// The ping's form body for `topics` (each percent-encoded).
pub fn ping_body(topics: &[String]) -> String {
    let mut pairs = vec![("hub.mode", "publish")];
    pairs.extend(topics.iter().map(|t| ("hub.url", t.as_str())));
    // Pairs of strings always encode.
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

impl WebSubPublisher {
    /// Pings to `hub`.
    pub fn new(client: reqwest::Client, hub: impl Into<String>) -> WebSubPublisher {
        WebSubPublisher {
            client,
            hub: hub.into(),
        }
    }
}

impl Publisher for WebSubPublisher {
    async fn publish(&self, req: &PostRequest) -> Result<Posted, PublishError> {
        tracing::debug!(
            hub = super::webhook::origin(&self.hub),
            key = %req.idempotency_key,
            "WebSub: pinging the hub."
        );
        let resp = self
            .client
            .post(&self.hub)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(req.text.clone())
            .send()
            .await;
        let (headers, _, now) = read_ok(resp, true).await?;
        let (rate_remaining, rate_reset_at) = rate_info(&headers, now);
        Ok(Posted {
            post_id: req.idempotency_key.clone(),
            url: None,
            rate_remaining,
            rate_reset_at,
        })
    }

    // No read API: the default `find_recent` (`Ok(None)`: a second ping is harmless).
    fn platform(&self) -> &'static str {
        "websub"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_names_each_topic_encoded() {
        let body = ping_body(&[
            "https://p.example/feeds/notices.atom".into(),
            "https://p.example/feeds/notices.rss?region=110108&kind=rumor".into(),
        ]);
        assert_eq!(
            body,
            "hub.mode=publish&hub.url=https%3A%2F%2Fp.example%2Ffeeds%2Fnotices.atom\
             &hub.url=https%3A%2F%2Fp.example%2Ffeeds%2Fnotices.rss%3Fregion%3D110108%26kind%3Drumor"
        );
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&body).expect("form");
        assert_eq!(pairs.len(), 3);
        assert_eq!(
            pairs[2].1,
            "https://p.example/feeds/notices.rss?region=110108&kind=rumor"
        );
    }
}
