//! The REST side of the feeds (Mastodon's backfill, Weibo's polling): one client setup and one
//! capped `GET` over `reqwest` (rustls with Mozilla's roots, no redirects, a timeout per request
//! covering the body).

use std::time::Duration;

/// One feed HTTP request may take this long.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

/// An answer, its body read whole (up to the cap).
#[derive(Debug)]
pub struct HttpResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

/// The feeds' HTTP client settings: rustls with Mozilla's roots (`webpki-roots`, no system
/// store), [`HTTP_TIMEOUT`] per request covering the body, no redirects, our user agent.
pub fn client_builder() -> reqwest::ClientBuilder {
    crate::install_tls();
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("huiying/", env!("CARGO_PKG_VERSION")))
        // Header names as the hand-written client this replaced sent them (`Authorization`).
        .http1_title_case_headers()
}

/// Send `req` (asking for JSON) and read the answer; a body over `max_body` bytes is an error.
/// Errors never contain the URL (Weibo's carries the access token).
pub async fn get(req: reqwest::RequestBuilder, max_body: usize) -> Result<HttpResponse, String> {
    let req = req.header(reqwest::header::ACCEPT, "application/json");
    let mut resp = req.send().await.map_err(describe)?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let (body, complete) = crate::read_body_capped(&mut resp, max_body)
        .await
        .map_err(describe)?;
    if !complete {
        return Err(format!("response over {max_body} bytes"));
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// A transport error for the log: what failed and the chain of causes, without the URL
/// (reqwest's own message names only the URL, and a URL may carry a token).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = if e.is_timeout() {
        format!("timed out after {HTTP_TIMEOUT:?}")
    } else if e.is_connect() {
        "connect or TLS handshake".to_string()
    } else {
        e.to_string()
    };
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
