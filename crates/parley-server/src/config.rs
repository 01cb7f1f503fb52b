//! The configuration: built-in defaults, then a TOML file, then `PARLEY_…`
//! environment variables (`PARLEY_SECTION__KEY`, e.g. `PARLEY_HTTP__BIND`).
//! An unknown key or a value of the wrong type stops startup with a message
//! that names it. Every key is documented in `docs/configuration.md`.

use parley_files::FilesConfig;
use parley_gateway::config::{HttpConfig, WebConfig, WsConfig};
use parley_mail::MailConfig;
use parley_service::config::{
    AuthConfig, CallsConfig, CommitConfig, DigestConfig, FeedConfig, LimitsConfig,
    MaintenanceConfig, PushConfig, RecoveryConfig, RegistrationConfig, WebhooksConfig,
};
use serde::{Deserialize, Serialize};
use std::path::Path;
use toml::Value;

/// Environment variable that names the configuration file.
pub const CONFIG_ENV: &str = "PARLEY_CONFIG";
const ENV_PREFIX: &str = "PARLEY_";

/// `[database]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout_secs: u64,
    pub migrate_on_start: bool,
    /// `url` reaches PostgreSQL through a pooler in transaction mode
    /// (PgBouncer): statements unnamed, each in a transaction.
    pub transaction_pooler: bool,
    /// Where migrations run; empty = `url`. Required with
    /// `transaction_pooler` (migrations hold a session advisory lock).
    pub migrate_url: String,
    /// A streaming replica for search; empty = none.
    pub read_url: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "postgres://parley@127.0.0.1:5432/parley".into(),
            max_connections: 16,
            acquire_timeout_secs: 5,
            migrate_on_start: true,
            transaction_pooler: false,
            migrate_url: String::new(),
            read_url: String::new(),
        }
    }
}

/// `[bus]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    /// `local` (one node, in-process), `redis` (a cluster over one Redis at
    /// `redis_url`), `sentinel` (over the master `redis_sentinels` name) or
    /// `cluster` (a Redis Cluster, sharded pub/sub, at `redis_cluster`).
    pub kind: BusKind,
    pub redis_url: String,
    /// Sentinels (`redis://host:26379`) for `kind = "sentinel"`.
    pub redis_sentinels: Vec<String>,
    /// The master's name known to the Sentinels.
    pub redis_master: String,
    /// Some nodes of the Redis Cluster (`redis://host:port`) for
    /// `kind = "cluster"`; the rest are found from them.
    pub redis_cluster: Vec<String>,
    pub prefix: String,
    pub heartbeat_secs: u64,
    pub node_ttl_secs: u64,
    pub publish_queue: usize,
    /// Address other tools see this node at; default `http.bind`.
    pub advertise: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    Local,
    Redis,
    Sentinel,
    Cluster,
}

impl BusConfig {
    /// The Redis a cluster's nodes meet at; None for one node alone.
    pub fn redis_target(&self) -> Option<parley_bus::RedisTarget> {
        match self.kind {
            BusKind::Local => None,
            BusKind::Redis => Some(parley_bus::RedisTarget::Single(self.redis_url.clone())),
            BusKind::Sentinel => Some(parley_bus::RedisTarget::Sentinel {
                sentinels: self.redis_sentinels.clone(),
                master: self.redis_master.clone(),
            }),
            BusKind::Cluster => Some(parley_bus::RedisTarget::Cluster(self.redis_cluster.clone())),
        }
    }
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            kind: BusKind::Local,
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_sentinels: Vec::new(),
            redis_master: "mymaster".into(),
            redis_cluster: Vec::new(),
            prefix: "parley".into(),
            heartbeat_secs: 5,
            node_ttl_secs: 15,
            publish_queue: 10_000,
            advertise: String::new(),
        }
    }
}

/// `[log]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `parley_gateway=debug,info`, …
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

