//! Structured log lines on stderr (Spin has no wasi:logging): one JSON object per line, which
//! the native host re-emits with the component as their source.

use serde_json::{Map, Value};
use std::io::Write as _;

pub fn event(level: &str, event: &str, fields: Value) {
    let mut line = Map::new();
    line.insert("level".into(), level.into());
    line.insert("event".into(), event.into());
    line.insert("source".into(), "clever-auth-component".into());
    if let Value::Object(f) = fields {
        line.extend(f);
    }
    // One write for the whole line: stderr is unbuffered, and `eprintln!` of a JSON value
    // wrote each key and value separately, every piece a call into the host.
    let mut bytes = Value::Object(line).to_string().into_bytes();
    bytes.push(b'\n');
    let _ = std::io::stderr().lock().write_all(&bytes);
}
