//! The open-file limit a node runs with: each WebSocket session holds one
//! descriptor, so a node whose limit is below `ws.max_connections` would
//! fail its accepts (unannounced: the client sees a hang or a reset)
//! instead of refusing sessions the documented way (4009).

/// Descriptors kept for all but sessions: listeners, the database and Redis
/// pools, files being streamed, logs, connections still authenticating.
pub const SPARE: u64 = 1024;

/// Raises the soft limit to the hard one (as the Go runtime does for every
/// program), then returns the sessions the node can hold: `max_sessions`,
/// or fewer, with a warning, when even the hard limit is short.
pub fn sessions_allowed(max_sessions: usize) -> usize {
    let Ok((soft, hard)) = rlimit::Resource::NOFILE.get() else {
        return max_sessions;
    };
    let now = if soft < hard && rlimit::Resource::NOFILE.set(hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let fits = fitting(max_sessions, now);
    if fits < max_sessions {
        tracing::warn!(
            open_files = now,
            ws_max_connections = max_sessions,
            sessions = fits,
            "the open-file limit holds fewer sessions than ws.max_connections (one file each, \
             plus {SPARE}): sessions beyond it are refused with 4009; raise the limit \
             (ulimit -n, systemd LimitNOFILE) or lower ws.max_connections"
        );
    } else {
        tracing::info!(open_files = now, "open-file limit");
    }
    fits
}

/// Sessions that fit in `open_files` descriptors, at most `max_sessions`
/// and at least one.
fn fitting(max_sessions: usize, open_files: u64) -> usize {
    let fits = usize::try_from(open_files.saturating_sub(SPARE)).unwrap_or(usize::MAX);
    max_sessions.min(fits).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_capped_by_the_files_left_after_the_spare() {
        assert_eq!(fitting(10_000, 20_000), 10_000);
        assert_eq!(fitting(10_000, 10_000 + SPARE), 10_000);
        assert_eq!(fitting(10_000, 10_000 + SPARE - 1), 9_999);
        assert_eq!(fitting(10_000, 4_096), 4_096 - SPARE as usize);
        assert_eq!(fitting(10_000, 100), 1, "never none");
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let (soft, hard) = rlimit::Resource::NOFILE.get().expect("getrlimit");
        let low = hard.min(soft).min(512);
        rlimit::Resource::NOFILE
            .set(low, hard)
            .expect("lowering the soft limit is always allowed");
        sessions_allowed(10);
        assert_eq!(
            rlimit::Resource::NOFILE.get().expect("getrlimit"),
            (hard, hard)
        );
        let _ = rlimit::Resource::NOFILE.set(soft, hard);
    }
}
