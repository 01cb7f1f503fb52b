//! PgBouncer (Debian's `pgbouncer`) in transaction pooling mode in front of
//! the test cluster, started by a test on loopback with a small server pool
//! so that client connections really share server connections.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct PgBouncer {
    pub port: u16,
    /// Server connections per database and user.
    pub pool_size: u32,
    dir: PathBuf,
    child: Child,
}

fn bin() -> PathBuf {
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("pgbouncer is not installed (scripts/test.sh installs Debian's pgbouncer)")
}

impl PgBouncer {
    /// PgBouncer on a free port, every database of `pg_host:pg_port`
    /// reachable under its own name, `pool_size` server connections each.
    pub async fn start(pg_host: &str, pg_port: u16, pool_size: u32) -> PgBouncer {
        let dir =
            std::env::temp_dir().join(format!("parley-pgb-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("pgbouncer dir");
        let port = crate::cluster::free_port();
        std::fs::write(dir.join("users.txt"), "\"parley\" \"\"\n").expect("auth file");
        let ini = format!(
            "[databases]\n\
             * = host={pg_host} port={pg_port}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {dir}/users.txt\n\
             pool_mode = transaction\n\
             default_pool_size = {pool_size}\n\
             min_pool_size = 0\n\
             reserve_pool_size = 0\n\
             max_client_conn = 500\n\
             admin_users = parley\n\
             ignore_startup_parameters = extra_float_digits\n\
             logfile = {dir}/pgbouncer.log\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).expect("pgbouncer.ini");
        let mut cmd = Command::new(bin());
        if crate::replica::as_root() {
            // PgBouncer refuses to run as root.
            let _ = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&dir)
                .status();
            cmd.args(["-u", "postgres"]);
        }
        let child = cmd
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pgbouncer");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not start: {}",
                std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        PgBouncer {
            port,
            pool_size,
            dir,
            child,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
