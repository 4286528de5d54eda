//! Structured log lines on stderr (Spin has no wasi:logging): one JSON object per line, which
//! the native host re-emits with the component as their source.

use serde_json::{Map, Value};

pub fn event(level: &str, event: &str, fields: Value) {
    let mut line = Map::new();
    line.insert("level".into(), level.into());
    line.insert("event".into(), event.into());
    line.insert("source".into(), "clever-auth-component".into());
    if let Value::Object(f) = fields {
        line.extend(f);
    }
    eprintln!("{}", Value::Object(line));
}
