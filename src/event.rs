//! The all-images.ai event model and its tolerant parser.
//!
//! The sender is loose (numbers as strings, `null` lists), so parsing is done by hand from a
//! `serde_json::Value`: unknown fields are ignored, optional lists may be absent or null, and
//! every rejection names the field at fault in one sentence.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

use crate::domain::{EventType, Rank};

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    /// `None` for a type all-images.ai may add later: accepted, routed nowhere.
    pub event_type: Option<EventType>,
    /// `type` as sent (templates and logs show it).
    pub type_name: String,
    pub api_version: Option<f64>,
    /// Unix seconds.
    pub created: Option<f64>,
    pub generation: Generation,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub id: String,
    pub name: Option<String>,
    pub prompt: Option<String>,
    pub status: Option<i64>,
    /// `params: [{name, value}]` as a map; later duplicates win.
    pub params: BTreeMap<String, Value>,
    pub images: Vec<Image>,
    pub nb_images: Option<u64>,
    pub tags: Vec<String>,
    pub metadata: Map<String, Value>,
    pub created_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub id: Option<String>,
    pub url: Option<String>,
    /// The English title when there is one, else any title.
    pub title: Option<String>,
}

impl Generation {
    /// Status names from all-images.ai's lifecycle page.
    pub fn status_name(&self) -> Option<&'static str> {
        Some(match self.status? {
            0 => "Create",
            1 => "Pending",
            2 => "Processing",
            3 => "Done",
            4 => "Error",
            _ => return None,
        })
    }

    /// `{done, total}`: images delivered so far, and images requested (never less than done).
    pub fn progress(&self) -> (u64, u64) {
        let done = self.images.len() as u64;
        let total = self.nb_images.unwrap_or(done).max(done);
        (done, total)
    }
}

impl Event {
    /// Where this event stands in its generation's story; `None` for an unknown type.
    pub fn rank(&self) -> Option<Rank> {
        let (done, _) = self.generation.progress();
        self.event_type.map(|t| t.rank(done))
    }
}

/// Why an event body was rejected; `Display` is the sentence sent back to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(msg.into()))
}

/// Parses a raw webhook body.
pub fn parse(body: &[u8]) -> Result<Event, ParseError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return err("the request body is empty; expected a JSON event object");
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ParseError("the request body is not valid UTF-8".into()))?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let what = if e.is_eof() {
            "the JSON ends too early"
        } else if e.to_string().contains("recursion limit") {
            "the JSON is nested too deeply"
        } else {
            "it is not valid JSON"
        };
        ParseError(format!(
            "the request body could not be read: {what} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    from_value(&value)
}

/// Builds an [`Event`] from parsed JSON.
pub fn from_value(value: &Value) -> Result<Event, ParseError> {
    let Some(root) = value.as_object() else {
        return err(format!(
            "the request body must be a JSON object, not {}",
            kind_of(value)
        ));
    };
    let id = required_string(root, "id", "id")?;
    let type_name = required_string(root, "type", "type")?;
    let api_version = optional_number(root, "api_version", "api_version")?;
    let created = optional_number(root, "created", "created")?;
    let data = match root.get("data") {
        Some(Value::Object(d)) => d,
        None | Some(Value::Null) => {
            return err("field `data` is missing; it holds the image generation")
        }
        Some(v) => {
            return err(format!(
                "field `data` must be an object, not {}",
                kind_of(v)
            ))
        }
    };
    let generation = Generation {
        id: required_string(data, "id", "data.id")?,
        name: optional_string(data, "name", "data.name")?,
        prompt: optional_string(data, "prompt", "data.prompt")?,
        status: optional_number(data, "status", "data.status")?.map(|n| n as i64),
        params: params(data)?,
        images: images(data)?,
        nb_images: match optional_number(data, "nbImages", "data.nbImages")? {
            Some(n) if n >= 0.0 => Some(n as u64),
            Some(_) => return err("field `data.nbImages` must not be negative"),
            None => None,
        },
        tags: tags(data)?,
        metadata: match data.get("metaData") {
            None | Some(Value::Null) => Map::new(),
            // PHP encodes an empty map as `[]`.
            Some(Value::Array(a)) if a.is_empty() => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(v) => {
                return err(format!(
                    "field `data.metaData` must be an object, not {}",
                    kind_of(v)
                ))
            }
        },
        created_at: optional_string(data, "createdAt", "data.createdAt")?,
    };
    Ok(Event {
        id,
        event_type: EventType::parse(&type_name),
        type_name,
        api_version,
        created,
        generation,
    })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn required_string(obj: &Map<String, Value>, key: &str, path: &str) -> Result<String, ParseError> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => err(format!("field `{path}` is empty")),
        // Ids are strings upstream; a numeric one is still unambiguous.
        Some(Value::Number(n)) if key == "id" => Ok(n.to_string()),
        None | Some(Value::Null) => err(format!("field `{path}` is missing")),
        Some(v) => err(format!(
            "field `{path}` must be a string, not {}",
            kind_of(v)
        )),
    }
}

fn optional_string(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<String>, ParseError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => err(format!(
            "field `{path}` must be a string, not {}",
            kind_of(v)
        )),
    }
}

/// A number, or a string holding one (the sender is not consistent).
fn optional_number(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<f64>, ParseError> {
    let n = match obj.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(v) => {
            return err(format!(
                "field `{path}` must be a number, not {}",
                kind_of(v)
            ));
        }
    };
    match n {
        Some(n) if n.is_finite() => Ok(Some(n)),
        _ => err(format!("field `{path}` must be a number")),
    }
}

