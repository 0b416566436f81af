//! Slack's Web API with a bot token: `chat.postMessage` posts, `chat.update` edits, a thread
//! reply with `reply_broadcast` pings. Slack answers HTTP 200 with `{"ok": false, "error":
//! CODE}` for most failures, so the code decides, not the status.

use super::super::http::{self, header_f64, secs};
use super::super::{Action, Answer, Outcome};
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use serde_json::{json, Map, Value};

/// Where a bot token posts.
pub struct Api<'a> {
    pub base: &'a Url,
    pub token: &'a str,
    pub channel: &'a str,
}

/// A posted message: Slack names it by channel id and `ts`.
pub fn message_ref(channel: &str, ts: &str) -> String {
    format!("{channel} {ts}")
}

fn split_ref(message: &str) -> Option<(&str, &str)> {
    message.split_once(' ')
}

/// The method and the JSON body for an action on a stored body (`text`, `blocks`, …).
pub fn request(
    api: &Api<'_>,
    action: &Action<'_>,
    stored: &str,
) -> Result<(&'static str, Value), Outcome> {
    let stored: Map<String, Value> =
        serde_json::from_str(stored).map_err(|e| Outcome::Permanent {
            status: None,
            error: format!("stored body is not a JSON object: {e}"),
        })?;
    let field = |k: &str| stored.get(k).cloned().unwrap_or(Value::Null);
    let bad_ref = |m: &str| Outcome::Permanent {
        status: None,
        error: format!("stored Slack message reference `{m}` is not `CHANNEL TS`"),
    };
    Ok(match action {
        Action::Post | Action::Repost => {
            let mut body = stored.clone();
            body.insert("channel".into(), json!(api.channel));
            ("chat.postMessage", Value::Object(body))
        }
        Action::Edit { message } => {
            let (channel, ts) = split_ref(message).ok_or_else(|| bad_ref(message))?;
            (
                "chat.update",
                json!({"channel": channel, "ts": ts, "text": field("text"), "blocks": field("blocks")}),
            )
        }
        Action::Ping { message } => {
            let (channel, ts) = split_ref(message).ok_or_else(|| bad_ref(message))?;
            (
                "chat.postMessage",
                json!({
                    "channel": channel,
                    "thread_ts": ts,
                    "reply_broadcast": true,
                    "text": field("text"),
                    "unfurl_links": false,
                    "unfurl_media": false,
                }),
            )
        }
    })
}

/// Calls the method for an action.
pub async fn send(
    client: &reqwest::Client,
    api: &Api<'_>,
    action: &Action<'_>,
    stored: &str,
) -> Answer {
    let (method, body) = match request(api, action, stored) {
        Ok(r) => r,
        Err(outcome) => return Answer::of(outcome),
    };
    let Ok(url) = api.base.join(method) else {
        return Answer::of(Outcome::Permanent {
            status: None,
            error: format!("api_url cannot be joined with {method}"),
        });
    };
    let sent = client
        .post(url)
        .header(AUTHORIZATION, format!("Bearer {}", api.token))
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .body(body.to_string())
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => {
            return Answer::of(Outcome::Retry {
                status: None,
                error: http::describe_error(&e),
            })
        }
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    Answer::of(classify(status, &headers, &text, api.channel))
}

/// Error codes that no retry can fix: the token, the channel or the payload is wrong.
const PERMANENT: [&str; 20] = [
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "no_permission",
    "missing_scope",
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "restricted_action",
    "msg_too_long",
    "no_text",
    "invalid_blocks",
    "invalid_arguments",
    "invalid_arg_name",
    "invalid_charset",
    "invalid_json",
    "edit_window_closed",
    "team_access_not_granted",
];

