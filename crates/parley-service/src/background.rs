//! The service's background work, started by one call: purging expired codes
//! and tokens, removing abandoned and expired files, announcing the users of
//! dead nodes offline.

use crate::Service;
use std::sync::Arc;
use std::time::Duration;

impl Service {
    /// Spawns every background loop on the current Tokio runtime.
    pub fn start_background(self: &Arc<Self>) {
        let m = self.cfg.maintenance.clone();
        let purge_every = Duration::from_secs(m.purge_every_secs);
        let purge_keep = Duration::from_secs(m.purge_keep_secs);
        let sweep_every = Duration::from_secs(m.files_sweep_every_secs);
        let svc = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(purge_every);
            loop {
                tick.tick().await;
                match svc.store.purge_expired(purge_keep).await {
                    Ok(n) if n > 0 => {
                        tracing::info!(rows = n, "expired codes, tokens and tickets purged")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "purge failed"),
                }
            }
        });
        let svc = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(sweep_every);
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
        self.start_recovery();
        self.start_call_sweeper();
        self.start_feed();
        self.start_push();
        self.start_digests();
    }
}
