//! A PostgreSQL primary and a streaming replica of it, started by a test on
//! loopback (Debian's PostgreSQL: initdb, pg_basebackup -R, pg_ctl), for
//! `database.read_url`.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PgPair {
    pub primary: u16,
    pub replica: u16,
    dir: PathBuf,
    bin: PathBuf,
}

fn pg_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (scripts/test.sh installs it)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("no initdb under /usr/lib/postgresql")
}

/// The tests run as root (CI): PostgreSQL and PgBouncer refuse that and
/// are started as `postgres`.
pub(crate) fn as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL program as `postgres` when the tests run as root
/// (PostgreSQL refuses root), else as ourselves.
fn run(program: &Path, args: &[&str]) {
    let mut cmd = if as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let out = cmd.args(args).output().expect("run a PostgreSQL program");
    assert!(
        out.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgPair {
    pub fn start() -> PgPair {
        let bin = pg_bin();
        let dir =
            std::env::temp_dir().join(format!("parley-pgpair-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("pair dir");
        if as_root() {
            let _ = Command::new("chown").args(["postgres:"]).arg(&dir).status();
        }
        let (primary, replica) = (crate::cluster::free_port(), crate::cluster::free_port());
        let d = |name: &str| dir.join(name).display().to_string();
        run(
            &bin.join("initdb"),
            &[
                "-D",
                &d("primary"),
                "-U",
                "parley",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
        );
        let opts = |port: u16| {
            format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
                dir.display()
            )
        };
        run(
            &bin.join("pg_ctl"),
            &[
                "-D",
                &d("primary"),
                "-o",
                &opts(primary),
                "-l",
                &d("primary.log"),
                "-w",
                "start",
            ],
        );
        // -R: standby.signal and primary_conninfo, so the copy follows.
        run(
            &bin.join("pg_basebackup"),
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary.to_string(),
                "-U",
                "parley",
                "-D",
                &d("replica"),
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
        );
        run(
            &bin.join("pg_ctl"),
            &[
                "-D",
                &d("replica"),
                "-o",
                &opts(replica),
                "-l",
                &d("replica.log"),
                "-w",
                "start",
            ],
        );
        PgPair {
            primary,
            replica,
            dir,
            bin,
        }
    }

    pub fn primary_url(&self, db: &str) -> String {
        format!("postgres://parley@127.0.0.1:{}/{db}", self.primary)
    }

    pub fn replica_url(&self, db: &str) -> String {
        format!("postgres://parley@127.0.0.1:{}/{db}", self.replica)
    }
}

impl Drop for PgPair {
    fn drop(&mut self) {
        for node in ["replica", "primary"] {
            let data = self.dir.join(node).display().to_string();
            let _ = Command::new(if as_root() { "runuser" } else { "env" })
                .args(if as_root() {
                    vec!["-u", "postgres", "--"]
                } else {
                    vec![]
                })
                .arg(self.bin.join("pg_ctl"))
                .args(["-D", &data, "-m", "immediate", "-w", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
