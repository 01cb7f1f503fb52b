//! Liveness, readiness and the OpenAPI document.

use crate::state::AppState;
use actix_web::{web, HttpResponse};
use parley_core::api::{ComponentStatus, Health, Readiness};
use std::time::Duration;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> web::Json<Health> {
    web::Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// Every component the node needs, each with its state.
#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "All components ready", body = Readiness),
        (status = 503, description = "Some component unavailable", body = Readiness),
    )
)]
pub async fn readyz(st: web::Data<AppState>) -> HttpResponse {
    let timeout = Duration::from_secs(st.http.readiness_timeout_secs);
    let mut components = st.svc.readiness(timeout).await;
    if st.draining.load(std::sync::atomic::Ordering::Relaxed) {
        components.insert(
            "node".to_owned(),
            ComponentStatus {
                status: "unavailable".into(),
                message: Some("shutting down".into()),
            },
        );
    }
    // The media server is listed but does not take the node out: chat,
    // files and 1:1 calls work without it.
    let ready = components
        .iter()
        .filter(|(name, _)| name.as_str() != "media")
        .all(|(_, c)| c.status == "ready");
    let body = Readiness {
        status: if ready { "ready" } else { "unavailable" }.into(),
        components,
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus text of this node's counters (`parley_…`, see
/// docs/operations.md).
pub async fn metrics(st: web::Data<AppState>) -> HttpResponse {
    st.svc.observe();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(st.metrics.render())
}

/// The OpenAPI 3.1 document of this API.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::document())
}