/// Codes Slack documents as transient.
const TRANSIENT: [&str; 4] = [
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// Turns a Web API answer into an [`Outcome`]; `channel`: the configured channel, used when
/// the answer does not name one.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &str, channel: &str) -> Outcome {
    let code = status.as_u16();
    let json: Option<Value> = serde_json::from_str(body).ok();
    let error = json
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let wait = || secs(header_f64(headers, "retry-after").unwrap_or(1.0));
    if status == StatusCode::TOO_MANY_REQUESTS
        || matches!(error.as_deref(), Some("ratelimited" | "rate_limited"))
    {
        return Outcome::RateLimited {
            status: code,
            wait: wait(),
            global: false,
        };
    }
    let ok = json
        .as_ref()
        .and_then(|v| v.get("ok"))
        .and_then(Value::as_bool);
    if status.is_success() && ok == Some(true) {
        let v = json.unwrap_or_default();
        let channel = v.get("channel").and_then(Value::as_str).unwrap_or(channel);
        let message_id = v
            .get("ts")
            .and_then(Value::as_str)
            .map(|ts| message_ref(channel, ts));
        return Outcome::Done {
            status: code,
            message_id,
        };
    }
    match error {
        Some(e) if e == "message_not_found" || e == "cant_update_message" => Outcome::Gone {
            status: code,
            error: e,
        },
        Some(e) if TRANSIENT.contains(&e.as_str()) => Outcome::Retry {
            status: Some(code),
            error: e,
        },
        Some(e) if PERMANENT.contains(&e.as_str()) || status.is_success() => Outcome::Permanent {
            status: Some(code),
            error: e,
        },
        Some(e) => http::failure(status, e),
        None if status.is_success() => Outcome::Retry {
            status: Some(code),
            error: "Slack answered without `ok`".into(),
        },
        None => http::failure(status, http::plain_error(body)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn ok(body: &str) -> Outcome {
        classify(StatusCode::OK, &HeaderMap::new(), body, "C1")
    }

    #[test]
    fn the_error_code_decides_not_the_status() {
        assert_eq!(
            ok(r#"{"ok": true, "channel": "C9", "ts": "1.2"}"#),
            Outcome::Done {
                status: 200,
                message_id: Some("C9 1.2".into())
            }
        );
        assert!(matches!(
            ok(r#"{"ok": false, "error": "invalid_auth"}"#),
            Outcome::Permanent { ref error, .. } if error == "invalid_auth"
        ));
        assert!(matches!(
            ok(r#"{"ok": false, "error": "message_not_found"}"#),
            Outcome::Gone { .. }
        ));
        assert!(matches!(
            ok(r#"{"ok": false, "error": "internal_error"}"#),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            ok(r#"{"ok": false, "error": "something_new"}"#),
            Outcome::Permanent { .. }
        ));
    }

    #[test]
    fn rate_limits_wait_retry_after() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        let o = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            r#"{"ok": false, "error": "ratelimited"}"#,
            "C1",
        );
        assert!(
            matches!(o, Outcome::RateLimited { wait, .. } if wait.as_secs() == 2),
            "{o:?}"
        );
        let o = classify(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new(), "", "C1");
        assert!(matches!(
            o,
            Outcome::Retry {
                status: Some(503),
                ..
            }
        ));
    }

    #[test]
    fn an_update_names_the_message_and_keeps_the_blocks() {
        let base = Url::parse("http://127.0.0.1:1/api/").expect("url");
        let api = Api {
            base: &base,
            token: "xoxb-1",
            channel: "C1",
        };
        let stored = r#"{"text": "t", "blocks": [{"type": "divider"}], "unfurl_links": false}"#;
        let (method, body) =
            request(&api, &Action::Edit { message: "C1 1.5" }, stored).expect("request");
        assert_eq!(method, "chat.update");
        assert_eq!(
            body,
            json!({"channel": "C1", "ts": "1.5", "text": "t", "blocks": [{"type": "divider"}]})
        );
        let (method, body) =
            request(&api, &Action::Ping { message: "C1 1.5" }, stored).expect("request");
        assert_eq!(method, "chat.postMessage");
        assert_eq!(body["thread_ts"], "1.5");
        assert_eq!(body["reply_broadcast"], true);
        let (_, body) = request(&api, &Action::Post, stored).expect("request");
        assert_eq!(body["channel"], "C1");
        assert_eq!(body["unfurl_links"], false);
    }
}
