//! The command line as a user meets it: the real binary, run on config files in a temp dir,
//! judged only by its exit code, stdout and stderr (SPEC §1, §2).

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use testkit::store::{NewDelivery, Seeder};

const SLACK_TOKEN: &str = "xoxSlackSecretToken42";
const DISCORD_TOKEN: &str = "discordSecretTokenXYZ";
const FILE_TOKEN: &str = "fileSecretToken77";

/// Runs the binary and checks that nothing it printed is a panic or a debug dump.
fn cli(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let (code, out, err) = testkit::run_cli(args, envs);
    assert_no_dump(&out, &err);
    (code, out, err)
}

/// Like [`cli`], in another working directory.
fn cli_in(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let (code, out, err) = testkit::run_cli_in(Some(dir), args, envs);
    assert_no_dump(&out, &err);
    (code, out, err)
}

fn assert_no_dump(out: &str, err: &str) {
    for bad in [
        "panicked",
        "RUST_BACKTRACE",
        "stack backtrace",
        "Os { code",
        "Error {",
    ] {
        assert!(
            !err.contains(bad) && !out.contains(bad),
            "`{bad}` in the output\n--- stdout\n{out}\n--- stderr\n{err}"
        );
    }
}

/// A config file in its own temp dir.
struct Cfg {
    dir: tempfile::TempDir,
    path: PathBuf,
    text: String,
}

impl Cfg {
    fn new(text: &str) -> Cfg {
        let dir = tempfile::tempdir().expect("temp dir");
        Cfg::in_dir(dir, text)
    }

    /// `text` may use `{dir}` for the temp dir.
    fn in_dir(dir: tempfile::TempDir, text: &str) -> Cfg {
        let text = text.replace("{dir}", &dir.path().display().to_string());
        let path = dir.path().join("notifier.toml");
        std::fs::write(&path, &text).expect("write config");
        Cfg { dir, path, text }
    }

    fn p(&self) -> &str {
        self.path.to_str().expect("utf-8 path")
    }

    /// 1-based line of the first line containing `needle`.
    fn line_of(&self, needle: &str) -> usize {
        self.text
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("`{needle}` is not in the config"))
            + 1
    }

    /// 1-based column where `needle` starts on its line.
    fn column_of(&self, needle: &str) -> usize {
        let line = self
            .text
            .lines()
            .nth(self.line_of(needle) - 1)
            .unwrap_or("");
        line[..line.find(needle).unwrap_or(0)].chars().count() + 1
    }
}

/// A problem line of stderr: `FILE:LINE[:COL]: message`.
#[derive(Debug)]
struct Reported {
    line: usize,
    column: Option<usize>,
    message: String,
}

fn problems(stderr: &str, file: &Path) -> Vec<Reported> {
    let prefix = format!("{}:", file.display());
    stderr
        .lines()
        .filter_map(|l| {
            let l = l.strip_prefix("printbell: ").unwrap_or(l);
            let rest = l.strip_prefix(&prefix)?;
            let (loc, message) = rest.split_once(": ")?;
            let mut parts = loc.split(':');
            let line = parts.next()?.parse().ok()?;
            let column = parts.next().and_then(|c| c.parse().ok());
            Some(Reported {
                line,
                column,
                message: message.to_string(),
            })
        })
        .collect()
}

/// The one reported problem whose message contains every needle.
fn problem<'a>(all: &'a [Reported], needles: &[&str], stderr: &str) -> &'a Reported {
    let found: Vec<&Reported> = all
        .iter()
        .filter(|p| needles.iter().all(|n| p.message.contains(n)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one problem containing {needles:?}\n--- stderr\n{stderr}"
    );
    found[0]
}

// ---------------------------------------------------------------------------------------
// check
// ---------------------------------------------------------------------------------------

#[test]
fn check_accepts_a_valid_config_and_shows_urls_redacted() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("slack.url"),
        format!("https://hooks.slack.com/services/T0FILE/B0FILE/{FILE_TOKEN}\n"),
    )
    .expect("write url file");
    let cfg = Cfg::in_dir(
        dir,
        &format!(
            r#"[server]
listen = "127.0.0.1:8080"

[store]
path = "{{dir}}/printbell.db"

[destinations.team-slack]
kind = "slack"
url = "https://hooks.slack.com/services/T0CLI/B0CLI/{SLACK_TOKEN}"

[destinations.from-file]
kind = "slack"
url_file = "slack.url"

[destinations.oncall]
kind = "discord"
url = "https://discordapp.com/api/webhooks/123456/{DISCORD_TOKEN}"
username = "printbell"

[destinations.stdout]
kind = "console"

[[routes]]
tags = ["marketing"]
to = ["team-slack", "from-file"]

[[routes]]
events = ["print.failed"]
to = ["oncall"]
mention = ["role:123456789012345678"]

[[routes]]
untagged = true
to = ["stdout"]
"#
        ),
    );
    let (code, out, err) = cli(&["check", "--config", cfg.p()], &[]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("is valid"), "{out}");
    for (name, shown) in [
        ("team-slack", "https://hooks.slack.com/"),
        ("from-file", "https://hooks.slack.com/"),
        // The legacy Discord host is shown as the one that will be used.
        ("oncall", "https://discord.com/"),
    ] {
        let line = out
            .lines()
            .find(|l| l.contains(name) && l.contains("://"))
            .unwrap_or_else(|| panic!("no line for {name}:\n{out}"));
        assert!(line.contains(shown), "{name}: {line}");
    }
    assert!(out.contains("stdout"), "{out}");
    for secret in [
        SLACK_TOKEN,
        DISCORD_TOKEN,
        FILE_TOKEN,
        "T0CLI",
        "B0FILE",
        "123456/",
    ] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "`{secret}` leaked:\n{out}\n{err}"
        );
    }
}

