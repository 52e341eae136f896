//! The API stage: users and tokens ([`super::auth`]), the router over the live view, the store,
//! the ingest queue and the respond stage, served on `listen` (and `/metrics` alone on
//! `metrics_listen` when set) until the service is cancelled.

use super::auth::AuthConfig;
use super::auth::{Auth, Role};
use super::ApiState;
use crate::clock::{Clock, SystemClock};
use crate::ingest::Ingest;
use crate::stage::{Context, Handle};
use anyhow::Context as _;
use std::net::SocketAddr;
use std::sync::Arc;

/// The API's settings (top-level keys and `[auth]` of `huiying.toml`).
pub struct ApiOptions {
    /// Address of the HTTP server.
    pub listen: String,
    /// Largest accepted `POST /api/mentions` body.
    pub max_body_bytes: usize,
    /// `/api/stream` clients at once.
    pub max_stream_clients: usize,
    /// A separate, public address for `/metrics` alone.
    pub metrics_listen: Option<String>,
    /// `[auth]`.
    pub auth: AuthConfig,
    /// Extra in-memory tokens (name, token, role): the legacy `[respond] operators`.
    pub extra_tokens: Vec<(String, String, Role)>,
    /// The clock of sessions and login limits (`None`: the system clock).
    pub clock: Option<Arc<dyn Clock>>,
}

/// The started API.
pub struct Started {
    /// The server's tasks.
    pub handle: Handle,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The separate `/metrics` address, when configured.
    pub metrics_addr: Option<SocketAddr>,
    /// Users, tokens and sessions.
    pub auth: Arc<Auth>,
}

/// Start the API stage; returns once it listens.
pub async fn start(
    opts: ApiOptions,
    respond: Option<Arc<crate::respond::stage::Respond>>,
    cx: &mut Context,
) -> anyhow::Result<Started> {
    let clock = opts.clock.unwrap_or_else(|| Arc::new(SystemClock));
    let (acfg, extra) = (opts.auth.clone(), opts.extra_tokens);
    let metrics_elsewhere = opts.metrics_listen.is_some();
    let auth = Arc::new(
        tokio::task::spawn_blocking(move || Auth::new(acfg, extra, metrics_elsewhere, clock))
            .await?
            .context("auth")?,
    );
    let (users, tokens) = auth.counts();
    tracing::info!(
        users,
        tokens,
        public_wall = opts.auth.public_wall,
        "Auth ready."
    );
    if users == 0 && tokens == 0 {
        tracing::warn!("No users and no API tokens: every endpoint but /healthz and /metrics answers 401. Add one with `huiying user add NAME --role admin`.");
    }
    let state = ApiState {
        auth: auth.clone(),
        rules_dir: cx.rules_dir.clone(),
        control: cx.ingest.clone(),
        live: cx.live.incidents.clone(),
        store: cx.store.clone(),
        events: cx.live.stream.clone(),
        ingest: Ingest::new("http", cx.ingest.clone(), true).platform_verified(false),
        rules: cx.rules.clone(),
        max_body_bytes: opts.max_body_bytes,
        stream_slots: Arc::new(tokio::sync::Semaphore::new(opts.max_stream_clients)),
        cancel: cx.cancel.clone(),
        feeds: cx.feeds.clone(),
        respond,
        audit: cx.audit.clone(),
        audit_status: cx
            .audit
            .as_ref()
            .map(|a| a.lock().unwrap_or_else(|p| p.into_inner()).status()),
        redis: cx.redis.clone(),
    };
    let listener = tokio::net::TcpListener::bind(&opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    // The wall's rates: mentions assigned per incident, from the bus.
    let wall_events = cx.bus.subscribe(
        "wall",
        4096,
        crate::bus::Delivery::DropWhenFull,
        crate::bus::Interest::IncidentsAndAssignments,
    );
    let app = super::router(state, wall_events, std::mem::take(&mut cx.routes));
    let c = cx.cancel.clone();
    // The client address feeds the per-address login limit.
    let mut tasks = vec![tokio::spawn(async move {
        let r = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { c.cancelled().await })
        .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "HTTP server failed.");
        }
    })];
    let metrics_addr = match &opts.metrics_listen {
        Some(m) => {
            let l = tokio::net::TcpListener::bind(m)
                .await
                .with_context(|| format!("cannot listen on {m} (metrics_listen)"))?;
            let a = l.local_addr()?;
            let c = cx.cancel.clone();
            tasks.push(tokio::spawn(async move {
                let r = axum::serve(l, super::metrics_router())
                    .with_graceful_shutdown(async move { c.cancelled().await })
                    .await;
                if let Err(e) = r {
                    tracing::error!(error = %e, "Metrics server failed.");
                }
            }));
            Some(a)
        }
        None => None,
    };
    Ok(Started {
        handle: Handle::new("api", tasks),
        addr,
        metrics_addr,
        auth,
    })
}
