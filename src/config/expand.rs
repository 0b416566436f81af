//! `${VAR}` expansion in config values: a pure function of the text and an env lookup.
//!
//! `${NAME}` is replaced by the lookup's value for `NAME`, `$$` by a literal `$`, and any other
//! `$` is kept as written. Nothing here knows about files or problems: the validator turns an
//! [`ExpandError`] into a problem at the value's position.

/// Why a value could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandError {
    /// `${NAME}` names a variable the lookup does not have.
    Unset(String),
    /// A `${` with no `}` after it.
    Unclosed,
}

/// Expands `text`, looking variables up with `env`.
///
/// Every unset variable is reported, not only the first; an unclosed `${` ends the scan, so it
/// is always the last error.
pub fn expand(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<ExpandError>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                errors.push(ExpandError::Unclosed);
                return Err(errors);
            };
            let name = &body[..end];
            match env(name) {
                Some(value) => out.push_str(&value),
                None => errors.push(ExpandError::Unset(name.to_string())),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The names of the variables `text` refers to, in order (what [`expand`] would look up).
pub fn variables(text: &str) -> Vec<String> {
    let names = std::cell::RefCell::new(Vec::new());
    let _ = expand(text, &|name| {
        names.borrow_mut().push(name.to_string());
        Some(String::new())
    });
    names.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "B" => Some("beta".into()),
            "DOLLAR" => Some("$x".into()),
            _ => None,
        }
    }

    fn ok(text: &str) -> String {
        expand(text, &env).expect("expands")
    }

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(ok(""), "");
        assert_eq!(
            ok("https://hooks.slack.com/services/T/B/x"),
            "https://hooks.slack.com/services/T/B/x"
        );
        assert_eq!(ok("{A} and }"), "{A} and }");
    }

    #[test]
    fn double_dollar_is_one_literal_dollar() {
        assert_eq!(ok("$$"), "$");
        assert_eq!(ok("costs $$5"), "costs $5");
        assert_eq!(ok("$${A}"), "${A}");
        assert_eq!(ok("$$$$"), "$$");
    }

    #[test]
    fn a_lone_dollar_is_kept() {
        assert_eq!(ok("$"), "$");
        assert_eq!(ok("$5 and $A"), "$5 and $A");
        assert_eq!(ok("end$"), "end$");
        assert_eq!(ok("$$$"), "$$");
    }

    #[test]
    fn several_variables_expand() {
        assert_eq!(ok("${A}"), "alpha");
        assert_eq!(ok("${A}-${B}/${A}"), "alpha-beta/alpha");
        assert_eq!(ok("x${A}y${B}z"), "xalphaybetaz");
        // A value is inserted as is, never expanded again.
        assert_eq!(ok("${DOLLAR}"), "$x");
    }

    #[test]
    fn every_unset_variable_is_named() {
        assert_eq!(
            expand("${NOPE}", &env),
            Err(vec![ExpandError::Unset("NOPE".into())])
        );
        assert_eq!(
            expand("${X}${A}${Y}", &env),
            Err(vec![
                ExpandError::Unset("X".into()),
                ExpandError::Unset("Y".into())
            ])
        );
    }

    #[test]
    fn an_unclosed_brace_ends_the_scan() {
        assert_eq!(expand("${A", &env), Err(vec![ExpandError::Unclosed]));
        assert_eq!(expand("${A} ${", &env), Err(vec![ExpandError::Unclosed]));
        assert_eq!(
            expand("${NOPE} ${B", &env),
            Err(vec![
                ExpandError::Unset("NOPE".into()),
                ExpandError::Unclosed
            ])
        );
    }

    #[test]
    fn an_empty_name_is_looked_up_like_any_other() {
        assert_eq!(
            expand("${}", &env),
            Err(vec![ExpandError::Unset(String::new())])
        );
        let empty_set = |name: &str| name.is_empty().then(|| "E".to_string());
        assert_eq!(expand("<${}>", &empty_set), Ok("<E>".into()));
    }

    #[test]
    fn variables_lists_the_names_looked_up() {
        assert_eq!(variables("${A}-$$-${B}x$"), ["A", "B"]);
        assert!(variables("plain").is_empty());
    }
}
