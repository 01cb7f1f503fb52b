//! Registration of an infobase by a code e-mailed to its subscriber.

use crate::{Error, Result, Service};
use chrono::Utc;
use parley_core::api::{CodeRequested, ConfirmRegistration, Registered};
use parley_core::crypto::{self, code_hash, ct_eq, sha256, INFOBASE_KEY_PREFIX};
use parley_core::validate::{self, MAX_INFOBASE_NAME_CHARS};
use parley_core::{ErrorCode, InfobaseId};
use parley_mail::Mail;
use parley_store::{ConfirmOutcome, NewCode, NewInfobase};
use std::net::IpAddr;
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);

impl Service {
    /// Limits registration requests per client address (in-process GCRA).
    fn limit_address(&self, what: &str, client: Option<IpAddr>) -> Result<String> {
        let ip = client.map(|ip| ip.to_string()).unwrap_or_default();
        self.limiter
            .check(
                &format!("{what}:{ip}"),
                self.cfg.registration.requests_per_ip_per_hour,
                HOUR,
            )
            .map_err(|wait| Error::rate_limited("registration requests from this address", wait))?;
        Ok(ip)
    }

    /// Sends a registration code to the e-mail.
    pub async fn request_code(&self, email: &str, client: Option<IpAddr>) -> Result<CodeRequested> {
        let ip = self.limit_address("code", client)?;
        let email = validate::email(email)?;
        let cfg = &self.cfg.registration;
        let since = Utc::now() - chrono::Duration::hours(1);
        // The in-process limit above is per node; the codes stored in the
        // last hour are what every node sees alike.
        if self.store.codes_requested_from_since(&ip, since).await?
            >= i64::from(cfg.requests_per_ip_per_hour)
        {
            return Err(Error::rate_limited(
                "registration requests from this address (registration.requests_per_ip_per_hour)",
                HOUR / cfg.requests_per_ip_per_hour.max(1),
            ));
        }
        if self.store.codes_requested_since(&email, since).await?
            >= i64::from(cfg.codes_per_email_per_hour)
        {
            return Err(Error::rate_limited(
                "codes for this e-mail (registration.codes_per_email_per_hour)",
                HOUR / cfg.codes_per_email_per_hour.max(1),
            ));
        }
        let code = crypto::numeric_code(cfg.code_length);
        let salt = crypto::random_bytes::<16>().to_vec();
        let ttl = Duration::from_secs(cfg.code_ttl_secs);
        let new = NewCode {
            code_hash: code_hash(&salt, &email, &code),
            salt,
            email: email.clone(),
            expires_at: Utc::now() + ttl,
            client_addr: ip,
        };
        self.store.insert_code(&new).await?;
        let minutes = cfg.code_ttl_secs.div_ceil(60);
        let mail = Mail {
            to: email.clone(),
            subject: format!("Parley registration code: {code}"),
            body: format!(
                "Your Parley registration code is {code}\r\n\r\n\
                 Enter it with the name of your infobase to register it. \
                 The code is valid for {minutes} min and can be used once.\r\n\
                 If you did not ask for it, ignore this message.\r\n"
            ),
        };
        if let Err(e) = self.mailer.send(&mail).await {
            tracing::warn!(error = %e, "registration mail not sent");
            return Err(Error::new(
                ErrorCode::Unavailable,
                "the code could not be mailed; retry later",
            ));
        }
        tracing::info!("registration code sent");
        Ok(CodeRequested {
            status: "sent".into(),
            expires_in_seconds: cfg.code_ttl_secs,
        })
    }

    /// Confirms `(email, code, infobase name)` and registers a new infobase.
    pub async fn confirm_registration(
        &self,
        body: &ConfirmRegistration,
        client: Option<IpAddr>,
    ) -> Result<Registered> {
        self.limit_address("confirm", client)?;
        let email = validate::email(&body.email)?;
        let code = validate::code(&body.code, self.cfg.registration.code_length)?;
        let name = validate::text(
            "infobase_name",
            &body.infobase_name,
            MAX_INFOBASE_NAME_CHARS,
        )?;
        let key = crypto::secret(INFOBASE_KEY_PREFIX);
        let infobase = NewInfobase {
            id: InfobaseId::new_random(),
            name: name.clone(),
            key_hash: sha256(key.as_bytes()),
        };
        let max_attempts = i32::try_from(self.cfg.registration.max_attempts).unwrap_or(i32::MAX);
        let verify = |salt: &[u8], hash: &[u8]| ct_eq(&code_hash(salt, &email, &code), hash);
        match self
            .store
            .confirm_code(&email, max_attempts, verify, &infobase)
            .await?
        {
            ConfirmOutcome::Registered {
                subscriber_id,
                infobase_id,
            } => {
                tracing::info!(%infobase_id, %subscriber_id, "infobase registered");
                Ok(Registered {
                    infobase_id,
                    infobase_key: key,
                    subscriber_id,
                    name,
                })
            }
            ConfirmOutcome::Denied(reason) => {
                tracing::info!(?reason, "registration refused");
                Err(Error::access_denied(
                    "the code is wrong, expired or already used, or too many attempts were made",
                ))
            }
        }
    }
}
