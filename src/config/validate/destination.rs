//! `[destinations.NAME]`: the kind, the webhook URL (`url`, or `url_file` read relative to the
//! config file) and the optional keys. What a kind accepts or requires is asked of
//! `platform.rs`; this file only walks the keys and words the problems.

use super::{platform, Validator};
use crate::config::problems::nearest;
use crate::config::raw::{RawDestination, SString};
use crate::config::Destination;
use crate::domain::Kind;

impl Validator<'_> {
    pub(super) fn destination(
        &mut self,
        name: &str,
        d: &toml::Spanned<RawDestination>,
    ) -> Option<Destination> {
        let span = Some(d.span());
        let d = d.get_ref();
        let key = |k: &str| format!("destinations.{name}.{k}");
        let kind = match &d.kind {
            Some(k) => {
                let text = self.expand(k, &key("kind"))?;
                match Kind::parse(text.trim()) {
                    Some(kind) => kind,
                    None => {
                        let kinds = Kind::ALL.map(Kind::as_str);
                        let hint = match nearest(text.trim(), kinds) {
                            Some(best) => format!("; did you mean `{best}`?"),
                            None => format!("; expected one of: {}", kinds.join(", ")),
                        };
                        self.p.at(
                            Some(k.span()),
                            format!("`{}`: unknown kind `{text}`{hint}", key("kind")),
                        );
                        return None;
                    }
                }
            }
            None => {
                self.p.at(
                    span,
                    format!("destination `{name}` needs `kind` (slack, discord or console)"),
                );
                return None;
            }
        };
        let optional = [
            ("username", &d.username),
            ("avatar_url", &d.avatar_url),
            ("thread_id", &d.thread_id),
        ];
        for (field, value) in optional {
            if let (Some(v), Some(why)) = (value, platform::refuses_key(kind, field)) {
                self.p.at(Some(v.span()), format!("`{}` {why}", key(field)));
            }
        }
        let needs_url = platform::needs_url(kind);
        let url_text = match (needs_url, &d.url, &d.url_file) {
            (false, None, None) => None,
            (false, Some(s), _) | (false, None, Some(s)) => {
                self.p.at(
                    Some(s.span()),
                    format!("{kind} destination `{name}` takes no url"),
                );
                None
            }
            (true, Some(u), Some(_)) => {
                self.p.at(
                    Some(u.span()),
                    format!("destination `{name}` has both `url` and `url_file`; keep one"),
                );
                None
            }
            (true, Some(u), None) => self.expand(u, &key("url")).map(|t| (t, u.span(), "url")),
            (true, None, Some(f)) => {
                let path = self.expand(f, &key("url_file"))?;
                let full = self.base.join(&path);
                match std::fs::read_to_string(&full) {
                    Ok(text) => Some((text.trim().to_string(), f.span(), "url_file")),
                    Err(e) => {
                        self.p.at(
                            Some(f.span()),
                            format!("`{}`: cannot read {}: {e}", key("url_file"), full.display()),
                        );
                        None
                    }
                }
            }
            (true, None, None) => {
                self.p.at(
                    span,
                    format!("destination `{name}` needs `url` or `url_file`"),
                );
                return None;
            }
        };
        let url = match url_text {
            Some((text, span, field)) => match platform::parse_webhook_url(kind, &text) {
                Ok(u) => Some(u),
                Err(why) => {
                    let what = if field == "url" {
                        format!("`{}`", key("url"))
                    } else {
                        format!("the content of `{}`", key("url_file"))
                    };
                    self.p.at(
                        Some(span),
                        format!("{what} is not a usable webhook URL: {why}"),
                    );
                    None
                }
            },
            None => None,
        };
        if needs_url && url.is_none() {
            return None;
        }
        // Each value is checked even where its key was refused above, as it always was.
        let username = self.checked(&d.username, &key("username"), platform::check_username);
        let avatar_url = self.checked(
            &d.avatar_url,
            &key("avatar_url"),
            platform::check_avatar_url,
        );
        let thread_id = self.checked(&d.thread_id, &key("thread_id"), platform::check_thread_id);
        Some(Destination {
            name: name.to_string(),
            kind,
            url,
            username,
            avatar_url,
            thread_id,
        })
    }

    /// Expands an optional value and checks it with `check`, reporting at the value.
    fn checked(
        &mut self,
        value: &Option<SString>,
        key: &str,
        check: fn(&str) -> Result<(), &'static str>,
    ) -> Option<String> {
        let s = value.as_ref()?;
        let v = self.expand(s, key)?;
        if let Err(why) = check(&v) {
            self.p.at(Some(s.span()), format!("`{key}` {why}"));
        }
        Some(v)
    }
}