fn optional_array<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a [Value], ParseError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        // PHP encodes an empty list as `{}` when it was built as a map.
        Some(Value::Object(o)) if o.is_empty() => Ok(&[]),
        Some(v) => err(format!("field `{path}` must be a list, not {}", kind_of(v))),
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn tags(data: &Map<String, Value>) -> Result<Vec<String>, ParseError> {
    let mut out = Vec::new();
    for (i, t) in optional_array(data, "tags", "data.tags")?
        .iter()
        .enumerate()
    {
        match t {
            Value::Null => {}
            v => match scalar_text(v) {
                Some(s) if !s.trim().is_empty() => out.push(s),
                Some(_) => {}
                None => {
                    return err(format!(
                        "field `data.tags[{i}]` must be a string, not {}",
                        kind_of(v)
                    ))
                }
            },
        }
    }
    Ok(out)
}

fn params(data: &Map<String, Value>) -> Result<BTreeMap<String, Value>, ParseError> {
    // Upstream sends `[{name, value}]`; a plain name→value map means the same.
    if let Some(Value::Object(map)) = data.get("params") {
        return Ok(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    }
    let mut out = BTreeMap::new();
    for (i, p) in optional_array(data, "params", "data.params")?
        .iter()
        .enumerate()
    {
        let Some(obj) = p.as_object() else {
            return err(format!(
                "field `data.params[{i}]` must be an object with `name` and `value`, not {}",
                kind_of(p)
            ));
        };
        let name = match obj.get("name").and_then(scalar_text) {
            Some(n) => n,
            None => return err(format!("field `data.params[{i}].name` must be a string")),
        };
        out.insert(name, obj.get("value").cloned().unwrap_or(Value::Null));
    }
    Ok(out)
}

fn images(data: &Map<String, Value>) -> Result<Vec<Image>, ParseError> {
    let mut out = Vec::new();
    for (i, img) in optional_array(data, "images", "data.images")?
        .iter()
        .enumerate()
    {
        let Some(obj) = img.as_object() else {
            return err(format!(
                "field `data.images[{i}]` must be an object, not {}",
                kind_of(img)
            ));
        };
        let url = match obj.get("url") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => {
                return err(format!(
                    "field `data.images[{i}].url` must be a string, not {}",
                    kind_of(v)
                ))
            }
        };
        let title = match obj.get("titles") {
            Some(Value::Object(t)) => t
                .get("en")
                .and_then(|v| v.as_str())
                .or_else(|| t.values().find_map(|v| v.as_str()))
                .map(str::to_string),
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        out.push(Image {
            id: obj.get("id").and_then(scalar_text),
            url,
            title,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> Value {
        json!({"id": "e1", "type": "print.created", "data": {"id": "g1"}})
    }

    #[test]
    fn minimal_event_parses_with_empty_lists() {
        let e = from_value(&minimal()).expect("valid");
        assert_eq!(e.generation.tags, Vec::<String>::new());
        assert!(e.generation.images.is_empty());
        assert_eq!(e.generation.progress(), (0, 0));
    }

    #[test]
    fn numbers_may_be_numeric_strings() {
        let mut v = minimal();
        v["api_version"] = json!("1");
        v["created"] = json!("1796030043");
        let e = from_value(&v).expect("valid");
        assert_eq!(e.created, Some(1796030043.0));
        assert_eq!(e.api_version, Some(1.0));
    }

    #[test]
    fn null_lists_are_empty() {
        let mut v = minimal();
        for k in ["images", "tags", "params", "metaData"] {
            v["data"][k] = Value::Null;
        }
        assert!(from_value(&v).is_ok());
    }

    #[test]
    fn empty_containers_of_the_other_kind_are_empty() {
        let mut v = minimal();
        v["data"]["metaData"] = json!([]);
        v["data"]["images"] = json!({});
        v["data"]["tags"] = json!({});
        v["data"]["params"] = json!({"steps": 30});
        let e = from_value(&v).expect("valid");
        assert!(e.generation.metadata.is_empty() && e.generation.images.is_empty());
        assert!(e.generation.tags.is_empty());
        assert_eq!(e.generation.params.get("steps"), Some(&json!(30)));
        v["data"]["metaData"] = json!([1]);
        assert!(from_value(&v).unwrap_err().0.contains("`data.metaData`"));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({"type": "x", "data": {"id": "g"}}), "`id`"),
            (json!({"id": "e", "data": {"id": "g"}}), "`type`"),
            (json!({"id": "e", "type": "x"}), "`data`"),
            (json!({"id": "e", "type": "x", "data": {}}), "`data.id`"),
            (
                json!({"id": "e", "type": "x", "data": {"id": "g", "tags": "a"}}),
                "`data.tags`",
            ),
            (
                json!({"id": "e", "type": "x", "created": "soon", "data": {"id": "g"}}),
                "`created`",
            ),
            (json!([1]), "JSON object"),
        ];
        for (v, field) in cases {
            let e = from_value(&v).expect_err("must fail");
            assert!(e.0.contains(field), "{e} should name {field}");
        }
    }

    #[test]
    fn body_level_errors() {
        assert!(parse(b"").unwrap_err().0.contains("empty"));
        assert!(parse(b"{\"id\": ")
            .unwrap_err()
            .0
            .contains("ends too early"));
        assert!(parse(&[0xff, 0xfe]).unwrap_err().0.contains("UTF-8"));
        let deep = "[".repeat(10_000);
        assert!(parse(deep.as_bytes())
            .unwrap_err()
            .0
            .contains("nested too deeply"));
    }
}
