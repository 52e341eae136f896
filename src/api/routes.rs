//! Routes declared with the access they need, beside their handlers: `Routes::route(path,
//! Access, handler)` wraps the handler in the [`guard`] for that access, so a route cannot be
//! added without saying who may call it. The outer layer ([`crate::api::auth::authenticate`])
//! only identifies the caller; the router's fallback needs a viewer (deny by default).

use super::auth::{guard, Access};
use axum::extract::Request;
use axum::middleware::{from_fn, Next};
use axum::routing::MethodRouter;
use axum::Router;

/// A set of routes, each with its access.
pub struct Routes<S = ()> {
    router: Router<S>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Routes {
            router: Router::new(),
        }
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    /// No routes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serve `handler` (one or more methods) at `path` to callers with `access`. The same path
    /// may be declared again for other methods with another access.
    pub fn route(self, path: &str, access: Access, handler: MethodRouter<S>) -> Self {
        let guarded = handler.route_layer(from_fn(move |req: Request, next: Next| {
            guard(access, req, next)
        }));
        Routes {
            router: self.router.route(path, guarded),
        }
    }

    /// Add the routes of `other`.
    pub fn merge(self, other: Routes<S>) -> Self {
        Routes {
            router: self.router.merge(other.router),
        }
    }

    /// Give the handlers their state.
    pub fn with_state<S2: Clone + Send + Sync + 'static>(self, state: S) -> Routes<S2> {
        Routes {
            router: self.router.with_state(state),
        }
    }

    /// The axum router.
    pub fn into_router(self) -> Router<S> {
        self.router
    }
}