/// The whole configuration file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub mail: MailConfig,
    pub registration: RegistrationConfig,
    pub auth: AuthConfig,
    pub ws: WsConfig,
    pub limits: LimitsConfig,
    pub bus: BusConfig,
    pub files: FilesConfig,
    pub web: WebConfig,
    pub maintenance: MaintenanceConfig,
    pub commit: CommitConfig,
    pub recovery: RecoveryConfig,
    pub calls: CallsConfig,
    pub feed: FeedConfig,
    pub webhooks: WebhooksConfig,
    pub push: PushConfig,
    pub digest: DigestConfig,
    pub log: LogConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("unknown configuration key `{key}` (from {origin})")]
    UnknownKey { key: String, origin: String },
    #[error("`{key}` (from {origin}): {message}")]
    BadValue {
        key: String,
        origin: String,
        message: String,
    },
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// Overlays `over` on `base`, refusing keys `base` does not have and values of
/// another type.
fn merge(base: &mut Value, over: Value, prefix: &str, origin: &str) -> Result<(), ConfigError> {
    match (base, over) {
        (Value::Table(b), Value::Table(o)) => {
            for (k, v) in o {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                let slot = b.get_mut(&k).ok_or_else(|| ConfigError::UnknownKey {
                    key: key.clone(),
                    origin: origin.into(),
                })?;
                merge(slot, v, &key, origin)?;
            }
            Ok(())
        }
        (b, o) => {
            if std::mem::discriminant(b) != std::mem::discriminant(&o) {
                return Err(ConfigError::BadValue {
                    key: prefix.into(),
                    origin: origin.into(),
                    message: format!("expected {}, found {}", type_name(b), type_name(&o)),
                });
            }
            *b = o;
            Ok(())
        }
    }
}

/// Turns an environment string into a value of the type the key has.
fn env_value(current: &Value, raw: &str, key: &str, var: &str) -> Result<Value, ConfigError> {
    let bad = |message: String| ConfigError::BadValue {
        key: key.into(),
        origin: format!("environment variable {var}"),
        message,
    };
    Ok(match current {
        Value::String(_) => Value::String(raw.into()),
        Value::Integer(_) => Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| bad(format!("expected an integer, found {raw:?}")))?,
        ),
        Value::Boolean(_) => Value::Boolean(match raw.trim() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err(bad(format!("expected true or false, found {raw:?}"))),
        }),
        Value::Array(_) => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.into()))
                .collect(),
        ),
        other => {
            return Err(bad(format!(
                "cannot be set from the environment ({})",
                type_name(other)
            )))
        }
    })
}

