//! The middleware: which credential a request carries ([`authenticate`], on every request),
//! what each route needs ([`Access`], declared with the route) and its check ([`guard`]: role,
//! CSRF), and the security headers on every answer.

use super::sessions::Auth;
use super::{ClientIp, Principal, Role, CSRF_HEADER};
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
        if let Some(id) = session_cookie(req.headers(), self.cookie_name()) {
            if let Some(p) = self.by_session(id) {
                return Some((p, true));
            }
        }
        if req.uri().path() == "/api/stream" {
            let q = req.uri().query().unwrap_or("");
            for pair in q.split('&') {
                if let Some(t) = pair.strip_prefix("access_token=") {
                    // A token in a URL ends up in proxy and browser logs: only a viewer's
                    // (a wall screen's) is taken there, never one that can change anything.
                    return self
                        .by_token(t)
                        .filter(|p| p.role == Role::Viewer)
                        .map(|p| (p, false));
                }
            }
        }
        None
    }

    /// What a route declared with `access` needs: `None` when it is open to anyone.
    pub fn need(&self, access: Access) -> Option<Role> {
        match access {
            Access::Public => None,
            Access::Metrics => self.metrics_elsewhere.then_some(Role::Viewer),
            Access::WallRead => (!self.cfg.public_wall).then_some(Role::Viewer),
            Access::Role(r) => Some(r),
            Access::Intake => Some(Role::Operator),
            Access::Signed => Some(Role::Viewer),
        }
    }
}

/// The access a route needs, declared where the route is (see [`crate::api::routes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: health, the login page and call, the console's and the wall's static pages (a
    /// page navigation cannot carry a bearer token: `/wall#token=…` must load).
    Public,
    /// `/metrics`: public, unless it has its own address (`metrics_listen`): then a viewer.
    Metrics,
    /// The wall's summary (`/api/wall/summary`, nothing else): a viewer, or anyone with
    /// `[auth] public_wall`.
    WallRead,
    /// At least this role.
    Role(Role),
    /// An operator, or an `ingest` token (a web form, a hotline system): `POST /api/cases`.
    Intake,
    /// Any person signed in: a viewer (or more), or a department user (`/api/me`,
    /// `/api/logout`); not an `ingest` token.
    Signed,
}

/// The value of the cookie `name` (the session cookie's name, see [`Auth::cookie_name`]).
pub(super) fn session_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(name)?.strip_prefix('='))
}

fn unauthorized(message: &str) -> Response {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response()
}

/// Who sent a request: the principal of a valid credential, and whether it came by cookie.
#[derive(Clone)]
pub struct Credential(pub Option<(Principal, bool)>);

/// The outer middleware, on every request: the client address, the credential (if any) and the
/// [`Auth`] go into the request for the route's [`guard`]. It refuses nothing itself: every
/// route declares its [`Access`], and the router's fallback needs a viewer.
pub async fn authenticate(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let ip = auth.client_ip(peer, req.headers());
    let cred = Credential(auth.authenticate(&req));
    let ext = req.extensions_mut();
    ext.insert(ClientIp(ip));
    ext.insert(cred);
    ext.insert(auth);
    next.run(req).await
}

/// The guard of one route: its [`Access`] against the request's credential and, for cookie
/// requests that change state, the CSRF token; puts the [`Principal`] into the request. A
/// request that did not pass [`authenticate`] is refused (deny by default).
pub async fn guard(access: Access, mut req: Request, next: Next) -> Response {
    let Some(auth) = req.extensions().get::<Arc<Auth>>().cloned() else {
        tracing::error!(path = %req.uri().path(), "A guarded route without the authentication layer.");
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "no authentication",
        )
        .into_response();
    };
    let Some(need) = auth.need(access) else {
        return next.run(req).await;
    };
    let cred = req.extensions_mut().remove::<Credential>();
    let Some((p, by_cookie)) = cred.and_then(|c| c.0) else {
        return unauthorized(
            "log in, or send a token (Authorization: Bearer …); 请先登录或提供访问令牌",
        );
    };
    let intake = access == Access::Intake && p.role == Role::Ingest;
    let signed = access == Access::Signed && p.role == Role::Department;
    if !p.role.allows(need) && !intake && !signed {
        tracing::info!(actor = %p.name, role = %p.role, need = %need, path = %req.uri().path(), "Forbidden.");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this needs the {need} role; {} has {}", p.name, p.role),
        )
        .into_response();
    }
    if by_cookie && is_websocket(req.headers()) && !same_origin(req.headers()) {
        // A page of another site opening the stream with the browser's cookie.
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "origin",
            "a cookie-authenticated websocket must come from this host's own pages",
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

fn is_websocket(h: &HeaderMap) -> bool {
    h.get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Whether the request's `Origin` (if it has one: browsers always send it on a websocket) names
/// the host it was sent to.
fn same_origin(h: &HeaderMap) -> bool {
    let Some(origin) = h.get(header::ORIGIN) else {
        return true;
    };
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'));
    match (origin_host, host) {
        (Some(o), Some(h)) => o.eq_ignore_ascii_case(h),
        _ => false,
    }
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
    // JSON answers carry data and sometimes secrets (a new token, a session's CSRF token):
    // no browser or proxy cache keeps them.
    let json = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json && !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    r
}
