//! What counts as a credential in server-supplied text, and how such text is made safe to log.

/// Runs of token-like characters at least this long are treated as credentials. Clever tokens
/// are 40 hex characters; Clever ids (24 hex) stay readable.
const MIN_SECRET_RUN: usize = 32;
/// After a credential key and a space, a word this long with a digit in it counts as the value.
const MIN_SPACED_SECRET: usize = 8;

const REDACTED: &str = "[redacted]";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arm {
    Idle,
    /// A word like `token` or `client_secret` was just seen; a following `:`/`=` arms.
    KeySeen,
    /// The next value is a credential.
    Armed,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '/' | '%')
}

fn ends_value(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '"' | '\'' | ',' | ';' | '&' | ')' | ']' | '}' | '<' | '>'
        )
}

fn is_auth_scheme(word: &str) -> bool {
    ["bearer", "basic"]
        .iter()
        .any(|s| word.eq_ignore_ascii_case(s))
}

fn is_sensitive_key(word: &str) -> bool {
    let lower = word.to_ascii_lowercase();
    [
        "token",
        "secret",
        "password",
        "passwd",
        "authorization",
        "apikey",
        "api_key",
    ]
    .iter()
    .any(|k| lower.ends_with(k))
}

/// Consumes a run of characters matching `keep`, returning its length and its first
/// `MIN_SECRET_RUN` characters (enough to classify it and to print it when it is short).
fn take_run(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    keep: impl Fn(char) -> bool,
) -> (String, usize) {
    let mut head = String::new();
    let mut count = 0;
    while let Some(&c) = chars.peek() {
        if !keep(c) {
            break;
        }
        if count < MIN_SECRET_RUN {
            head.push(c);
        }
        count += 1;
        chars.next();
    }
    (head, count)
}

/// Makes server-supplied text safe to log: collapses whitespace, drops control characters,
/// replaces credentials (values after `Bearer`/`Basic`, after `token=`/`secret:`-like keys,
/// and any run of 32+ token characters) with `[redacted]`, and stops at `max_chars`.
///
/// Words are consumed whole before anything is emitted, so the cut at `max_chars` can never
/// leave a fragment of a credential behind.
pub fn sanitize(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut emitted = 0usize;
    let mut state = Arm::Idle;
    let mut chars = text.chars().peekable();
    let push = |out: &mut String, emitted: &mut usize, s: &str| {
        out.push_str(s);
        *emitted += s.chars().count();
        *emitted
    };
    while let Some(&c) = chars.peek() {
        let written = if state == Arm::Armed && !ends_value(c) && !matches!(c, ':' | '=') {
            let (head, count) = take_run(&mut chars, |c| !ends_value(c));
            if count < MIN_SECRET_RUN && is_auth_scheme(&head) {
                // `Authorization: Bearer xyz`: the scheme is harmless, the next value is not.
                push(&mut out, &mut emitted, &head)
            } else {
                state = Arm::Idle;
                push(&mut out, &mut emitted, REDACTED)
            }
        } else if is_word_char(c) {
            let (head, count) = take_run(&mut chars, is_word_char);
            // `client_secret s3cr3tValue9`: a key followed by a space, then a word that looks
            // like a credential (long, with a digit). Plain words after a key ("token
            // expired") stay readable.
            let credential_after_key = state == Arm::KeySeen
                && count >= MIN_SPACED_SECRET
                && head.chars().any(|c| c.is_ascii_digit());
            if count >= MIN_SECRET_RUN || credential_after_key {
                state = Arm::Idle;
                push(&mut out, &mut emitted, REDACTED)
            } else {
                state = if is_auth_scheme(&head) {
                    Arm::Armed
                } else if is_sensitive_key(&head) {
                    Arm::KeySeen
                } else {
                    Arm::Idle
                };
                push(&mut out, &mut emitted, &head)
            }
        } else {
            chars.next();
            let quote_or_space = c.is_whitespace() || c.is_control() || c == '"' || c == '\'';
            state = match state {
                Arm::KeySeen if matches!(c, ':' | '=') => Arm::Armed,
                Arm::KeySeen if quote_or_space => Arm::KeySeen,
                Arm::Armed if quote_or_space || matches!(c, ':' | '=') => Arm::Armed,
                _ => Arm::Idle,
            };
            if c.is_whitespace() || c.is_control() {
                if out.is_empty() || out.ends_with(' ') {
                    emitted
                } else {
                    push(&mut out, &mut emitted, " ")
                }
            } else {
                let mut buf = [0u8; 4];
                push(&mut out, &mut emitted, c.encode_utf8(&mut buf))
            }
        };
        if written > max_chars {
            break;
        }
    }
    truncate_chars(out.trim_end(), max_chars)
}

pub(super) fn truncate_chars(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    out.push('…');
    out
}
