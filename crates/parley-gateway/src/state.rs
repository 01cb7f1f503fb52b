//! What every handler shares.

use crate::config::{AuthConfig, HttpConfig, RegistrationConfig};
use crate::ratelimit::RateLimiter;
use parley_mail::Mailer;
use parley_store::Store;

#[derive(Debug)]
pub struct AppState {
    pub store: Store,
    pub mailer: Mailer,
    pub http: HttpConfig,
    pub registration: RegistrationConfig,
    pub auth: AuthConfig,
    pub limiter: RateLimiter,
}
