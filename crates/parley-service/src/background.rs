//! The service's background work, started by one call: purging expired codes
//! and tokens, removing abandoned and expired files, announcing the users of
//! dead nodes offline.

use crate::Service;
use std::sync::Arc;
use std::time::Duration;

/// How often the background loops run.
#[derive(Clone, Copy, Debug)]
pub struct Intervals {
    /// Expired codes and tokens are swept this often…
    pub purge_every: Duration,
    /// …and kept this long after they expire, for support questions.
    pub purge_keep: Duration,
    /// Abandoned uploads and files past retention are removed this often.
    pub files_sweep_every: Duration,
}

impl Default for Intervals {
    fn default() -> Self {
        Self {
            purge_every: Duration::from_secs(600),
            purge_keep: Duration::from_secs(7 * 24 * 3600),
            files_sweep_every: Duration::from_secs(60),
        }
    }
}

impl Service {
    /// Spawns every background loop on the current Tokio runtime.
    pub fn start_background(self: &Arc<Self>, every: Intervals) {
        let svc = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.purge_every);
            loop {
                tick.tick().await;
                match svc.store.purge_expired(every.purge_keep).await {
                    Ok(n) if n > 0 => tracing::info!(rows = n, "expired codes and tokens purged"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "purge failed"),
                }
            }
        });
        let svc = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.files_sweep_every);
            loop {
                tick.tick().await;
                match svc.file_housekeeping().await {
                    Ok(n) if n > 0 => {
                        tracing::info!(files = n, "abandoned and expired files removed")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "file housekeeping failed"),
                }
            }
        });
        tokio::spawn(Arc::clone(self).watch_departures());
    }
}
