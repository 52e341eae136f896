//! The login, logout, identity and admin routes.

use super::middleware::session_cookie;
use super::Access;
use super::{Auth, AuthError, ClientIp, LoginFailure, Principal, Role};
use crate::api::routes::Routes;
use crate::api::{ApiError, ApiState};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

/// The login, logout, identity and admin routes.
pub fn routes() -> Routes<ApiState> {
    let admin = Access::Role(Role::Admin);
    Routes::new()
        .route("/api/login", Access::Public, post(login))
        .route("/api/logout", Access::Signed, post(logout))
        .route("/api/me", Access::Signed, get(me))
        .route("/api/admin/users", admin, get(admin_users))
        .route("/api/admin/users/reload", admin, post(admin_reload_users))
        .route("/api/admin/tokens", admin, post(admin_create_token))
        .route(
            "/api/admin/tokens/{name}/revoke",
            admin,
            post(admin_revoke_token),
        )
        .route("/api/admin/rules/reload", admin, post(admin_reload_rules))
}

#[derive(Debug, Deserialize)]
struct LoginBody {
    user: String,
    password: String,
}

fn cookie(auth: &Auth, value: &str, max_age: u64) -> String {
    let secure = if auth.secure_cookie() { "; Secure" } else { "" };
    format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}",
        auth.cookie_name()
    )
}

async fn login(
    State(s): State<ApiState>,
    Extension(ip): Extension<ClientIp>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // JSON only: a cross-site `text/plain` form (no preflight) must not log a victim's
    // browser into an attacker's session.
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        LoginFailure::BadRequest.emit();
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "POST /api/login takes Content-Type: application/json",
        )
        .into_response();
    }
    let b: LoginBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            LoginFailure::BadRequest.emit();
            return ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string())
                .into_response();
        }
    };
    let Some(_slot) = s.auth.password_slot().await else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the service is stopping",
        )
        .into_response();
    };
    let auth = s.auth.clone();
    let gate = crate::api::audit_gate(&s, &b.user, "login");
    let res =
        tokio::task::spawn_blocking(move || auth.login(&b.user, &b.password, ip.0, &gate)).await;
    match res {
        Ok(Ok(li)) => {
            tracing::info!(actor = %li.user, role = %li.role, "Logged in.");
            let mut r = Json(json!({
                "user": li.user, "role": li.role, "csrf": li.csrf, "expires_at": li.expires_at,
            }))
            .into_response();
            if let Ok(v) =
                HeaderValue::from_str(&cookie(&s.auth, &li.session, s.auth.session_secs()))
            {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Ok(Err(refused)) => {
            refused.reason.emit();
            if refused.reason == LoginFailure::AuditUnavailable {
                return crate::api::audit_unavailable("login").into_response();
            }
            if let Some(secs) = refused.retry_after_secs {
                let mut r = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_attempts",
                    format!("too many failed logins; try again in {secs} s; 登录失败次数过多，请稍后再试"),
                )
                .into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                return r;
            }
            // The same answer for an unknown user and a wrong password.
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "wrong user name or password; 用户名或密码错误",
            )
            .into_response()
        }
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            .into_response(),
    }
}

async fn logout(
    State(s): State<ApiState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    if let Some(id) = session_cookie(&headers, s.auth.cookie_name()) {
        // Audit first: the session ends only once its record is written.
        if let Err(e) = crate::api::audit(&s, &p.name, "logout", json!({})).await {
            return e.into_response();
        }
        s.auth.logout(id);
    }
    let mut r = Json(json!({"ok": true})).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie(&s.auth, "", 0)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn me(Extension(p): Extension<Principal>) -> Json<Value> {
    Json(json!({
        "user": p.name, "role": p.role, "csrf": p.csrf, "expires_at": p.expires_at,
    }))
}

async fn admin_users(State(s): State<ApiState>) -> Json<Value> {
    Json(s.auth.listing())
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::BadName(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.to_string())
            }
            AuthError::Refused(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "token_refused",
                e.to_string(),
            ),
            AuthError::Audit(m) => crate::api::audit_unavailable(m),
            AuthError::Invalid { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_users_file",
                e.to_string(),
            ),
            _ => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                e.to_string(),
            ),
        }
    }
}

/// Run users-file work (hashing, file I/O) off the async threads.
async fn off_thread<T: Send + 'static>(
    s: &ApiState,
    f: impl FnOnce(&Auth) -> Result<T, AuthError> + Send + 'static,
) -> Result<T, ApiError> {
    let auth = s.auth.clone();
    tokio::task::spawn_blocking(move || f(&auth))
        .await?
        .map_err(ApiError::from)
}

async fn admin_reload_users(
    State(s): State<ApiState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    let gate = crate::api::audit_gate(&s, &p.name, "users_reload");
    let (users, tokens) = off_thread(&s, move |a| a.reload_users(&gate)).await?;
    Ok(Json(json!({"users": users, "tokens": tokens})))
}

#[derive(Debug, Deserialize)]
struct NewToken {
    name: String,
    role: Role,
}

async fn admin_create_token(
    State(s): State<ApiState>,
    Extension(p): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: NewToken = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?;
    let (name, role) = (b.name.clone(), b.role);
    let owner = p.name.clone();
    let gate = crate::api::audit_gate(&s, &p.name, "token_create");
    let token = off_thread(&s, move |a| a.create_token(&name, role, &owner, &gate)).await?;
    tracing::info!(actor = %p.name, token = %b.name, role = %b.role, "Token created.");
    Ok(Json(
        json!({"name": b.name, "role": b.role, "owner": p.name, "token": token}),
    ))
}

async fn admin_revoke_token(
    State(s): State<ApiState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let n2 = name.clone();
    let gate = crate::api::audit_gate(&s, &p.name, "token_revoke");
    let revoked = off_thread(&s, move |a| a.revoke_tokens(&n2, &gate)).await?;
    Ok(Json(json!({"name": name, "revoked": revoked})))
}

async fn admin_reload_rules(
    State(s): State<ApiState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    let rules = s.rules.clone();
    let dir = s.rules_dir.clone();
    let log = s.audit.clone();
    let who = p.name.clone();
    tokio::task::spawn_blocking(move || {
        let normalizer = crate::normalize::Normalizer::new();
        match crate::detect::reload::load_checked(&dir, &normalizer) {
            Ok(rs) => {
                // Audit first: the new rules go into force once their record is written.
                let patterns = rs.pattern_count();
                let detail = json!({"patterns": patterns});
                crate::api::audit_blocking(log.as_ref(), &who, "rules_reload", detail)?;
                crate::detect::reload::install(&rules, rs, &dir);
                Ok(Json(json!({"ok": true, "patterns": patterns})))
            }
            Err(e) => {
                // Nothing changed; the failed attempt is recorded when the log takes it.
                let detail = json!({"errors": e.to_string()});
                if let Err(a) =
                    crate::api::audit_blocking(log.as_ref(), &who, "rules_reload_failed", detail)
                {
                    tracing::error!(error = %a.message, "Cannot record a failed rules reload.");
                }
                Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_rules",
                    e.to_string(),
                ))
            }
        }
    })
    .await?
}
