//! E-mail over SMTP (`lettre`, tokio, rustls): the `smtp` account of `[respond.smtp]` sends the
//! outbox's `mail` jobs — a department's duty address on transfer (转办), the supervisor on
//! escalation (督办). The job's text is `subject\n\nbody`, plain UTF-8.
//!
//! | outcome | [`ErrorKind`] |
//! |---|---|
//! | 4xx reply | `Server` (retried) |
//! | 535 / 530 (authentication) | `Auth` |
//! | other 5xx reply | `Rejected` (the server's text kept) |
//! | a bad recipient or sender address | `Rejected` |
//! | a connection or I/O failure, a timeout, an incomplete answer | `Uncertain`: the message may have been accepted; [`Publisher::find_recent`] cannot look into a mailbox, so it is resent under the same `Message-ID` (`<idempotency key@huiying>`), by which receivers de-duplicate |
//!
//! The password (from the environment variable `[respond.smtp] credentials_env`, as
//! `user:password`) is never logged.

use super::{Action, ErrorKind, PostRequest, Posted, PublishError, Publisher};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// The account id of the e-mail route in the dispatcher and the outbox.
pub const MAIL_ACCOUNT: &str = "smtp";

/// Sends e-mail through one SMTP server.
pub struct EmailPublisher {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for EmailPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailPublisher")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

/// `subject\n\nbody` (a text without a blank line: its first line is the subject, the whole
/// text the body).
pub fn split_mail(text: &str) -> (String, String) {
    match text.split_once("\n\n") {
        Some((subject, body)) => (subject.trim().to_string(), body.to_string()),
        None => match text.split_once('\n') {
            Some((subject, body)) => (subject.trim().to_string(), body.to_string()),
            None => (text.trim().to_string(), text.to_string()),
        },
    }
}

/// The class of an SMTP failure (see the module docs).
fn classify(e: &lettre::transport::smtp::Error) -> PublishError {
    let code = e.status().map(|c| c.to_string());
    let (kind, message) = if e.is_transient() {
        (
            ErrorKind::Server,
            format!("SMTP {}: {e}", code.unwrap_or_default()),
        )
    } else if e.is_permanent() {
        let c = code.unwrap_or_default();
        let kind = if c == "535" || c == "530" {
            ErrorKind::Auth
        } else {
            ErrorKind::Rejected
        };
        (kind, format!("SMTP {c}: {e}"))
    } else if e.is_tls() {
        (ErrorKind::Network, format!("SMTP TLS: {e}"))
    } else if e.is_client() {
        (ErrorKind::Rejected, format!("SMTP: {e}"))
    } else if e.is_response() {
        // An incomplete or unreadable answer: the exchange broke, possibly after the message
        // was taken (a connection closed before the `250` after DATA).
        (ErrorKind::Uncertain, format!("SMTP answer: {e}"))
    } else {
        (ErrorKind::Uncertain, format!("SMTP connection: {e}"))
    };
    PublishError::new(kind, message)
}

impl EmailPublisher {
    /// A sender through `url` (`smtp://host:port`: plain, for a relay on the office's own
    /// network; `smtps://host:port`: implicit TLS; `smtp+starttls://host:port`: STARTTLS
    /// required) from `from`, with `credentials` (`user:password`) if given.
    pub fn new(
        url: &str,
        from: &str,
        credentials: Option<&str>,
        timeout: Duration,
    ) -> Result<EmailPublisher, String> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| format!("from: {from:?} is not an address: {e}"))?;
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("url: {url:?}: smtp://, smtps:// or smtp+starttls://"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                Some(
                    p.parse::<u16>()
                        .map_err(|_| format!("url: {url:?}: bad port {p:?}"))?,
                ),
            ),
            None => (rest.to_string(), None),
        };
        if host.is_empty() {
            return Err(format!("url: {url:?}: no host"));
        }
        let tls_err = |e: lettre::transport::smtp::Error| format!("url: {url:?}: {e}");
        let mut b = match scheme {
            "smtp" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
                .port(port.unwrap_or(25)),
            "smtps" => AsyncSmtpTransport::<Tokio1Executor>::relay(&host)
                .map_err(tls_err)?
                .port(port.unwrap_or(465)),
            "smtp+starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)
                .map_err(tls_err)?
                .port(port.unwrap_or(587)),
            other => {
                return Err(format!(
                    "url: scheme {other:?}: smtp, smtps or smtp+starttls"
                ))
            }
        };
        let loopback = host == "localhost"
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if scheme == "smtp" && credentials.is_some() && !loopback {
            return Err(format!(
                "url: {url:?}: credentials go over TLS only (smtp+starttls:// or smtps://); plain smtp:// is for a relay on this machine"
            ));
        }
        if let Some(c) = credentials {
            let (user, password) = c.split_once(':').ok_or("credentials: `user:password`")?;
            b = b.credentials(Credentials::new(user.to_string(), password.to_string()));
        }
        Ok(EmailPublisher {
            transport: b.timeout(Some(timeout)).build(),
            from,
        })
    }
}

impl Publisher for EmailPublisher {
    async fn publish(&self, req: &PostRequest) -> Result<Posted, PublishError> {
        let Action::Mail { to } = &req.action else {
            return Err(PublishError::new(
                ErrorKind::Rejected,
                format!(
                    "the e-mail account sends e-mail only, not a {}",
                    req.action.name()
                ),
            ));
        };
        let to: Mailbox = to.parse().map_err(|e| {
            PublishError::new(ErrorKind::Rejected, format!("recipient {to:?}: {e}"))
        })?;
        let (subject, body) = split_mail(&req.text);
        let id = format!("<{}@huiying>", req.idempotency_key);
        let msg = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(id.clone()))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| PublishError::new(ErrorKind::Rejected, format!("message: {e}")))?;
        tracing::debug!(key = %req.idempotency_key, "E-mail: sending.");
        self.transport.send(msg).await.map_err(|e| classify(&e))?;
        Ok(Posted {
            post_id: id,
            url: None,
            rate_remaining: None,
            rate_reset_at: None,
        })
    }

    // A mailbox cannot be searched: the default `find_recent` (`Ok(None)`), so an uncertain
    // e-mail is resent under its Message-ID.
    fn platform(&self) -> &'static str {
        "email"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_and_body() {
        assert_eq!(
            split_mail("新转办诉求 1\n\n正文\n\n第二段"),
            ("新转办诉求 1".to_string(), "正文\n\n第二段".to_string())
        );
        assert_eq!(split_mail("only a line").0, "only a line");
        assert_eq!(
            split_mail("subject\nbody"),
            ("subject".to_string(), "body".to_string())
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let t = Duration::from_secs(1);
        for (url, from, creds, needle) in [
            ("smtp://127.0.0.1:25", "not an address", None, "from"),
            ("127.0.0.1:25", "a@b.example", None, "url"),
            ("smtp://127.0.0.1:port", "a@b.example", None, "port"),
            ("ftp://127.0.0.1", "a@b.example", None, "scheme"),
            (
                "smtp://127.0.0.1:25",
                "a@b.example",
                Some("nopassword"),
                "credentials",
            ),
        ] {
            let e = EmailPublisher::new(url, from, creds, t).expect_err(url);
            assert!(e.contains(needle), "{url}: {e}");
        }
        assert!(EmailPublisher::new(
            "smtp://127.0.0.1:2525",
            "huiying@office.example",
            Some("u:p"),
            t
        )
        .is_ok());
    }
}