#[test]
fn check_suggests_the_nearest_key_for_a_typo() {
    let cfg = Cfg::new("[server]\nlisen = \"127.0.0.1:8080\"\n");
    let (code, out, err) = cli(&["check", "--config", cfg.p()], &[]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let all = problems(&err, &cfg.path);
    let p = problem(&all, &["lisen", "did you mean", "listen"], &err);
    assert_eq!(p.line, 2);
    assert_eq!(p.column, Some(1));
}

#[test]
fn check_suggests_the_nearest_destination_kind() {
    let cfg = Cfg::new(
        "[destinations.team]\nkind = \"slak\"\nurl = \"https://hooks.slack.com/services/T/B/x\"\n",
    );
    let (code, _, err) = cli(&["check", "--config", cfg.p()], &[]);
    assert_eq!(code, 1, "{err}");
    let all = problems(&err, &cfg.path);
    let p = problem(&all, &["slak", "did you mean", "slack"], &err);
    assert_eq!(p.line, 2);
    assert_eq!(p.column, Some(cfg.column_of("\"slak\"")));
}

/// One file with one of every kind of mistake: all of them are listed, each at its line.
#[test]
fn check_lists_every_problem_at_its_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("both.url"),
        "https://hooks.slack.com/services/T/B/z\n",
    )
    .expect("write url file");
    let cfg = Cfg::in_dir(
        dir,
        r#"[server]
lisen = "127.0.0.1:8080"

[destinations.team-slack]
kind = "slack"
url = "https://hooks.slack.com/services/${PB_CLI_UNSET_A}/${PB_CLI_UNSET_B}"

[destinations.oncall]
kind = "discord"
url = "${PB_CLI_UNSET_C}"
usrname = "bell"

[destinations.ftp-hook]
kind = "slack"
url = "ftp://hooks.slack.com/services/T/B/x"

[destinations.garbage]
kind = "discord"
url = "not a url"

[destinations.both]
kind = "slack"
url = "https://hooks.slack.com/services/T/B/both"
url_file = "both.url"

[destinations.from-file]
kind = "slack"
url_file = "missing-secret.url"

[destinations.typo-kind]
kind = "slak"
url = "https://hooks.slack.com/services/T/B/y"

[destinations.ok-slack]
kind = "slack"
url = "https://hooks.slack.com/services/T/B/ok"

[[routes]]
to = ["team-slak"]

[[routes]]
events = ["print.complete", "print.failed"]
to = ["ok-slack"]
mention = ["role:123456789012345678"]

[templates."print.completed"]
title = "{{ generation.name "
"#,
    );
    let (code, out, err) = cli(&["check", "--config", cfg.p()], &[]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(!out.contains("is valid"), "{out}");
    let all = problems(&err, &cfg.path);
    let at = |needles: &[&str], line: usize| {
        let p = problem(&all, needles, &err);
        assert_eq!(p.line, line, "{needles:?} at the wrong line:\n{err}");
        p
    };
    at(&["lisen", "did you mean", "`listen`"], cfg.line_of("lisen"));
    at(
        &["usrname", "did you mean", "`username`"],
        cfg.line_of("usrname"),
    );
    at(
        &["slak`", "did you mean", "`slack`"],
        cfg.line_of("\"slak\""),
    );
    let url_a = cfg.line_of("PB_CLI_UNSET_A");
    at(&["PB_CLI_UNSET_A", "not set"], url_a);
    at(&["PB_CLI_UNSET_B", "not set"], url_a);
    at(
        &["PB_CLI_UNSET_C", "not set"],
        cfg.line_of("PB_CLI_UNSET_C"),
    );
    at(&["ftp-hook", "ftp"], cfg.line_of("ftp://"));
    at(&["garbage", "webhook URL"], cfg.line_of("not a url"));
    at(&["both", "url_file"], cfg.line_of("services/T/B/both"));
    at(&["missing-secret.url"], cfg.line_of("missing-secret.url"));
    let p = at(&["team-slak`", "destination"], cfg.line_of("team-slak\""));
    assert!(
        p.message.contains("did you mean `team-slack`"),
        "the suggestion names the destination even when it is itself invalid: {}",
        p.message
    );
    at(
        &["print.complete`", "did you mean `print.completed`"],
        cfg.line_of("print.complete\""),
    );
    at(&["role:123456789012345678", "slack"], cfg.line_of("role:"));
    let t = problem(&all, &["print.completed", "title", "template"], &err);
    assert_eq!(t.line, cfg.line_of("{{ generation.name"), "{err}");
    let lines: Vec<usize> = all.iter().map(|p| p.line).collect();
    assert!(
        lines.windows(2).all(|w| w[0] <= w[1]),
        "listed in file order: {lines:?}"
    );
    // Nothing else: a route naming an invalid destination is not also reported as naming
    // an undefined one.
    assert_eq!(all.len(), 14, "problems:\n{err}");
    assert!(err.contains("14 problems"), "{err}");
}

