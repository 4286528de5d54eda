//! How much is said about bad values: each warning quotes the value it is about, cut short, and
//! a response yields only so many of them.

/// Quoted header values in warnings are cut to this many characters.
pub(super) const MAX_QUOTED: usize = 40;

/// Warnings about individual values kept per response. Every bad list item yields one, so
/// without a cap a header of `x,x,x,…` would cost a formatted line per two bytes received.
/// Beyond the cap they are only counted, in one closing line; the (at most two) warnings about
/// the bucket layout as a whole are always kept, so `warnings` never exceeds this plus three.
pub const MAX_WARNINGS: usize = 16;

/// Warnings about individual values, up to [`MAX_WARNINGS`]; later ones are only counted, and
/// not even formatted.
#[derive(Default)]
pub(super) struct Warnings {
    kept: Vec<String>,
    omitted: usize,
}

impl Warnings {
    pub(super) fn push(&mut self, message: impl FnOnce() -> String) {
        if self.kept.len() < MAX_WARNINGS {
            self.kept.push(message());
        } else {
            self.omitted += 1;
        }
    }

    pub(super) fn finish(mut self) -> Vec<String> {
        if self.omitted > 0 {
            self.kept
                .push(format!("{} more rate-limit warnings omitted", self.omitted));
        }
        self.kept
    }
}

/// A header value for a warning, in quotes with Rust string escapes. The cut counts escaped
/// characters: a combining mark escapes to seven (`\u{301}`), so cutting the value before
/// escaping let a 40-character value become a 280-character warning.
pub(super) fn quote(value: &str) -> String {
    let mut out = String::from('"');
    let mut width = 0;
    for c in value.chars() {
        let c = if c.is_control() { '?' } else { c };
        // `str`'s Debug, one character at a time: the same escapes as quoting the whole value.
        let quoted = format!("{:?}", c.to_string());
        let escaped = quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .unwrap_or(&quoted);
        width += escaped.chars().count();
        if width > MAX_QUOTED {
            out.push('…');
            break;
        }
        out.push_str(escaped);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use crate::ratelimit::fixtures::parse;

    #[test]
    fn quoted_values_are_cut_after_escaping() {
        let combining = "\u{301}".repeat(45);
        let info = parse(&[("Retry-After", &combining)]);
        let w = &info.warnings[0];
        assert!(w.chars().count() < 200, "{w}");
        assert!(w.starts_with(r#"retry-after: "\u{301}"#), "{w}");
        assert!(w.contains(r#"\u{301}…""#), "{w}");

        let info = parse(&[("X-Ratelimit-Limit", r#"say "hi""#)]);
        assert_eq!(
            info.warnings,
            [r#"x-ratelimit-limit: "say \"hi\"" is not a non-negative integer, ignored"#]
        );
        let long = "y".repeat(41);
        let info = parse(&[("X-Ratelimit-Limit", &long)]);
        assert!(info.warnings[0].contains(&format!("\"{}…\"", "y".repeat(40))));
    }
}
