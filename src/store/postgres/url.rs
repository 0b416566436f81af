//! The PostgreSQL URL: checked once (when the config is read), shown only with its password
//! replaced by `***`, and turned into the driver's connection settings.
//!
//! The URL is the driver's own (`postgres://` or `postgresql://`, as libpq reads it):
//! `postgres://USER:PASSWORD@HOST:PORT/DBNAME?sslmode=require&…`. Its password is a secret
//! (SPEC §5): [`PostgresUrl`]'s `Display` and `Debug` redact it, in the userinfo and in a
//! `password=` parameter alike, and no error message built here repeats the URL.

use std::time::Duration;

/// A database that takes long to accept a connection counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Data unacknowledged for this long (a peer gone without a FIN) closes the connection, so a
/// query does not wait for a dead server for ever.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(15);
const KEEPALIVES_IDLE: Duration = Duration::from_secs(15);

/// A checked PostgreSQL URL. Compares as the text it was given.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    text: String,
}

impl PostgresUrl {
    /// Whether `text` names PostgreSQL rather than a file (its scheme).
    pub fn is_postgres(text: &str) -> bool {
        text.starts_with("postgres://") || text.starts_with("postgresql://")
    }

    /// Checks `text` as the driver will read it. The error says what is wrong without
    /// repeating the URL (it may hold a password).
    pub fn parse(text: &str) -> Result<PostgresUrl, String> {
        if !Self::is_postgres(text) {
            return Err("is not a PostgreSQL URL (postgres://… or postgresql://…)".into());
        }
        let config: tokio_postgres::Config = text.parse().map_err(|e| {
            format!(
                "is not a valid PostgreSQL URL ({e}); sslmode may be disable, prefer or require"
            )
        })?;
        if config.get_hosts().is_empty() {
            return Err("names no host (postgres://USER@HOST/DBNAME)".into());
        }
        Ok(PostgresUrl {
            text: text.to_string(),
        })
    }

    /// The connection settings: the URL's, plus printbell's defaults for what it leaves
    /// unset (connect timeout, TCP keepalives and user timeout, application name).
    pub(super) fn config(&self) -> tokio_postgres::Config {
        let mut config: tokio_postgres::Config = match self.text.parse() {
            Ok(c) => c,
            // Checked by `parse`; the default reaches no server and fails with its own error.
            Err(_) => tokio_postgres::Config::new(),
        };
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        if config.get_keepalives() && config.get_keepalives_idle() == Duration::from_secs(2 * 3600)
        {
            config.keepalives_idle(KEEPALIVES_IDLE);
        }
        if config.get_application_name().is_none() {
            config.application_name("printbell");
        }
        config
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact(&self.text)
    }
}

impl std::fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresUrl({:?})", self.redacted())
    }
}

/// Replaces the password of a `postgres://` URL by `***`, reading the URL as the driver does:
/// the userinfo is everything before the first `@` (its password after the first `:`), and a
/// `password` parameter may follow the first `?`.
pub fn redact(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_string();
    };
    let (creds, rest) = match rest.split_once('@') {
        Some((creds, rest)) => (Some(creds), rest),
        None => (None, rest),
    };
    let mut out = format!("{scheme}://");
    if let Some(creds) = creds {
        match creds.split_once(':') {
            Some((user, _)) => out.push_str(&format!("{user}:***@")),
            None => out.push_str(&format!("{creds}@")),
        }
    }
    match rest.split_once('?') {
        None => out.push_str(rest),
        Some((head, params)) => {
            out.push_str(head);
            out.push('?');
            let shown: Vec<String> = params
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_string(),
                })
                .collect();
            out.push_str(&shown.join("&"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_postgres::config::SslMode;

    #[test]
    fn the_password_is_never_shown() {
        let cases = [
            (
                "postgres://printbell:s3cret@db:5432/printbell",
                "postgres://printbell:***@db:5432/printbell",
            ),
            (
                "postgresql://u:p%40ss:wd9@h1,h2:5433/d?sslmode=require",
                "postgresql://u:***@h1,h2:5433/d?sslmode=require",
            ),
            (
                "postgres://u@h/d?sslmode=disable&password=s3cret",
                "postgres://u@h/d?sslmode=disable&password=***",
            ),
            ("postgres://h/d", "postgres://h/d"),
        ];
        for (url, shown) in cases {
            let parsed = PostgresUrl::parse(url).expect(shown);
            assert_eq!(parsed.to_string(), shown);
            assert!(!format!("{parsed:?}").contains("s3cret"));
            assert!(!format!("{parsed:?}").contains("wd9"));
        }
    }

    #[test]
    fn a_bad_url_is_refused_without_repeating_it() {
        for url in [
            "postgres://u:s3cret@h/d?sslmode=sometimes",
            "postgres://u:s3cret@h/d?colour=blue",
            "postgres://u:s3cret@/d",
            "mysql://u:s3cret@h/d",
        ] {
            let err = PostgresUrl::parse(url).expect_err(url);
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn defaults_fill_only_what_the_url_leaves_unset() {
        let url = PostgresUrl::parse("postgres://u@h/d?connect_timeout=2&sslmode=require")
            .expect("valid");
        let c = url.config();
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(2)));
        assert_eq!(c.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        assert_eq!(c.get_application_name(), Some("printbell"));
        assert_eq!(c.get_ssl_mode(), SslMode::Require);
        let plain = PostgresUrl::parse("postgres://u@h/d").expect("valid");
        assert_eq!(plain.config().get_ssl_mode(), SslMode::Prefer);
    }
}