impl Config {
    /// Defaults ← file (if any) ← environment, then checked.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut tree = Value::try_from(Config::default()).map_err(|e| ConfigError::Parse {
            path: "built-in defaults".into(),
            message: e.to_string(),
        })?;
        if let Some(path) = file {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: shown.clone(),
                source,
            })?;
            let over: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: shown.clone(),
                message: e.to_string(),
            })?;
            merge(&mut tree, Value::Table(over), "", &shown)?;
        }
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k != CONFIG_ENV)
            .collect();
        vars.sort();
        for (var, raw) in vars {
            let rest = var[ENV_PREFIX.len()..].to_lowercase();
            if !rest.contains("__") {
                // Not a configuration variable (scripts have PARLEY_PORT and
                // the like), unless it looks like a section key misspelled.
                let looks_like_key = tree
                    .as_table()
                    .is_some_and(|t| t.keys().any(|s| rest.starts_with(&format!("{s}_"))));
                if looks_like_key {
                    return Err(ConfigError::UnknownKey {
                        key: rest,
                        origin: format!(
                            "environment variable {var}; sections and keys are separated by \
                             two underscores, e.g. PARLEY_HTTP__BIND"
                        ),
                    });
                }
                continue;
            }
            let path: Vec<String> = rest.split("__").map(str::to_owned).collect();
            let key = path.join(".");
            let unknown = || ConfigError::UnknownKey {
                key: key.clone(),
                origin: format!("environment variable {var}"),
            };
            let mut slot = &mut tree;
            for part in &path {
                slot = slot.get_mut(part.as_str()).ok_or_else(unknown)?;
            }
            if slot.is_table() {
                return Err(unknown());
            }
            *slot = env_value(slot, &raw, &key, &var)?;
        }
        let cfg: Config = tree
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::BadValue {
                key: "configuration".into(),
                origin: file.map_or("environment".into(), |p| p.display().to_string()),
                message: e.message().to_owned(),
            })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Range checks that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let wrap = |e: parley_service::config::ConfigValueError| ConfigError::BadValue {
            key: e.key.into(),
            origin: "configuration".into(),
            message: e.message,
        };
        self.http.validate().map_err(wrap)?;
        self.registration.validate().map_err(wrap)?;
        self.auth.validate().map_err(wrap)?;
        self.ws.validate().map_err(wrap)?;
        self.web.validate().map_err(wrap)?;
        self.limits.validate().map_err(wrap)?;
        self.maintenance.validate().map_err(wrap)?;
        self.commit.validate().map_err(wrap)?;
        self.recovery.validate().map_err(wrap)?;
        self.calls.validate().map_err(wrap)?;
        self.feed.validate().map_err(wrap)?;
        self.webhooks.validate(&self.feed).map_err(wrap)?;
        self.push.validate().map_err(wrap)?;
        self.digest.validate().map_err(wrap)?;
        let bad = |key: &str, message: &str| ConfigError::BadValue {
            key: key.into(),
            origin: "configuration".into(),
            message: message.into(),
        };
        if !(self.database.url.starts_with("postgres://")
            || self.database.url.starts_with("postgresql://"))
        {
            return Err(bad("database.url", "must be a postgres:// URL"));
        }
        for (key, u) in [
            ("database.migrate_url", &self.database.migrate_url),
            ("database.read_url", &self.database.read_url),
        ] {
            if !(u.is_empty() || u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                return Err(bad(key, "must be a postgres:// URL"));
            }
        }
        if self.database.transaction_pooler && self.database.migrate_url.is_empty() {
            return Err(bad(
                "database.migrate_url",
                "is required with database.transaction_pooler: migrations hold a session \
                 advisory lock, which a transaction-mode pooler cannot carry; give PostgreSQL's \
                 own address",
            ));
        }
        if !(1..=1000).contains(&self.database.max_connections) {
            return Err(bad(
                "database.max_connections",
                "must be between 1 and 1000",
            ));
        }
        if !(1..=300).contains(&self.database.acquire_timeout_secs) {
            return Err(bad(
                "database.acquire_timeout_secs",
                "must be between 1 and 300",
            ));
        }
        if !(self.bus.redis_url.starts_with("redis://")
            || self.bus.redis_url.starts_with("rediss://"))
        {
            return Err(bad("bus.redis_url", "must be a redis:// URL"));
        }
        if self.bus.kind == BusKind::Sentinel {
            if self.bus.redis_sentinels.is_empty()
                || !self
                    .bus
                    .redis_sentinels
                    .iter()
                    .all(|u| u.starts_with("redis://"))
            {
                return Err(bad(
                    "bus.redis_sentinels",
                    "bus.kind = \"sentinel\" needs one or more redis://host:port Sentinel URLs",
                ));
            }
            if self.bus.redis_master.is_empty() {
                return Err(bad(
                    "bus.redis_master",
                    "must name the master the Sentinels watch",
                ));
            }
        }
        if self.bus.kind == BusKind::Cluster
            && (self.bus.redis_cluster.is_empty()
                || !self
                    .bus
                    .redis_cluster
                    .iter()
                    .all(|u| u.starts_with("redis://")))
        {
            return Err(bad(
                "bus.redis_cluster",
                "bus.kind = \"cluster\" needs one or more redis://host:port URLs of cluster nodes",
            ));
        }
        if self.bus.prefix.is_empty()
            || self
                .bus
                .prefix
                .contains(|c: char| c.is_whitespace() || c == '{' || c == '}')
        {
            return Err(bad(
                "bus.prefix",
                "must be non-empty without spaces or braces (braces are Redis Cluster hash tags)",
            ));
        }
        if self.bus.heartbeat_secs == 0 || self.bus.node_ttl_secs < 2 * self.bus.heartbeat_secs {
            return Err(bad(
                "bus.node_ttl_secs",
                "must be at least twice bus.heartbeat_secs (and the heartbeat at least 1)",
            ));
        }
        if self.bus.publish_queue < 16 {
            return Err(bad("bus.publish_queue", "must be at least 16"));
        }
        if let Err((key, message)) = self.files.validate() {
            return Err(bad(key, &message));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(bad(
                "log.level",
                "not a valid filter (e.g. info, debug, parley_gateway=debug)",
            ));
        }
        self.mail.validate().map_err(|e| ConfigError::BadValue {
            key: "mail".into(),
            origin: "configuration".into(),
            message: e.to_string(),
        })?;
        Ok(())
    }

    /// The configuration as TOML with passwords replaced by `***`.
    pub fn redacted_toml(&self) -> String {
        let mut c = self.clone();
        c.database.url = redact_url(&c.database.url);
        c.database.migrate_url = redact_url(&c.database.migrate_url);
        c.database.read_url = redact_url(&c.database.read_url);
        c.bus.redis_url = redact_url(&c.bus.redis_url);
        c.bus.redis_sentinels = c
            .bus
            .redis_sentinels
            .iter()
            .map(|u| redact_url(u))
            .collect();
        c.bus.redis_cluster = c.bus.redis_cluster.iter().map(|u| redact_url(u)).collect();
        if !c.files.s3_secret_key.is_empty() {
            c.files.s3_secret_key = "***".into();
        }
        if !c.mail.smtp_password.is_empty() {
            c.mail.smtp_password = "***".into();
        }
        if !c.calls.turn_secret.is_empty() {
            c.calls.turn_secret = "***".into();
        }
        toml::to_string_pretty(&c).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.into();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.into();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn write(text: &str) -> tempfile_path::TempPath {
        tempfile_path::TempPath::new(text)
    }

    mod tempfile_path {
        pub struct TempPath(pub std::path::PathBuf);
        impl TempPath {
            pub fn new(text: &str) -> Self {
                let p =
                    std::env::temp_dir().join(format!("parley-cfg-{}.toml", uuid::Uuid::new_v4()));
                std::fs::write(&p, text).expect("write temp config");
                Self(p)
            }
        }
        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::load(None, env(&[])).expect("defaults");
        assert_eq!(c.http.bind, "127.0.0.1:8080");
    }

    #[test]
    fn file_then_env() {
        let f = write("[http]\nbind = \"127.0.0.1:9000\"\n[registration]\nmax_attempts = 3\n");
        let c = Config::load(
            Some(&f.0),
            env(&[
                ("PARLEY_HTTP__BIND", "127.0.0.1:9001"),
                ("PARLEY_MAIL__SMTP_PORT", "2525"),
                ("PARLEY_HTTP__TRUSTED_PROXIES", "127.0.0.1, ::1"),
                ("PARLEY_CONFIG", "ignored"),
                ("OTHER", "x"),
                ("PARLEY_DATA_DIR", "/somewhere"),
            ]),
        )
        .expect("load");
        assert_eq!(c.http.bind, "127.0.0.1:9001");
        assert_eq!(c.registration.max_attempts, 3);
        assert_eq!(c.mail.smtp_port, 2525);
        assert_eq!(c.http.trusted_proxies.len(), 2);
    }

    #[test]
    fn a_redis_cluster_needs_its_nodes_and_a_prefix_without_hash_tags() {
        let e = Config::load(None, env(&[("PARLEY_BUS__KIND", "cluster")])).expect_err("no nodes");
        assert!(e.to_string().contains("bus.redis_cluster"), "{e}");
        let c = Config::load(
            None,
            env(&[
                ("PARLEY_BUS__KIND", "cluster"),
                (
                    "PARLEY_BUS__REDIS_CLUSTER",
                    "redis://10.0.0.7:6379, redis://10.0.0.8:6379",
                ),
            ]),
        )
        .expect("cluster");
        assert!(matches!(
            c.bus.redis_target(),
            Some(parley_bus::RedisTarget::Cluster(n)) if n.len() == 2
        ));
        let e = Config::load(None, env(&[("PARLEY_BUS__PREFIX", "a{b}")])).expect_err("braces");
        assert!(e.to_string().contains("bus.prefix"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let f = write("[http]\nbindd = \"x\"\n");
        let e = Config::load(Some(&f.0), env(&[]))
            .expect_err("unknown key")
            .to_string();
        assert!(e.contains("http.bindd"), "{e}");

        let f = write("[registration]\nmax_attempts = \"five\"\n");
        let e = Config::load(Some(&f.0), env(&[]))
            .expect_err("type")
            .to_string();
        assert!(
            e.contains("registration.max_attempts") && e.contains("integer"),
            "{e}"
        );

        let e = Config::load(None, env(&[("PARLEY_HTTP__NOPE", "1")]))
            .expect_err("env")
            .to_string();
        assert!(e.contains("PARLEY_HTTP__NOPE"), "{e}");

        let e = Config::load(None, env(&[("PARLEY_HTTP_BIND", "x")]))
            .expect_err("one underscore")
            .to_string();
        assert!(
            e.contains("PARLEY_HTTP_BIND") && e.contains("PARLEY_HTTP__BIND"),
            "{e}"
        );

        let e = Config::load(None, env(&[("PARLEY_AUTH__TOKEN_TTL_SECS", "abc")]))
            .expect_err("env type")
            .to_string();
        assert!(e.contains("auth.token_ttl_secs"), "{e}");

        let e = Config::load(None, env(&[("PARLEY_REGISTRATION__CODE_LENGTH", "2")]))
            .expect_err("range")
            .to_string();
        assert!(e.contains("registration.code_length"), "{e}");

        let e = Config::load(None, env(&[("PARLEY_MAIL__TRANSPORT", "pigeon")]))
            .expect_err("variant")
            .to_string();
        assert!(e.contains("pigeon"), "{e}");

        let e = Config::load(None, env(&[("PARLEY_HTTP__BIND", "nowhere")]))
            .expect_err("bind")
            .to_string();
        assert!(e.contains("http.bind"), "{e}");

        let e = Config::load(
            None,
            env(&[("PARLEY_DATABASE__TRANSACTION_POOLER", "true")]),
        )
        .expect_err("pooler without a migration address")
        .to_string();
        assert!(e.contains("database.migrate_url"), "{e}");
    }

    #[test]
    fn secrets_are_redacted() {
        let mut c = Config::default();
        c.database.url = "postgres://parley:hunter2@db:5432/parley".into();
        c.database.migrate_url = "postgres://parley:hunter3@db:5432/parley".into();
        c.mail.smtp_password = "s3cret".into();
        let out = c.redacted_toml();
        assert!(
            !out.contains("hunter2") && !out.contains("hunter3") && !out.contains("s3cret"),
            "{out}"
        );
        assert!(out.contains("postgres://parley:***@db:5432/parley"));
    }
}

#[cfg(test)]
mod doc_tests {
    use super::*;

    fn keys(prefix: &str, v: &Value, out: &mut Vec<String>) {
        if let Value::Table(t) = v {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if v.is_table() {
                    keys(&key, v, out);
                } else {
                    out.push(key);
                }
            }
        }
    }

    /// Every key has a row in docs/configuration.md under its section.
    #[test]
    fn every_key_is_documented() {
        let doc = include_str!("../../../docs/configuration.md");
        let tree = Value::try_from(Config::default()).expect("defaults");
        let mut all = Vec::new();
        keys("", &tree, &mut all);
        for key in all {
            let (section, name) = key.split_once('.').expect("sectioned");
            let at = doc
                .find(&format!("## `[{section}]`"))
                .unwrap_or_else(|| panic!("no section {section} in docs"));
            let rest = &doc[at..];
            let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
            assert!(
                rest[..end].contains(&format!("| `{name}` |")),
                "{key} is not documented"
            );
        }
    }

    #[test]
    fn the_example_file_loads() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/parley.toml");
        let cfg = Config::load(Some(&path), Vec::new()).expect("deploy/parley.toml is valid");
        assert_eq!(cfg.mail.smtp_port, 587);
    }
}
