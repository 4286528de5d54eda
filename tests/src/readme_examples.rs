//! The README's gateway examples ("Calling Clever from your sync code"), as the tests run
//! them: the one block of a language, and the Python snippet wrapped in a harness that binds
//! its free `district` and prints what the snippet left behind.

use crate::markdown::{self, CodeBlock};
use anyhow::{bail, Result};

pub const SECTION: &str = "## Calling Clever from your sync code";

/// The one block of `lang` in the section; the README having none or several is a failure
/// (a test would no longer know which example to run).
pub fn example(lang: &str) -> Result<CodeBlock> {
    let readme = markdown::read("README.md")?;
    let blocks: Vec<CodeBlock> = markdown::code_blocks_under(&readme, SECTION)?
        .into_iter()
        .filter(|b| b.lang == lang)
        .collect();
    match blocks.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "README.md {SECTION:?} has {} ```{lang} blocks; the tests run exactly one",
            blocks.len()
        ),
    }
}

/// What the harness prints after the snippet: the snippet itself prints nothing, so this
/// reports what it left behind (`r`, and `code` and `wait` when it took its error branch).
const REPORT: &str = r#"
import json as _json
_report = {"status": r.status_code, "source": r.headers.get("X-Clever-Auth-Source")}
if "code" in globals():
    _report["code"] = code
    _report["wait"] = wait
if r.ok:
    _report["body"] = r.json()
print(_json.dumps(_report))
"#;

/// A Python program running `snippet` for the district given as its first argument, then
/// printing one JSON report line.
pub fn python_program(snippet: &str) -> String {
    // `district` is the snippet's one free name; the harness binds it, nothing else.
    format!("import sys\ndistrict = sys.argv[1]\n{snippet}\n{REPORT}")
}
