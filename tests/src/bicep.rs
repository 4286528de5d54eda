//! Just enough of the Bicep files' text for the tests that hold the code to them: parameters,
//! variables, the web app's app settings and the sidecar layout's containers. Line-based, for
//! the way `deploy/*.bicep` are written (one property per line); a file written otherwise
//! makes these return nothing and the tests that use them fail.

use std::collections::{BTreeMap, BTreeSet};

/// `param name type = 'default'` lines: name → default (string defaults only).
pub fn string_param_defaults(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("param "))
        .filter_map(|rest| {
            let (name, rest) = rest.split_once(' ')?;
            let (_, default) = rest.split_once(" = '")?;
            Some((name.to_string(), default.strip_suffix('\'')?.to_string()))
        })
        .collect()
}

pub fn declared_params(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("param "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// `var name = 'literal'`: the literal.
pub fn string_var(text: &str, name: &str) -> Option<String> {
    let prefix = format!("var {name} = '");
    text.lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.strip_suffix('\''))
        .map(str::to_string)
}

/// The web app's `appSettings`: name → value expression, in order of appearance.
pub fn app_settings(text: &str) -> Vec<(String, String)> {
    let Some(start) = text.find("appSettings: [") else {
        return Vec::new();
    };
    let mut settings = Vec::new();
    let mut pending: Option<String> = None;
    for line in text[start..].lines().skip(1) {
        let line = line.trim();
        if line == "]" {
            break;
        }
        if let Some(name) = line.strip_prefix("name: ") {
            pending = Some(name.trim_matches('\'').to_string());
        } else if let Some(value) = line.strip_prefix("value: ") {
            if let Some(name) = pending.take() {
                settings.push((name, value.to_string()));
            }
        }
    }
    settings
}

/// A Bicep string literal (`'…'`, with `${var}` interpolations of `vars`) as its value; `None`
/// for any other expression (a parameter, a resource property).
pub fn literal(expr: &str, vars: impl Fn(&str) -> Option<String>) -> Option<String> {
    let inner = expr.trim().strip_prefix('\'')?.strip_suffix('\'')?;
    let mut out = String::new();
    let mut rest = inner;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after.find('}')?;
        out.push_str(&vars(&after[..end])?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// One `Microsoft.Web/sites/sitecontainers` resource of the sidecar layout.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SiteContainer {
    /// Its `name:` (`sync`, `clever-auth`).
    pub name: String,
    /// `targetPort:` as written: a literal port or a parameter's name.
    pub target_port: String,
    pub is_main: bool,
    /// `environmentVariables`: variable → the app setting it takes its value from.
    pub environment: Vec<(String, String)>,
}

/// The sitecontainers resources, in order.
pub fn site_containers(text: &str) -> Vec<SiteContainer> {
    let mut out: Vec<SiteContainer> = Vec::new();
    let mut current: Option<SiteContainer> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("resource ") && line.contains("Microsoft.Web/sites/sitecontainers@") {
            out.extend(current.take());
            current = Some(SiteContainer::default());
            continue;
        }
        let Some(c) = current.as_mut() else { continue };
        if line.starts_with("resource ") || line.starts_with("output ") {
            out.extend(current.take());
            continue;
        }
        if let Some(name) = line.strip_prefix("name: ") {
            if c.name.is_empty() {
                c.name = name.trim_matches('\'').to_string();
            }
        } else if let Some(port) = line.strip_prefix("targetPort: ") {
            c.target_port = port.trim_matches('\'').to_string();
        } else if let Some(main) = line.strip_prefix("isMain: ") {
            c.is_main = main == "true";
        } else if let Some(entry) = line.strip_prefix("{ name: ") {
            // `{ name: 'VAR', value: 'APP_SETTING' }`
            let mut parts = entry.trim_end_matches('}').split(", value: ");
            if let (Some(var), Some(setting)) = (parts.next(), parts.next()) {
                c.environment.push((
                    var.trim().trim_matches('\'').to_string(),
                    setting.trim().trim_matches('\'').to_string(),
                ));
            }
        }
    }
    out.extend(current);
    out
}