#[test]
fn check_lists_wrong_types_and_missing_keys_together() {
    let cfg = Cfg::new(
        r#"[server]
listen = 8080
max_body_bytes = "big"

[destinations.nokind]
url = "https://hooks.slack.com/services/T/B/x"

[[routes]]
tags = "marketing"

[[routes]]
to = ["nokind"]

[routes.templates."print.failed"]
titel = "{{ generation.name }}"
"#,
    );
    let (code, out, err) = cli(&["check", "--config", cfg.p()], &[]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let all = problems(&err, &cfg.path);
    let at = |needles: &[&str], line: usize| {
        let p = problem(&all, needles, &err);
        assert_eq!(p.line, line, "{needles:?} at the wrong line:\n{err}");
    };
    at(&["server.listen"], cfg.line_of("listen = 8080"));
    at(&["max_body_bytes"], cfg.line_of("\"big\""));
    at(&["nokind", "kind"], cfg.line_of("[destinations.nokind]"));
    at(&["route 1", "`to`"], cfg.line_of("[[routes]]"));
    at(&["tags"], cfg.line_of("tags = "));
    at(&["titel", "did you mean `title`"], cfg.line_of("titel"));
    assert_eq!(all.len(), 6, "{err}");
}

#[test]
fn check_names_every_unset_variable() {
    let cfg = Cfg::new(
        r#"[server]
listen = "127.0.0.1:8080"
secret = "${PB_CLI_NO_SECRET}"

[destinations.a]
kind = "slack"
url = "${PB_CLI_NO_SLACK}"

[destinations.b]
kind = "discord"
url = "https://discord.com/api/webhooks/${PB_CLI_NO_ID}/${PB_CLI_NO_TOKEN}"

[[routes]]
to = ["a", "b"]
"#,
    );
    let (code, out, err) = cli(&["check", "--config", cfg.p()], &[]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let all = problems(&err, &cfg.path);
    for var in [
        "PB_CLI_NO_SECRET",
        "PB_CLI_NO_SLACK",
        "PB_CLI_NO_ID",
        "PB_CLI_NO_TOKEN",
    ] {
        let p = problem(&all, &[var, "not set"], &err);
        assert_eq!(p.line, cfg.line_of(var), "{var}: {err}");
    }
    assert!(
        !err.contains("not a defined destination"),
        "a destination with an unset variable is still defined: {err}"
    );
    // Once set, the same file is valid and the values are not shown.
    let (code, out, err) = cli(
        &["check", "--config", cfg.p()],
        &[
            ("PB_CLI_NO_SECRET", "s3cr3t-value"),
            (
                "PB_CLI_NO_SLACK",
                "https://hooks.slack.com/services/T/B/envSlackToken",
            ),
            ("PB_CLI_NO_ID", "42"),
            ("PB_CLI_NO_TOKEN", "envDiscordToken"),
        ],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for secret in ["s3cr3t-value", "envSlackToken", "envDiscordToken"] {
        assert!(!out.contains(secret) && !err.contains(secret), "{out}{err}");
    }
}

#[test]
fn check_reports_template_errors_with_the_template_and_line() {
    let cfg = Cfg::new(
        r#"[destinations.stdout]
kind = "console"

[[routes]]
to = ["stdout"]

[routes.templates."print.failed"]
text = """
first line
{% if generation.name %}
never closed
"""

[templates."print.completed"]
title = "{{ generation.name "
"#,
    );
    let (code, out, err) = cli(&["check", "--config", cfg.p()], &[]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let all = problems(&err, &cfg.path);
    let p = problem(&all, &["templates", "print.completed", "title"], &err);
    assert_eq!(p.line, cfg.line_of("{{ generation.name "), "{err}");
    let p = problem(&all, &["route 1", "print.failed", "text"], &err);
    // The template's own lines are the file's lines "first line" ..= "never closed".
    assert!(
        (cfg.line_of("first line")..=cfg.line_of("never closed") + 1).contains(&p.line),
        "line {} is outside the template:\n{err}",
        p.line
    );
    assert_eq!(all.len(), 2, "{err}");
}

#[test]
fn check_refuses_mentions_the_platform_lacks() {
    let cfg = Cfg::new(
        r#"[destinations.s]
kind = "slack"
url = "https://hooks.slack.com/services/T/B/x"

[destinations.d]
kind = "discord"
url = "https://discord.com/api/webhooks/1/abc"

[[routes]]
to = ["s"]
mention = ["role:123456789012345678"]

[[routes]]
to = ["d"]
mention = ["group:S0123ABC"]

[[routes]]
to = ["s", "d"]
mention = ["user:U123", "here"]
"#,
    );
    let (code, _, err) = cli(&["check", "--config", cfg.p()], &[]);
    assert_eq!(code, 1, "{err}");
    let all = problems(&err, &cfg.path);
    let p = problem(&all, &["role:123456789012345678", "slack"], &err);
    assert_eq!(p.line, cfg.line_of("role:"));
    let p = problem(&all, &["group:S0123ABC", "discord"], &err);
    assert_eq!(p.line, cfg.line_of("group:"));
    // A Slack-style id cannot name a Discord user (Discord ids are all digits).
    let p = problem(&all, &["user:U123", "not a Discord id"], &err);
    assert_eq!(p.line, cfg.line_of("user:U123"));
    assert_eq!(all.len(), 3, "user: and here exist on both: {err}");
}

#[test]
fn check_validates_mention_interval() {
    let cfg = Cfg::new(
        r#"[destinations.d]
kind = "discord"
url = "https://discord.com/api/webhooks/1/abc"

[[routes]]
to = ["d"]
mention = ["role:123456789012345678"]
mention_interval = "soon"

[[routes]]
to = ["d"]
mention = ["role:123456789012345678"]
mention_interval = "500ms"

[[routes]]
to = ["d"]
mention_interval = "5m"

[[routes]]
to = ["d"]
mention = ["role:123456789012345678"]
mention_interval = "5m"
"#,
    );
    let (code, _, err) = cli(&["check", "--config", cfg.p()], &[]);
    assert_eq!(code, 1, "{err}");
    let all = problems(&err, &cfg.path);
    let p = problem(
        &all,
        &["route 1.mention_interval", "\"soon\" is not a duration"],
        &err,
    );
    assert_eq!(p.line, cfg.line_of("\"soon\""));
    let p = problem(&all, &["route 2.mention_interval", "at least 1s"], &err);
    assert_eq!(p.line, cfg.line_of("\"500ms\""));
    let p = problem(
        &all,
        &["route 3 has `mention_interval` but no `mention`"],
        &err,
    );
    assert_eq!(p.line, cfg.line_of("mention_interval = \"5m\""));
    assert_eq!(all.len(), 3, "route 4 is valid: {err}");
}

#[test]
fn check_reports_a_toml_syntax_error_at_its_line() {
    let cfg = Cfg::new("[server]\nlisten = \"127.0.0.1:8080\"\nsecret = \"unterminated\n");
    let (code, _, err) = cli(&["check", "--config", cfg.p()], &[]);
    assert_eq!(code, 1, "{err}");
    let all = problems(&err, &cfg.path);
    assert_eq!(all.len(), 1, "{err}");
    assert_eq!(all[0].line, 3, "{err}");
}

#[test]
fn url_file_with_a_trailing_newline_is_used() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("discord.url"),
        format!("https://discord.com/api/webhooks/99/{FILE_TOKEN}\n\n"),
    )
    .expect("write url file");
    let cfg = Cfg::in_dir(
        dir,
        r#"[destinations.oncall]
kind = "discord"
url_file = "discord.url"

[[routes]]
to = ["oncall"]
"#,
    );
    let (code, out, err) = cli(&["check", "--config", cfg.p()], &[]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("https://discord.com/"), "{out}");
    assert!(!out.contains(FILE_TOKEN) && !err.contains(FILE_TOKEN));
    // An absolute url_file works as well.
    let abs = cfg.dir.path().join("discord.url");
    let cfg2 = Cfg::new(&format!(
        "[destinations.oncall]\nkind = \"discord\"\nurl_file = \"{}\"\n",
        abs.display()
    ));
    let (code, _, err) = cli(&["check", "--config", cfg2.p()], &[]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn config_comes_from_printbell_config_then_notifier_toml() {
    let cfg = Cfg::new("[destinations.stdout]\nkind = \"console\"\n");
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let (code, out, err) = cli_in(
        elsewhere.path(),
        &["check"],
        &[("PRINTBELL_CONFIG", cfg.p())],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains(cfg.p()), "names the file it checked: {out}");

    // --config wins over the variable.
    let bad = Cfg::new("[server]\nlisen = \"x\"\n");
    let (code, _, err) = cli_in(
        elsewhere.path(),
        &["check", "--config", bad.p()],
        &[("PRINTBELL_CONFIG", cfg.p())],
    );
    assert_eq!(code, 1, "{err}");

    // Neither: ./notifier.toml.
    let (code, out, err) = cli_in(cfg.dir.path(), &["check"], &[]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
}

#[test]
fn a_missing_config_file_is_one_clear_sentence() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("absent.toml");
    let missing = missing.to_str().expect("utf-8");
    for (args, envs) in [
        (vec!["check", "--config", missing], vec![]),
        (vec!["check"], vec![("PRINTBELL_CONFIG", missing)]),
        (vec!["preview", "--config", missing], vec![]),
    ] {
        let (code, out, err) = cli_in(dir.path(), &args, &envs);
        assert_eq!(code, 1, "{args:?}\nstdout:\n{out}\nstderr:\n{err}");
        assert!(err.contains(missing), "names the file: {err}");
        assert!(
            err.to_lowercase().contains("not exist")
                || err.to_lowercase().contains("no such file")
                || err.to_lowercase().contains("not found"),
            "says why: {err}"
        );
    }
    // Without --config or PRINTBELL_CONFIG: ./notifier.toml, named as such.
    let (code, _, err) = cli_in(dir.path(), &["check"], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("notifier.toml"), "{err}");
}

// ---------------------------------------------------------------------------------------
// preview
// ---------------------------------------------------------------------------------------

/// A config whose Slack destination points at `slack_port` and Discord at port 9.
fn preview_config(slack_port: u16) -> Cfg {
    Cfg::new(&format!(
        r#"[server]
listen = "127.0.0.1:8080"

[store]
path = "{{dir}}/printbell.db"

[destinations.team-slack]
kind = "slack"
url = "http://127.0.0.1:{slack_port}/services/T0/B0/{SLACK_TOKEN}"

[destinations.oncall]
kind = "discord"
url = "http://127.0.0.1:9/api/webhooks/1/{DISCORD_TOKEN}"
username = "printbell"

[destinations.stdout]
kind = "console"

[[routes]]
tags = ["Marketing"]
events = ["print.completed", "print.failed"]
to = ["team-slack"]

[[routes]]
events = ["print.failed", "print.completed"]
to = ["oncall"]
mention = ["role:123456789012345678"]

[[routes]]
untagged = true
to = ["stdout"]
"#
    ))
}

/// The `== NAME (KIND) ==` blocks of a preview, with the JSON body that follows each.
fn preview_blocks(stdout: &str) -> Vec<(String, String, Value)> {
    let mut blocks = Vec::new();
    let mut offset = 0;
    for line in stdout.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let l = line.trim_end();
        let Some(header) = l.strip_prefix("== ").and_then(|h| h.strip_suffix(" ==")) else {
            continue;
        };
        let (name, kind) = header
            .rsplit_once(" (")
            .unwrap_or_else(|| panic!("header `{l}`"));
        let rest = &stdout[start + line.len()..];
        let body = serde_json::Deserializer::from_str(rest)
            .into_iter::<Value>()
            .next()
            .unwrap_or_else(|| panic!("no JSON after `{l}`"))
            .unwrap_or_else(|e| panic!("the body after `{l}` is not JSON: {e}\n{rest}"));
        blocks.push((
            name.to_string(),
            kind.trim_end_matches(')').to_string(),
            body,
        ));
    }
    blocks
}

/// A listener that counts connections, to prove nothing was contacted.
fn watched_port() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.set_nonblocking(true).expect("nonblocking");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

fn assert_untouched(l: &TcpListener) {
    match l.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok((_, from)) => panic!("preview connected to a webhook URL (from {from})"),
        Err(e) => panic!("accept: {e}"),
    }
}

#[test]
fn preview_and_send_test_leave_out_destinations_whose_secret_is_unset() {
    let cfg = Cfg::new(
        "[destinations.team]\nkind = \"slack\"\nurl = \"${PB_UNSET_SLACK_URL}\"\n[destinations.out]\nkind = \"console\"\n[[routes]]\nto = [\"team\", \"out\"]\n",
    );
    let (code, out, err) = cli(
        &["preview", "--config", cfg.p(), "--event", "print.created"],
        &[],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("destination `team` is left out") && err.contains("PB_UNSET_SLACK_URL"),
        "{err}"
    );
    let names: Vec<String> = preview_blocks(&out).into_iter().map(|b| b.0).collect();
    assert_eq!(names, ["out"], "{out}");
    // The destination whose secret is missing cannot be tested, and says why.
    let (code, _, err) = cli(&["send-test", "--config", cfg.p(), "--to", "team"], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--to team") && err.contains("PB_UNSET_SLACK_URL"),
        "{err}"
    );
    // serve's and check's rules stay strict.
    let (code, _, err) = cli(&["check", "--config", cfg.p()], &[]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn preview_says_why_each_route_did_not_take_the_event() {
    let cfg = preview_config(9);
    let (code, out, err) = cli(
        &["preview", "--config", cfg.p(), "--event", "print.created"],
        &[],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("route 1 does not take it: event type print.created is not in its events [print.completed, print.failed]"),
        "{out}"
    );
    assert!(
        out.contains("route 3 does not take it: it takes untagged generations only, and this one has tags [marketing, banners]"),
        "{out}"
    );
    // print.failed's sample is tagged `alerts`: route 1 wants Marketing.
    let (code, out, _) = cli(
        &["preview", "--config", cfg.p(), "--event", "print.failed"],
        &[],
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("route 1 does not take it: no tag in common: it wants any of [marketing], the generation has [alerts]"),
        "{out}"
    );
    assert!(
        !out.contains("route 2 does not take it"),
        "route 2 takes it: {out}"
    );
}

#[test]
fn preview_links_show_each_message_drawn_by_the_platform_without_secrets() {
    use base64::Engine;
    let (listener, port) = watched_port();
    let cfg = preview_config(port);
    let args = [
        "preview",
        "--config",
        cfg.p(),
        "--event",
        "print.completed",
        "--links",
    ];
    let (code, out, err) = cli(&args, &[]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_untouched(&listener);
    assert!(
        !out.contains(SLACK_TOKEN) && !out.contains(DISCORD_TOKEN),
        "{out}"
    );
    let blocks = preview_blocks(&out);
    let body = |name: &str| {
        blocks
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, b)| b.clone())
            .unwrap_or_else(|| panic!("no {name}:\n{out}"))
    };
    let link = |name: &str| -> String {
        let marker = format!("-- {name}: see it drawn: ");
        out.lines()
            .find_map(|l| l.strip_prefix(&marker))
            .unwrap_or_else(|| panic!("no link for {name}:\n{out}"))
            .to_string()
    };
    let slack = link("team-slack");
    let encoded = slack
        .strip_prefix("https://app.slack.com/block-kit-builder/#")
        .expect("Block Kit Builder link");
    let decoded = percent_encoding::percent_decode_str(encoded)
        .decode_utf8()
        .expect("utf-8");
    let shown: Value = serde_json::from_str(&decoded).expect("JSON");
    assert_eq!(shown, json!({"blocks": body("team-slack")["blocks"]}));

    let discord = link("oncall");
    let data = discord
        .strip_prefix("https://discohook.app/?data=")
        .expect("Discohook link");
    assert!(!data.contains('='), "unpadded");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(data)
        .expect("base64url");
    let shown: Value = serde_json::from_slice(&bytes).expect("JSON");
    assert_eq!(shown, json!({"messages": [{"data": body("oncall")}]}));
    assert!(shown.get("targets").is_none());
}

#[test]
fn preview_of_a_live_destination_shows_the_first_post_the_edit_and_the_ping() {
    let (listener, port) = watched_port();
    let cfg = preview_config(port);
    let (code, out, err) = cli(
        &["preview", "--config", cfg.p(), "--event", "print.failed"],
        &[],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_untouched(&listener);
    let json_after = |marker: &str| -> Value {
        let at = out
            .find(marker)
            .unwrap_or_else(|| panic!("no `{marker}` in:\n{out}"));
        let rest = &out[at..];
        let rest = &rest[rest.find('\n').expect("line end") + 1..];
        serde_json::Deserializer::from_str(rest)
            .into_iter::<Value>()
            .next()
            .expect("a JSON body")
            .expect("JSON")
    };
    // The first post pings the route's role and carries the webhook's identity.
    let first = json_after("== oncall (discord) ==");
    assert_eq!(first["username"], "printbell");
    assert_eq!(
        first["allowed_mentions"]["roles"],
        json!(["123456789012345678"])
    );
    // An edit changes what the message shows, never who posted it, and pings nobody.
    let edit = json_after("-- oncall: live mode");
    assert!(
        edit.get("username").is_none() && edit.get("content").is_none(),
        "{edit}"
    );
    assert_eq!(edit["allowed_mentions"], json!({"parse": []}));
    assert_eq!(edit["embeds"][0]["color"], 0xE74C3C);
    // A failure that edits an existing message pages the role in a message of its own.
    let ping = json_after("-- oncall: and when this failure edits");
    assert_eq!(
        ping["allowed_mentions"]["roles"],
        json!(["123456789012345678"])
    );
    assert!(ping["content"]
        .as_str()
        .is_some_and(|c| c.starts_with("<@&123456789012345678>")));
    // Slack's incoming webhook cannot edit: one body, no edit section.
    assert!(!out.contains("-- team-slack:"), "{out}");
}

#[test]
fn preview_of_a_built_in_sample_shows_each_destination_and_its_exact_body() {
    let (listener, port) = watched_port();
    let cfg = preview_config(port);
    let (code, out, err) = cli(
        &["preview", "--config", cfg.p(), "--event", "print.completed"],
        &[],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_untouched(&listener);
    let blocks = preview_blocks(&out);
    let names: Vec<(&str, &str)> = blocks
        .iter()
        .map(|(n, k, _)| (n.as_str(), k.as_str()))
        .collect();
    assert_eq!(
        names,
        [("team-slack", "slack"), ("oncall", "discord")],
        "{out}"
    );

    let slack = &blocks[0].2;
    assert_eq!(slack["text"], "Autumn forest banner is ready (4 images)");
    let blocks_of = |ty: &str| -> Vec<Value> {
        slack["blocks"]
            .as_array()
            .expect("blocks")
            .iter()
            .filter(|b| b["type"] == ty)
            .cloned()
            .collect()
    };
    assert_eq!(blocks_of("header").len(), 1);
    let images = blocks_of("image");
    assert_eq!(images.len(), 4, "{slack:#}");
    for (i, img) in images.iter().enumerate() {
        assert_eq!(
            img["image_url"],
            format!(
                "https://cdn.example-images.test/prints/6567a1f2/{}.png",
                i + 1
            )
        );
        assert!(img["alt_text"].as_str().is_some_and(|s| !s.is_empty()));
    }
    assert_eq!(blocks_of("context").len(), 1);

    let discord = &blocks[1].2;
    assert_eq!(
        discord["allowed_mentions"],
        json!({"parse": [], "roles": ["123456789012345678"]})
    );
    assert!(
        discord["content"]
            .as_str()
            .is_some_and(|c| c.contains("<@&123456789012345678>")),
        "{discord:#}"
    );
    assert_eq!(discord["username"], "printbell");
    let embeds = discord["embeds"].as_array().expect("embeds");
    assert_eq!(embeds.len(), 4, "{discord:#}");
    assert_eq!(embeds[0]["color"], 0x2ECC71);
    assert_eq!(
        embeds[0]["image"]["url"],
        "https://cdn.example-images.test/prints/6567a1f2/1.png"
    );
    assert!(embeds.iter().all(|e| e["url"] == embeds[0]["url"]));

    for secret in [SLACK_TOKEN, DISCORD_TOKEN] {
        assert!(!out.contains(secret) && !err.contains(secret));
    }
}

#[test]
fn preview_of_an_event_file() {
    let (listener, port) = watched_port();
    let cfg = preview_config(port);
    let mut ev = testkit::fixture("print.failed");
    ev["id"] = json!("evt_cli_preview");
    ev["data"]["tags"] = json!([]);
    ev["data"]["prompt"] = json!("ping <!channel> and @everyone");
    let file = cfg.dir.path().join("event.json");
    std::fs::write(&file, ev.to_string()).expect("write event");
    let (code, out, err) = cli(
        &[
            "preview",
            "--config",
            cfg.p(),
            "--event",
            file.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_untouched(&listener);
    assert!(out.contains("evt_cli_preview"), "{out}");
    let blocks = preview_blocks(&out);
    let names: Vec<&str> = blocks.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["oncall", "stdout"],
        "untagged failure: not Slack\n{out}"
    );
    let discord = &blocks[0].2;
    assert_eq!(discord["embeds"][0]["color"], 0xE74C3C, "{discord:#}");
    assert_eq!(
        discord["allowed_mentions"]["parse"],
        json!([]),
        "{discord:#}"
    );
    let console = &blocks[1].2;
    assert_eq!(console["event"], "print.failed");
}

#[test]
fn preview_says_when_an_event_reaches_nothing() {
    let cfg = preview_config(9);
    // print.created with tags: no route asks for it.
    let (code, out, err) = cli(
        &["preview", "--config", cfg.p(), "--event", "print.created"],
        &[],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(preview_blocks(&out).is_empty(), "{out}");
    let lower = out.to_lowercase();
    assert!(
        lower.contains("0 destination")
            || lower.contains("no destination")
            || lower.contains("nothing"),
        "{out}"
    );
}

#[test]
fn preview_of_a_bad_event_is_one_clear_sentence() {
    let cfg = preview_config(9);
    let (code, out, err) = cli(
        &["preview", "--config", cfg.p(), "--event", "nonsense"],
        &[],
    );
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("nonsense"), "{err}");
    assert!(
        err.contains("print.completed"),
        "lists the known types: {err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");

    let file = cfg.dir.path().join("broken.json");
    std::fs::write(&file, "{\"id\": \"x\", \"type\": \"print.completed\"").expect("write");
    let (code, _, err) = cli(
        &[
            "preview",
            "--config",
            cfg.p(),
            "--event",
            file.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");

    std::fs::write(&file, "{\"id\": \"x\", \"type\": \"print.completed\"}").expect("write");
    let (code, _, err) = cli(
        &[
            "preview",
            "--config",
            cfg.p(),
            "--event",
            file.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("data"), "names the missing field: {err}");
}

#[test]
fn preview_refuses_an_invalid_config() {
    let cfg = Cfg::new("[[routes]]\nto = [\"nowhere\"]\n");
    let (code, out, err) = cli(&["preview", "--config", cfg.p()], &[]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let all = problems(&err, &cfg.path);
    let p = problem(&all, &["nowhere"], &err);
    assert_eq!(p.line, 2);
}

// ---------------------------------------------------------------------------------------
// deliveries
// ---------------------------------------------------------------------------------------

const HOUR_MS: i64 = 3_600_000;

/// The ids seeded by [`seed_store`].
struct Seeded {
    /// pending, received two hours ago
    old_pending: i64,
    /// dead two hours ago (404)
    old_dead: i64,
    /// done two hours ago
    old_done: i64,
    /// dead just now (network error)
    new_dead: i64,
}

fn nd(destination: &str, kind: &str, event_type: &str) -> NewDelivery {
    NewDelivery {
        event_type: event_type.into(),
        generation_id: "6567a1f2c3b4d5e6f7a8b9c0".into(),
        destination: destination.into(),
        kind: kind.into(),
        body: "{\"text\":\"hi\"}".into(),
    }
}

fn seed_store(path: &Path) -> Seeded {
    let store = Seeder::open(path);
    let old = testkit::store::now_ms() - 2 * HOUR_MS;
    let ids = store
        .accept(
            "evt_cli_old",
            &[
                nd("team-slack", "slack", "print.created"),
                nd("oncall", "discord", "print.failed"),
                nd("team-slack", "slack", "print.completed"),
            ],
            old,
        )
        .unwrap_or_else(|| panic!("fresh store"));
    store.mark_dead(ids[1], Some(404), "Unknown Webhook", old);
    store.mark_done(ids[2], 200, old);
    let now = testkit::store::now_ms();
    let new = store
        .accept(
            "evt_cli_new",
            &[nd("oncall", "discord", "print.failed")],
            now,
        )
        .unwrap_or_else(|| panic!("fresh id"));
    store.mark_dead(new[0], None, "could not connect: connection refused", now);
    Seeded {
        old_pending: ids[0],
        old_dead: ids[1],
        old_done: ids[2],
        new_dead: new[0],
    }
}

/// (id, state) of every delivery in the store, by id.
fn states(store: &Path) -> Vec<(i64, String)> {
    let mut all: Vec<(i64, String)> = testkit::store::deliveries(store)
        .into_iter()
        .map(|d| (d.id, d.state))
        .collect();
    all.sort();
    all
}

/// The rows of a `deliveries list` table, split into columns by whitespace
/// (LAST ERROR, the last column, is joined back).
fn table(out: &str) -> (String, Vec<Vec<String>>) {
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().unwrap_or_default().to_string();
    let rows = lines
        .map(|l| {
            let cols: Vec<String> = l.split_whitespace().map(String::from).collect();
            let mut row: Vec<String> = cols.iter().take(7).cloned().collect();
            row.push(cols.iter().skip(7).cloned().collect::<Vec<_>>().join(" "));
            row
        })
        .collect();
    (header, rows)
}

fn store_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("printbell.db");
    (dir, store)
}

#[test]
fn deliveries_show_and_list_json_tell_everything_stored() {
    let (_dir, store) = store_dir();
    let s = seed_store(&store);
    let st = store.to_str().expect("utf-8");
    let (code, out, err) = cli(
        &["deliveries", "--store", st, "show", &s.old_dead.to_string()],
        &[],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for want in [
        format!("delivery {} to oncall", s.old_dead),
        "event evt_cli_old (print.failed)".to_string(),
        "state dead, 1 attempt(s)".to_string(),
        "last error: 404 Unknown Webhook".to_string(),
        "\"text\": \"hi\"".to_string(),
    ] {
        assert!(out.contains(&want), "no `{want}` in:\n{out}");
    }
    let (code, _, err) = cli(&["deliveries", "--store", st, "show", "424242"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("no delivery with id 424242"), "{err}");

    let (code, out, err) = cli(&["deliveries", "--store", st, "list", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let all: Value = serde_json::from_str(&out).expect("JSON");
    let rows = all.as_array().expect("array");
    assert_eq!(rows.len(), 4, "{out}");
    let done = rows
        .iter()
        .find(|r| r["id"] == s.old_done)
        .expect("done row");
    assert_eq!(done["state"], "done");
    assert_eq!(done["event_id"], "evt_cli_old");
    assert!(done["received_at"]
        .as_str()
        .is_some_and(|t| t.contains('T')));

    // The table shows the event id and when it was received, and a 200 is not an error.
    let (_, out, _) = cli(&["deliveries", "--store", st, "list"], &[]);
    let header = out.lines().next().expect("header");
    assert!(
        header.contains("EVENT ID") && header.contains("RECEIVED"),
        "{header}"
    );
    let done_line = out
        .lines()
        .find(|l| l.starts_with(&format!("{} ", s.old_done)))
        .expect("done line");
    assert!(done_line.contains("evt_cli_old"), "{done_line}");
    assert!(
        !done_line.contains(" 200 "),
        "a success shown as an error: {done_line}"
    );
}

#[test]
fn deliveries_list_shows_the_queue_as_a_table() {
    let (_dir, store) = store_dir();
    let s = seed_store(&store);
    let st = store.to_str().expect("utf-8");
    let (code, out, err) = cli(&["deliveries", "--store", st, "list"], &[]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let (header, rows) = table(&out);
    let columns = [
        "ID",
        "DESTINATION",
        "EVENT",
        "GENERATION",
        "STATE",
        "ATTEMPTS",
        "NEXT ATTEMPT",
        "LAST ERROR",
    ];
    let mut at = 0;
    for c in columns {
        let i = header[at..]
            .find(c)
            .unwrap_or_else(|| panic!("column {c} missing or out of order: {header}"));
        at += i + c.len();
    }
    assert_eq!(rows.len(), 4, "{out}");
    let row = |id: i64| {
        rows.iter()
            .find(|r| r[0] == id.to_string())
            .unwrap_or_else(|| panic!("no row {id}:\n{out}"))
    };
    let r = row(s.old_dead);
    assert_eq!(r[1], "oncall");
    assert_eq!(r[2], "print.failed");
    assert_eq!(r[3], "6567a1f2c3b4d5e6f7a8b9c0");
    assert_eq!(r[4], "dead");
    assert_eq!(r[5], "1");
    assert!(
        r[7].contains("404") && r[7].contains("Unknown Webhook"),
        "{r:?}"
    );
    let r = row(s.old_pending);
    assert_eq!(r[4], "pending");
    assert!(
        r[6].contains('T') && r[6].len() >= 19,
        "next attempt is a time: {r:?}"
    );
    assert_eq!(row(s.old_done)[4], "done");
    assert!(row(s.new_dead)[7].contains("connection refused"));

    let (code, out, err) = cli(
        &["deliveries", "--store", st, "list", "--state", "dead"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let (_, rows) = table(&out);
    let mut ids: Vec<i64> = rows.iter().map(|r| r[0].parse().expect("id")).collect();
    ids.sort();
    assert_eq!(ids, [s.old_dead, s.new_dead], "{out}");
    assert!(rows.iter().all(|r| r[4] == "dead"));

    let (code, out, _) = cli(
        &["deliveries", "--store", st, "list", "--state", "pending"],
        &[],
    );
    assert_eq!(code, 0);
    let (_, rows) = table(&out);
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0][0], s.old_pending.to_string());

    let (code, out, err) = cli(
        &["deliveries", "--store", st, "list", "--state", "zombie"],
        &[],
    );
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("zombie"), "{err}");
}

#[test]
fn deliveries_retry_of_a_delivered_message_needs_force() {
    let (_dir, store) = store_dir();
    let s = seed_store(&store);
    let st = store.to_str().expect("utf-8");
    let done = s.old_done.to_string();
    let (code, out, err) = cli(&["deliveries", "--store", st, "retry", &done], &[]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("already delivered") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        states(&store)
            .into_iter()
            .find(|(id, _)| *id == s.old_done)
            .map(|(_, st)| st),
        Some("done".to_string()),
        "refused: nothing changed"
    );
    let (code, out, err) = cli(
        &["deliveries", "--store", st, "retry", &done, "--force"],
        &[],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(states(&store).contains(&(s.old_done, "pending".to_string())));
}

#[test]
fn a_log_level_that_is_not_one_is_an_error() {
    let cfg = preview_config(9);
    for (args, envs, named) in [
        (
            vec!["--log-level", "verbose", "check"],
            vec![],
            "--log-level",
        ),
        (
            vec!["check"],
            vec![("RUST_LOG", "printbell=loud")],
            "RUST_LOG",
        ),
    ] {
        let mut args = args.clone();
        args.extend(["--config", cfg.p()]);
        let (code, out, err) = cli(&args, &envs);
        assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
        assert!(err.contains(named) && err.contains("not a log"), "{err}");
    }
    let mut args = vec!["--log-level", "debug", "check", "--config"];
    args.push(cfg.p());
    assert_eq!(cli(&args, &[]).0, 0, "a real level is fine");
}

#[test]
fn errors_name_the_environment_variable_they_come_from() {
    let cfg = preview_config(9);
    let (code, _, err) = cli(
        &["check", "--config", cfg.p()],
        &[("PRINTBELL_LISTEN", "8080")],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("environment variable PRINTBELL_LISTEN = \"8080\""),
        "{err}"
    );
    assert!(
        !err.contains(":2:"),
        "not blamed on the file's listen line: {err}"
    );

    let empty = Cfg::new(
        "[destinations.team]\nkind = \"slack\"\nurl = \"${SLACK_WEBHOOK_URL}\"\n[[routes]]\nto = [\"team\"]\n",
    );
    let (code, _, err) = cli(
        &["check", "--config", empty.p()],
        &[("SLACK_WEBHOOK_URL", "")],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("SLACK_WEBHOOK_URL is set to an empty string"),
        "{err}"
    );
    assert!(!err.contains("relative URL"), "{err}");
}

#[test]
fn deliveries_retry_puts_a_delivery_back_in_its_lane() {
    let (_dir, store) = store_dir();
    let s = seed_store(&store);
    let st = store.to_str().expect("utf-8");
    let (code, out, err) = cli(
        &[
            "deliveries",
            "--store",
            st,
            "retry",
            &s.old_dead.to_string(),
        ],
        &[],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains(&s.old_dead.to_string()), "{out}");
    let d = testkit::store::deliveries(&store)
        .into_iter()
        .find(|d| d.id == s.old_dead)
        .expect("row");
    assert_eq!(d.state, "pending");
    assert_eq!(d.attempts, 0, "a fresh series of attempts");
    let (_, out, _) = cli(
        &["deliveries", "--store", st, "list", "--state", "pending"],
        &[],
    );
    assert!(
        table(&out).1.iter().any(|r| r[0] == s.old_dead.to_string()),
        "{out}"
    );

    let (code, out, err) = cli(&["deliveries", "--store", st, "retry", "999999"], &[]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("999999"), "{err}");

    let (code, _, err) = cli(&["deliveries", "--store", st, "retry"], &[]);
    assert_eq!(code, 1, "neither an id nor --all-dead: {err}");
    // Rejected by the argument parser. SPEC §1 wants 1 for invalid input; clap's own usage
    // errors exit 2 (main.rs), so only "not success" is checked here.
    let (code, _, err) = cli(&["deliveries", "--store", st, "retry", "banana"], &[]);
    assert_ne!(code, 0, "not an id: {err}");
    assert!(err.contains("banana"), "{err}");

    let (code, out, err) = cli(&["deliveries", "--store", st, "retry", "--all-dead"], &[]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains('1'), "one dead delivery was left: {out}");
    assert_eq!(
        states(&store),
        [
            (s.old_pending, "pending".to_string()),
            (s.old_dead, "pending".to_string()),
            (s.old_done, "done".to_string()),
            (s.new_dead, "pending".to_string()),
        ]
    );
}

#[test]
fn deliveries_purge_removes_old_done_and_dead_never_pending() {
    let (_dir, store) = store_dir();
    let s = seed_store(&store);
    let st = store.to_str().expect("utf-8");
    let (code, out, err) = cli(
        &["deliveries", "--store", st, "purge", "--older-than", "1h"],
        &[],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains('2'), "says how many: {out}");
    assert_eq!(
        states(&store),
        [
            (s.old_pending, "pending".to_string()),
            (s.new_dead, "dead".to_string()),
        ]
    );

    let (code, out, err) = cli(
        &["deliveries", "--store", st, "purge", "--older-than", "0s"],
        &[],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(
        states(&store),
        [(s.old_pending, "pending".to_string())],
        "pending deliveries are never purged"
    );
    let events = testkit::store::event_count(&store);
    assert_eq!(
        events, 2,
        "event ids stay for the 7-day duplicate window, so a redelivered event is not sent again"
    );

    let (code, out, err) = cli(
        &[
            "deliveries",
            "--store",
            st,
            "purge",
            "--older-than",
            "banana",
        ],
        &[],
    );
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("banana"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(states(&store).len(), 1);
}

#[test]
fn deliveries_find_the_store_from_the_config() {
    let (dir, store) = store_dir();
    let s = seed_store(&store);
    let cfg = Cfg::in_dir(
        dir,
        "[store]\npath = \"{dir}/printbell.db\"\n\n[destinations.stdout]\nkind = \"console\"\n",
    );
    let (code, out, err) = cli(&["deliveries", "--config", cfg.p(), "list"], &[]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(table(&out).1.len(), 4, "{out}");
    // Via $PRINTBELL_CONFIG as well.
    let (code, out, err) = cli(
        &["deliveries", "list", "--state", "done"],
        &[("PRINTBELL_CONFIG", cfg.p())],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let (_, rows) = table(&out);
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0][0], s.old_done.to_string());
}

#[test]
fn deliveries_on_a_missing_store_is_one_clear_sentence() {
    let (_dir, store) = store_dir();
    let st = store.to_str().expect("utf-8");
    for action in [
        vec!["list"],
        vec!["retry", "1"],
        vec!["purge", "--older-than", "1d"],
    ] {
        let mut args = vec!["deliveries", "--store", st];
        args.extend(action.iter().copied());
        let (code, out, err) = cli(&args, &[]);
        assert_eq!(code, 1, "{args:?}\nstdout:\n{out}\nstderr:\n{err}");
        assert!(err.contains(st), "names the store: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!store.exists(), "a read command does not create the store");
    }
}

// ---------------------------------------------------------------------------------------
// healthcheck
// ---------------------------------------------------------------------------------------

/// A tiny HTTP server answering every request with `status`; records request lines.
fn tiny_server(status: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let text = String::from_utf8_lossy(&buf);
            if let Ok(mut l) = log.lock() {
                l.push(text.lines().next().unwrap_or_default().to_string());
            }
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
            );
        }
    });
    (port, seen)
}

#[test]
fn healthcheck_is_0_on_200_and_1_otherwise() {
    let (port, seen) = tiny_server("200 OK");
    let url = format!("http://127.0.0.1:{port}/healthz");
    let (code, out, err) = cli(&["healthcheck", "--url", &url], &[]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(
        seen.lock().expect("lock").as_slice(),
        ["GET /healthz HTTP/1.1"]
    );

    let (port, _) = tiny_server("503 Service Unavailable");
    let url = format!("http://127.0.0.1:{port}/healthz");
    let (code, _, err) = cli(&["healthcheck", "--url", &url], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("503"), "{err}");

    let closed = testkit::free_port();
    let url = format!("http://127.0.0.1:{closed}/healthz");
    let (code, _, err) = cli(&["healthcheck", "--url", &url], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&url), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn healthcheck_defaults_to_the_configured_port() {
    let (port, seen) = tiny_server("200 OK");
    let cfg = Cfg::new(&format!(
        "[server]\nlisten = \"0.0.0.0:{port}\"\nsecret = \"s\"\n\n[destinations.stdout]\nkind = \"console\"\n"
    ));
    let (code, out, err) = cli(&["healthcheck", "--config", cfg.p()], &[]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(
        seen.lock().expect("lock").as_slice(),
        ["GET /healthz HTTP/1.1"]
    );

    // PRINTBELL_LISTEN overrides the file, as for `serve`.
    let closed = testkit::free_port();
    let cfg = Cfg::new(&format!(
        "[server]\nlisten = \"127.0.0.1:{closed}\"\n\n[destinations.stdout]\nkind = \"console\"\n"
    ));
    let listen = format!("127.0.0.1:{port}");
    let (code, _, err) = cli(
        &["healthcheck", "--config", cfg.p()],
        &[("PRINTBELL_LISTEN", &listen)],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(&["healthcheck", "--config", cfg.p()], &[]);
    assert_eq!(code, 1, "nothing listens on the configured port: {err}");
}

// ---------------------------------------------------------------------------------------
// help
// ---------------------------------------------------------------------------------------

#[test]
fn help_lists_the_subcommands() {
    let (code, out, err) = cli(&["--help"], &[]);
    assert_eq!(code, 0, "{err}");
    let commands: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for c in [
        "serve",
        "check",
        "preview",
        "send-test",
        "deliveries",
        "subscribe",
        "unsubscribe",
        "healthcheck",
    ] {
        assert!(commands.contains(&c), "`{c}` missing from --help:\n{out}");
    }
    let (code, out, _) = cli(&["deliveries", "--help"], &[]);
    assert_eq!(code, 0);
    for c in ["list", "retry", "purge"] {
        assert!(out.contains(c), "{out}");
    }
    let (code, out, _) = cli(&["deliveries", "retry", "--help"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("--all-dead"), "{out}");
    let (code, out, _) = cli(&["preview", "--help"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("--event"), "{out}");

    let (code, _, err) = cli(&["frobnicate"], &[]);
    assert_ne!(code, 0, "{err}");
}

#[test]
fn check_refuses_templates_that_cannot_render_or_would_skip_escaping() {
    let cfg = Cfg::new(
        r#"[destinations.stdout]
kind = "console"

[[routes]]
to = ["stdout"]

[templates."print.failed"]
title = "{{ generation.prompt | safe }}"
text = "{{ generation.nope.deeper }}"
"#,
    );
    let (code, out, err) = cli(&["check", "--config", cfg.p()], &[]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let all = problems(&err, &cfg.path);
    let p = problem(&all, &["print.failed", "title", "safe"], &err);
    assert_eq!(p.line, cfg.line_of("| safe"), "{err}");
    problem(&all, &["print.failed", "text", "undefined"], &err);
    assert_eq!(all.len(), 2, "{err}");
}

#[test]
fn check_warns_when_no_secret_guards_a_public_listener() {
    let cfg = Cfg::new("[server]\nlisten = \"0.0.0.0:8080\"\n[destinations.o]\nkind = \"console\"\n[[routes]]\nto = [\"o\"]\n");
    let (code, out, err) = cli(&["check", "--config", cfg.p()], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("warning: server.secret is not set"), "{out}");
    let cfg = Cfg::new("[server]\nlisten = \"127.0.0.1:8080\"\n[destinations.o]\nkind = \"console\"\n[[routes]]\nto = [\"o\"]\n");
    let (_, out, _) = cli(&["check", "--config", cfg.p()], &[]);
    assert!(!out.contains("warning"), "{out}");
}
