//! The middleware: what each request needs ([`Auth::requirement`]), which credential it carries,
//! the role and CSRF checks, and the security headers on every answer.

use super::sessions::Auth;
use super::{ClientIp, Principal, Role, CSRF_HEADER, SESSION_COOKIE};
use crate::api::ApiError;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;

impl Auth {
    /// The principal of the credential a request carries (and whether it came by cookie);
    /// `None` without a valid one.
    fn authenticate(&self, req: &Request) -> Option<(Principal, bool)> {
        if let Some(v) = req.headers().get(header::AUTHORIZATION) {
            let t = v.to_str().ok()?.strip_prefix("Bearer ")?.trim();
            return self.by_token(t).map(|p| (p, false));
        }
        if let Some(id) = session_cookie(req.headers()) {
            if let Some(p) = self.by_session(id) {
                return Some((p, true));
            }
        }
        if req.uri().path() == "/api/stream" {
            let q = req.uri().query().unwrap_or("");
            for pair in q.split('&') {
                if let Some(t) = pair.strip_prefix("access_token=") {
                    return self.by_token(t).map(|p| (p, false));
                }
            }
        }
        None
    }

    /// What a request needs: `None` for public endpoints, else the least role.
    pub fn requirement(&self, method: &Method, path: &str) -> Option<Role> {
        let read = matches!(*method, Method::GET | Method::HEAD);
        match path {
            "/healthz" | "/api/login" => return None,
            "/metrics" if !self.metrics_elsewhere => return None,
            "/console" => return None,
            p if p.starts_with("/console/") => return None,
            // The wall's page and assets hold no data (that is under /api), and a page
            // navigation cannot carry a bearer token: `/wall#token=…` must load.
            "/wall" => return None,
            p if p.starts_with("/wall/") => return None,
            "/api/mentions" => return Some(Role::Ingest),
            "/api/audit" => return Some(Role::Operator),
            p if p.starts_with("/api/admin/") => return Some(Role::Admin),
            _ => {}
        }
        // The wall and the reads it makes are public when configured so (not the accounts,
        // the audit log or who is logged in).
        if read && self.cfg.public_wall && wall_read(path) {
            return None;
        }
        if read || path == "/api/logout" {
            Some(Role::Viewer)
        } else {
            // Anything else that changes state: notices, publishing, incidents.
            Some(Role::Operator)
        }
    }
}

/// What the wall display reads: the page and its assets, incidents, feeds, notices, the stream.
fn wall_read(path: &str) -> bool {
    let under = |p: &str| path == p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/'));
    ["/api/wall", "/api/incidents", "/api/feeds", "/api/notices"]
        .into_iter()
        .any(under)
        || path == "/api/stream"
}

pub(super) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
}

fn unauthorized(message: &str) -> Response {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response()
}

/// The middleware: resolves the credential, checks the role and, for cookie requests that
/// change state, the CSRF token; puts [`Principal`] and [`ClientIp`] into the request.
pub async fn require(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    req.extensions_mut().insert(ClientIp(ip));
    let Some(need) = auth.requirement(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let Some((p, by_cookie)) = auth.authenticate(&req) else {
        return unauthorized(
            "log in, or send a token (Authorization: Bearer …); 请先登录或提供访问令牌",
        );
    };
    if !p.role.allows(need) {
        tracing::info!(actor = %p.name, role = %p.role, need = %need, path = %req.uri().path(), "Forbidden.");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this needs the {need} role; {} has {}", p.name, p.role),
        )
        .into_response();
    }
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if by_cookie && !safe {
        let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        let ok = match (sent, &p.csrf) {
            (Some(s), Some(c)) => constant_time_eq(s.as_bytes(), c.as_bytes()),
            _ => false,
        };
        if !ok {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "missing or wrong X-CSRF-Token for a cookie-authenticated request",
            )
            .into_response();
        }
    }
    req.extensions_mut().insert(p);
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Security headers on every answer: no framing, no sniffing, no referrer, and a CSP that
/// allows only the engine's own scripts, styles and connections (no inline script).
pub async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
    r
}

#[cfg(test)]
mod tests {
    use super::super::sessions::tests::auth;
    use super::*;
    use crate::api::auth::AuthConfig;
    use crate::clock::ManualClock;

    #[test]
    fn what_each_route_needs() {
        let clock = Arc::new(ManualClock::new(0));
        let closed = auth(clock.clone());
        let public = Auth::new(
            AuthConfig {
                public_wall: true,
                ..AuthConfig::default()
            },
            vec![],
            true,
            clock,
        )
        .expect("auth");
        use Role::*;
        let (get, post) = (Method::GET, Method::POST);
        let table: [(&Method, &str, Option<Role>, Option<Role>); 19] = [
            (&get, "/healthz", None, None),
            (&get, "/metrics", None, Some(Viewer)),
            (&get, "/console", None, None),
            (&get, "/console/app.js", None, None),
            (&post, "/api/login", None, None),
            (&post, "/api/logout", Some(Viewer), Some(Viewer)),
            (&get, "/api/me", Some(Viewer), Some(Viewer)),
            (&get, "/wall", None, None),
            (&get, "/wall/wall.js", None, None),
            (&get, "/api/wall/labels", Some(Viewer), None),
            (&get, "/api/stream", Some(Viewer), None),
            (&get, "/api/incidents/i-1", Some(Viewer), None),
            (&get, "/api/notices", Some(Viewer), None),
            (&get, "/api/accounts", Some(Viewer), Some(Viewer)),
            (&get, "/api/audit", Some(Operator), Some(Operator)),
            (
                &post,
                "/api/notices/n-1/approve",
                Some(Operator),
                Some(Operator),
            ),
            (
                &post,
                "/api/incidents/i-1/close",
                Some(Operator),
                Some(Operator),
            ),
            (&post, "/api/mentions", Some(Ingest), Some(Ingest)),
            (&get, "/api/admin/users", Some(Admin), Some(Admin)),
        ];
        for (m, path, want_closed, want_public) in table {
            assert_eq!(closed.requirement(m, path), want_closed, "{m} {path}");
            assert_eq!(
                public.requirement(m, path),
                want_public,
                "{m} {path} (public wall)"
            );
        }
    }
}
