//! Config problems: one readable sentence each, located at `file:line:column`.
//!
//! `printbell check` prints every problem; `serve` refuses to start on any.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based; `None` when the problem is not tied to one place (e.g. an unreadable file).
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
    /// Set when the problem is only that a variable in this destination's secret (its URL or
    /// token) is unset: `preview` and `send-test` can leave that destination out and go on.
    pub unset_secret_of: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Collects problems while a config is validated, turning byte spans into line/column.
pub struct Problems<'a> {
    file: &'a Path,
    source: &'a str,
    pub list: Vec<Problem>,
}

impl<'a> Problems<'a> {
    pub fn new(file: &'a Path, source: &'a str) -> Self {
        Problems {
            file,
            source,
            list: Vec::new(),
        }
    }

    pub fn at(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        let (line, column) = match span {
            Some(span) => {
                let (l, c) = line_col(self.source, span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        self.list.push(Problem {
            file: self.file.to_path_buf(),
            line,
            column,
            message: message.into(),
            unset_secret_of: None,
        });
    }

    pub fn line_of(&self, offset: usize) -> usize {
        line_col(self.source, offset).0
    }

    /// The line a string value's text starts on: a multi-line string (`"""` or `'''`)
    /// drops a newline right after its opening quotes, so its text starts one line below.
    pub fn first_line_of_string(&self, span: Range<usize>) -> usize {
        let line = self.line_of(span.start);
        let value = self.source.get(span).unwrap_or_default();
        let multi_line = ["\"\"\"", "'''"].iter().any(|q| {
            value
                .strip_prefix(q)
                .is_some_and(|rest| rest.starts_with('\n') || rest.starts_with("\r\n"))
        });
        line + usize::from(multi_line)
    }

    pub fn into_result(self) -> Result<(), ConfigError> {
        if self.list.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                problems: self.list,
            })
        }
    }
}

/// Orders problems as they appear in the file (those without a place last).
pub fn sort(problems: &mut [Problem]) {
    problems.sort_by_key(|p| (p.line.is_none(), p.line, p.column));
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before
        .get(line_start..)
        .map(|s| s.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub fn nearest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Rewrites serde's "unknown field `x`, expected one of `a`, `b`" into a sentence that
/// suggests the nearest valid key.
pub fn explain_serde_message(message: &str) -> String {
    let message = message.trim();
    for (marker, noun) in [("unknown field `", "key"), ("unknown variant `", "value")] {
        let Some(rest) = message.strip_prefix(marker) else {
            continue;
        };
        let Some(end) = rest.find('`') else { break };
        let unknown = &rest[..end];
        let expected: Vec<&str> = rest[end + 1..].split('`').skip(1).step_by(2).collect();
        let mut out = format!("unknown {noun} `{unknown}`");
        if let Some(best) = nearest(unknown, expected.iter().copied()) {
            out.push_str(&format!("; did you mean `{best}`?"));
        } else if !expected.is_empty() {
            out.push_str(&format!("; expected one of: {}", expected.join(", ")));
        }
        return out;
    }
    message
        .replace("expected i64", "expected an integer")
        .replace("expected u64", "expected an integer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_nearest_key() {
        let m = explain_serde_message(
            "unknown field `lisen`, expected one of `listen`, `webhook_path`, `secret`",
        );
        assert_eq!(m, "unknown key `lisen`; did you mean `listen`?");
    }

    #[test]
    fn lists_keys_when_nothing_is_close() {
        let m = explain_serde_message("unknown field `zzz`, expected `path`");
        assert_eq!(m, "unknown key `zzz`; expected one of: path");
    }

    #[test]
    fn line_and_column_count_characters() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        let off = src
            .find('=')
            .map(|_| src.rfind('=').unwrap_or(0))
            .unwrap_or(0);
        assert_eq!(line_col(src, off), (2, 4));
    }
}
