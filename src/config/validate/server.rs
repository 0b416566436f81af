//! `[server]`: listen address (overridden by `PRINTBELL_LISTEN`), webhook path, secret, body
//! limit, metrics address, request timeout; and the warning for an open, secret-less listener.

use super::Validator;
use crate::config::raw::RawServer;
use crate::config::{ServerConfig, DEFAULT_LISTEN, DEFAULT_MAX_BODY_BYTES, DEFAULT_WEBHOOK_PATH};
use std::time::Duration;

impl Validator<'_> {
    pub(super) fn server(&mut self, raw: &RawServer) -> ServerConfig {
        // Read through the lookup like `${VAR}`, so `parse` sees only the environment it is given.
        let from_env = (self.env)("PRINTBELL_LISTEN").filter(|s| !s.is_empty());
        let listen = match &from_env {
            Some(l) => l.clone(),
            None => raw
                .listen
                .as_ref()
                .and_then(|s| self.expand(s, "server.listen"))
                .unwrap_or_else(|| DEFAULT_LISTEN.to_string()),
        };
        if listen.parse::<std::net::SocketAddr>().is_err()
            && listen
                .rsplit_once(':')
                .is_none_or(|(_, p)| p.parse::<u16>().is_err())
        {
            // Blame where the value came from: the environment variable is not in the file.
            match from_env {
                Some(_) => self.p.at(
                    None,
                    format!("the environment variable PRINTBELL_LISTEN = \"{listen}\" (which overrides `server.listen`) is not an address like \"0.0.0.0:8080\""),
                ),
                None => self.p.at(
                    raw.listen.as_ref().map(|s| s.span()),
                    format!("`server.listen` = \"{listen}\" is not an address like \"0.0.0.0:8080\""),
                ),
            }
        }
        let webhook_path = raw
            .webhook_path
            .as_ref()
            .and_then(|s| self.expand(s, "server.webhook_path"))
            .unwrap_or_else(|| DEFAULT_WEBHOOK_PATH.to_string());
        if !webhook_path.starts_with('/') {
            let span = raw.webhook_path.as_ref().map(|s| s.span());
            self.p.at(span, "`server.webhook_path` must start with `/`");
        }
        let secret = match &raw.secret {
            Some(s) => match self.expand(s, "server.secret") {
                Some(v) if v.is_empty() => {
                    self.p.at(
                        Some(s.span()),
                        "`server.secret` is empty; set it or remove the key to accept unauthenticated events",
                    );
                    None
                }
                v => v,
            },
            None => None,
        };
        let max_body_bytes = match &raw.max_body_bytes {
            Some(n) if *n.get_ref() >= 1024 => *n.get_ref() as u64,
            Some(n) => {
                self.p.at(
                    Some(n.span()),
                    "`server.max_body_bytes` must be at least 1024",
                );
                DEFAULT_MAX_BODY_BYTES
            }
            None => DEFAULT_MAX_BODY_BYTES,
        };
        let metrics_listen = raw
            .metrics_listen
            .as_ref()
            .and_then(|s| self.expand(s, "server.metrics_listen"));
        let request_timeout = self.duration(
            &raw.request_timeout,
            "server.request_timeout",
            Duration::from_secs(30),
        );
        ServerConfig {
            listen,
            webhook_path,
            secret,
            max_body_bytes,
            metrics_listen,
            request_timeout,
        }
    }

    /// Warns (without failing) when anyone who can reach the listener can post events.
    pub(super) fn warn_about_server(&mut self, server: &ServerConfig) {
        if server.secret.is_none() && !is_loopback_listen(&server.listen) {
            self.warnings.push(format!(
                "server.secret is not set while server.listen = \"{}\" is reachable from other machines: anyone who can reach it can post events",
                server.listen
            ));
        }
    }
}

fn is_loopback_listen(listen: &str) -> bool {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(addr) => addr.ip().is_loopback(),
        Err(_) => listen.starts_with("localhost:"),
    }
}
