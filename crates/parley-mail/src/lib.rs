//! Outgoing mail. `smtp` sends through any SMTP server (plain, STARTTLS or
//! implicit TLS, optional login); `log` writes the message to the log, which
//! is the embedded default so a fresh install works without a mail server.

use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Log,
    Smtp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (a relay on loopback or a private network).
    None,
    /// Plain connection upgraded with STARTTLS (port 587); refuses servers
    /// that do not offer it.
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// The `[mail]` section of the configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    pub transport: Transport,
    pub from: String,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_tls: SmtpTls,
    pub smtp_username: String,
    pub smtp_password: String,
    pub smtp_timeout_secs: u64,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            transport: Transport::Log,
            from: "Parley <parley@localhost>".into(),
            smtp_host: "127.0.0.1".into(),
            smtp_port: 25,
            smtp_tls: SmtpTls::None,
            smtp_username: String::new(),
            smtp_password: String::new(),
            smtp_timeout_secs: 10,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail.{field}: {message}")]
    Config {
        field: &'static str,
        message: String,
    },
    #[error("bad recipient address: {0}")]
    Recipient(String),
    #[error("could not build the message: {0}")]
    Build(String),
    #[error("mail server refused or unreachable: {0}")]
    Send(String),
}

/// An e-mail to send.
#[derive(Clone, Debug)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

#[derive(Clone)]
enum Inner {
    Log,
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

/// Sends mail with the configured transport; cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    from: Mailbox,
    inner: Inner,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.inner {
            Inner::Log => "log",
            Inner::Smtp(_) => "smtp",
        };
        f.debug_struct("Mailer").field("transport", &kind).finish()
    }
}

impl MailConfig {
    /// Checks the values without building anything.
    pub fn validate(&self) -> Result<(), MailError> {
        self.sender()?;
        if self.transport == Transport::Smtp {
            smtp_transport(self)?;
        }
        Ok(())
    }

    fn sender(&self) -> Result<Mailbox, MailError> {
        self.from.parse().map_err(|e| MailError::Config {
            field: "from",
            message: format!("not a mailbox ({e})"),
        })
    }
}

impl Mailer {
    /// Checks the configuration and prepares the transport. No connection is
    /// kept: each mail opens its own, since registration mail is rare and a
    /// pool would tie connections to one runtime's worker.
    pub fn new(cfg: &MailConfig) -> Result<Self, MailError> {
        let from = cfg.sender()?;
        let inner = match cfg.transport {
            Transport::Log => Inner::Log,
            Transport::Smtp => Inner::Smtp(smtp_transport(cfg)?),
        };
        Ok(Self { from, inner })
    }

    pub async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|e| MailError::Recipient(format!("{}: {e}", mail.to)))?;
        match &self.inner {
            Inner::Log => {
                tracing::info!(
                    to = %mail.to,
                    subject = %mail.subject,
                    body = %mail.body,
                    "mail (log transport, not sent)"
                );
                Ok(())
            }
            Inner::Smtp(transport) => {
                let msg = Message::builder()
                    .from(self.from.clone())
                    .to(to)
                    .subject(mail.subject.clone())
                    .header(ContentType::TEXT_PLAIN)
                    .body(mail.body.clone())
                    .map_err(|e| MailError::Build(e.to_string()))?;
                transport
                    .send(msg)
                    .await
                    .map_err(|e| MailError::Send(e.to_string()))?;
                Ok(())
            }
        }
    }
}

fn smtp_transport(cfg: &MailConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
    if cfg.smtp_host.trim().is_empty() {
        return Err(MailError::Config {
            field: "smtp_host",
            message: "must be set when transport = \"smtp\"".into(),
        });
    }
    let tls_params = || {
        TlsParameters::new(cfg.smtp_host.clone()).map_err(|e| MailError::Config {
            field: "smtp_tls",
            message: e.to_string(),
        })
    };
    let tls = match cfg.smtp_tls {
        SmtpTls::None => Tls::None,
        SmtpTls::Starttls => Tls::Required(tls_params()?),
        SmtpTls::Tls => Tls::Wrapper(tls_params()?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.smtp_host)
        .port(cfg.smtp_port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(cfg.smtp_timeout_secs.max(1))));
    if !cfg.smtp_username.is_empty() {
        builder = builder.credentials(Credentials::new(
            cfg.smtp_username.clone(),
            cfg.smtp_password.clone(),
        ));
    }
    Ok(builder.build())
}
