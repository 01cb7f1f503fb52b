//! Liveness, readiness and the OpenAPI document.

use crate::state::AppState;
use actix_web::{web, HttpResponse};
use parley_core::api::{ComponentStatus, Health, Readiness};
use std::collections::BTreeMap;
use std::time::Duration;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

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
    let mut components = BTreeMap::new();
    let db = match tokio_timeout(CHECK_TIMEOUT, st.store.ping()).await {
        Some(Ok(())) => ComponentStatus {
            status: "ready".into(),
            message: None,
        },
        Some(Err(e)) => ComponentStatus {
            status: "unavailable".into(),
            message: Some(e.to_string()),
        },
        None => ComponentStatus {
            status: "unavailable".into(),
            message: Some("no answer within 2 s".into()),
        },
    };
    components.insert("database".to_owned(), db);
    let bus = match tokio_timeout(CHECK_TIMEOUT, st.bus.check()).await {
        Some(Ok(())) => ComponentStatus {
            status: "ready".into(),
            message: Some(st.bus.name().into()),
        },
        Some(Err(e)) => ComponentStatus {
            status: "unavailable".into(),
            message: Some(e.to_string()),
        },
        None => ComponentStatus {
            status: "unavailable".into(),
            message: Some("no answer within 2 s".into()),
        },
    };
    components.insert("bus".to_owned(), bus);
    let storage = match tokio_timeout(CHECK_TIMEOUT, st.files.ready()).await {
        Some(Ok(_)) => ComponentStatus {
            status: "ready".into(),
            message: Some(st.files.name().into()),
        },
        Some(Err(e)) => ComponentStatus {
            status: "unavailable".into(),
            message: Some(e.to_string()),
        },
        None => ComponentStatus {
            status: "unavailable".into(),
            message: Some("no answer within 2 s".into()),
        },
    };
    components.insert("storage".to_owned(), storage);
    if st.draining.load(std::sync::atomic::Ordering::Relaxed) {
        components.insert(
            "node".to_owned(),
            ComponentStatus {
                status: "unavailable".into(),
                message: Some("shutting down".into()),
            },
        );
    }
    let ready = components.values().all(|c| c.status == "ready");
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

async fn tokio_timeout<F: std::future::Future>(d: Duration, f: F) -> Option<F::Output> {
    actix_web::rt::time::timeout(d, f).await.ok()
}

/// The OpenAPI 3.1 document of this API.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::document())
}
