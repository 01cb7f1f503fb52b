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
    let db = component(st.store.ping(), None).await;
    components.insert("database".to_owned(), db);
    let bus = component(st.bus.check(), Some(st.bus.name())).await;
    components.insert("bus".to_owned(), bus);
    let storage = component(st.files.ready(), Some(st.files.name())).await;
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

/// Runs one component's check within CHECK_TIMEOUT.
async fn component<E: std::fmt::Display>(
    check: impl std::future::Future<Output = Result<(), E>>,
    name: Option<&str>,
) -> ComponentStatus {
    let (status, message) = match actix_web::rt::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => ("ready", name.map(str::to_owned)),
        Ok(Err(e)) => ("unavailable", Some(e.to_string())),
        Err(_) => ("unavailable", Some("no answer within 2 s".to_owned())),
    };
    ComponentStatus {
        status: status.into(),
        message,
    }
}

/// The OpenAPI 3.1 document of this API.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::document())
}
