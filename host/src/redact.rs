//! Defence in depth against credential leaks: every secret and token value the host has seen is
//! remembered here, and everything the host emits (log lines, health bodies, telemetry, panic
//! messages) passes through [`scrub`] on its way out.
//!
//! The first line of defence is the redacting types (`Secret`, `AccessToken`), which cannot be
//! printed. This catches what they cannot: a value copied into a plain string by a dependency,
//! echoed back in a server's error body, or embedded in a URL.

use aho_corasick::AhoCorasick;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, PoisonError, RwLock};

/// What a scrubbed value becomes.
pub const MASK: &str = "<redacted>";

/// Values shorter than this are not scrubbed: a short value would match ordinary text (a
/// district id, a word in a message) and mangle logs, while giving an attacker little anyway.
pub const MIN_LEN: usize = 8;

/// Old tokens stay secret after rotation (they may still be valid for a while), but the set
/// must not grow without bound: with hundreds of districts refreshing every hour this keeps
/// several days of history. The current secrets ([`pin`]) are kept apart and never evicted.
const MAX_VALUES: usize = 16_384;

/// The current value of each pinned kind of secret (client secret, managed-identity token, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pin {
    ClientSecret,
    /// The Basic credential built from the client id and secret.
    ClientBasic,
    ManagedIdentityToken,
    IdentityHeader,
    /// The store keys that seal token records on a shared store.
    StoreKey,
    StoreKeyPrevious,
    /// Redis's access key (its password).
    RedisAccessKey,
    /// The managed identity's Entra ID token for Redis (its password under Entra ID).
    RedisEntraToken,
}

#[derive(Default)]
struct Known {
    /// Pinned values, one per kind: never evicted while current.
    pinned: HashMap<Pin, String>,
    /// The other values, each with the tick of its last registration.
    recent: HashMap<String, u64>,
    /// `recent` by tick, so the least recently registered goes first when the set is full.
    by_tick: BTreeMap<u64, String>,
    tick: u64,
    /// Rebuilt lazily: registrations come in bursts (one per district per cycle), scrubs often.
    matcher: Option<Arc<Matcher>>,
}

/// The compiled patterns: every value in the forms it can take in output.
struct Matcher {
    ac: AhoCorasick,
    /// The longest pattern, in bytes: a cut this far from a value's start cannot split it.
    longest: usize,
}

impl Known {
    fn contains(&self, value: &str) -> bool {
        self.recent.contains_key(value) || self.pinned.values().any(|v| v == value)
    }

    /// Registers `value` as recently seen (a repeat refreshes it), evicting the least recently
    /// registered unpinned value when full.
    fn touch(&mut self, value: &str) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(old) = self.recent.insert(value.to_string(), tick) {
            self.by_tick.remove(&old);
        } else {
            self.matcher = None;
        }
        self.by_tick.insert(tick, value.to_string());
        while self.recent.len() > MAX_VALUES {
            let Some((_, oldest)) = self.by_tick.pop_first() else {
                break;
            };
            self.recent.remove(&oldest);
            self.matcher = None;
        }
    }

    fn pin(&mut self, kind: Pin, value: &str) {
        match self.pinned.insert(kind, value.to_string()) {
            Some(old) if old == value => return,
            // The previous value may still be valid for a while: it stays masked, as a
            // recent value that can age out.
            Some(old) => self.touch(&old),
            None => {}
        }
        if let Some(tick) = self.recent.remove(value) {
            self.by_tick.remove(&tick);
        }
        self.matcher = None;
    }

    fn patterns(&self) -> Vec<String> {
        let mut out = Vec::new();
        for value in self.pinned.values().chain(self.recent.keys()) {
            out.extend(forms(value));
        }
        out
    }
}

/// `value` as it can appear in output: raw, JSON-escaped once (a string in a JSON line) and
/// twice (a JSON line quoted inside another one), without duplicates.
fn forms(value: &str) -> Vec<String> {
    let escape = |v: &str| {
        let quoted = serde_json::Value::from(v).to_string();
        quoted[1..quoted.len() - 1].to_string()
    };
    let once = escape(value);
    let twice = escape(&once);
    let mut out = vec![value.to_string()];
    for f in [once, twice] {
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

static KNOWN: LazyLock<RwLock<Known>> = LazyLock::new(RwLock::default);

/// Remembers a value that must never be emitted; registering it again counts as recent use.
/// Short values are ignored.
pub fn register(value: &str) {
    let value = value.trim();
    if value.len() < MIN_LEN {
        return;
    }
    KNOWN
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .touch(value);
}

/// Remembers the current value of `kind`, which is never evicted while current; the value it
/// replaces stays masked as an ordinary (evictable) value.
pub fn pin(kind: Pin, value: &str) {
    let value = value.trim();
    if value.len() < MIN_LEN {
        return;
    }
    KNOWN
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .pin(kind, value);
}

/// Whether `value` is currently masked (for tests and the registry's own checks).
pub fn is_known(value: &str) -> bool {
    KNOWN
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(value.trim())
}

/// Remembers an `Authorization` header value: the whole credential after the scheme, and for
/// Basic also the decoded `id:secret` pair's secret half.
pub fn register_authorization(header: &str) {
    let Some((scheme, credential)) = header.trim().split_once(' ') else {
        register(header);
        return;
    };
    let credential = credential.trim();
    register(credential);
    if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine as _;
        if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(credential) {
            if let Ok(pair) = String::from_utf8(decoded) {
                if let Some((_, secret)) = pair.split_once(':') {
                    register(secret);
                }
            }
        }
    }
}

/// Remembers a client id/secret pair: the secret and the Basic credential built from both,
/// pinned as the current ones.
pub fn register_client_credentials(client_id: &str, client_secret: &str) {
    use base64::Engine as _;
    pin(Pin::ClientSecret, client_secret);
    pin(
        Pin::ClientBasic,
        &base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{client_secret}")),
    );
}

/// Remembers the token inside a cached token record (the component's `TokenEntry`), the moment
/// the record is written, before the token is ever used.
pub fn register_token_record(record: &[u8]) {
    if let Ok(entry) = serde_json::from_slice::<clever_auth_core::lifecycle::TokenEntry>(record) {
        register(entry.token.expose());
    }
}

fn matcher() -> Option<Arc<Matcher>> {
    {
        let known = KNOWN.read().unwrap_or_else(PoisonError::into_inner);
        if known.recent.is_empty() && known.pinned.is_empty() {
            return None;
        }
        if let Some(m) = &known.matcher {
            return Some(m.clone());
        }
    }
    let mut known = KNOWN.write().unwrap_or_else(PoisonError::into_inner);
    if known.matcher.is_none() {
        let patterns = known.patterns();
        // Leftmost-longest, so a value containing another is masked whole.
        let ac = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok()?;
        let longest = patterns.iter().map(String::len).max().unwrap_or(0);
        known.matcher = Some(Arc::new(Matcher { ac, longest }));
    }
    known.matcher.clone()
}

/// Where `bytes` (the start of a longer stream) may be cut so that no known value is split:
/// the bytes after the cut are fewer than the longest value, so whatever value begins there is
/// still whole in the next piece, and a complete value across the cut moves the cut past it.
/// `bytes.len()` when nothing is known.
pub fn safe_cut(bytes: &[u8]) -> usize {
    let Some(m) = matcher() else {
        return bytes.len();
    };
    let mut cut = bytes.len().saturating_sub(m.longest.saturating_sub(1));
    for found in m.ac.find_iter(bytes) {
        if found.start() >= cut {
            break;
        }
        cut = cut.max(found.end());
    }
    cut
}

/// `text` with every known value replaced by [`MASK`]; borrowed when there was nothing to hide.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let Some(m) = matcher() else {
        return Cow::Borrowed(text);
    };
    if !m.ac.is_match(text) {
        return Cow::Borrowed(text);
    }
    let masks = vec![MASK; m.ac.patterns_len()];
    Cow::Owned(m.ac.replace_all(text, &masks))
}

/// [`scrub`] for bytes that may not be UTF-8 (a body, a raw stderr line). Invalid sequences
/// cannot contain a registered (UTF-8) value whole, so they pass through unchanged.
pub fn scrub_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    let Some(m) = matcher() else {
        return Cow::Borrowed(bytes);
    };
    if !m.ac.is_match(bytes) {
        return Cow::Borrowed(bytes);
    }
    let masks = vec![MASK.as_bytes(); m.ac.patterns_len()];
    Cow::Owned(m.ac.replace_all_bytes(bytes, &masks))
}

use clever_auth_core::gateway::echo;
pub use echo::Pass;

/// [`scrub_bytes`] over a body that arrives in pieces (the gateway streams Clever's answers):
/// the last bytes of each piece are held back until the next one, so a value split across two
/// pieces is still masked. What is held back is shorter than the longest registered value.
#[derive(Debug, Default)]
pub struct StreamScrubber {
    carry: Vec<u8>,
}

impl StreamScrubber {
    /// Takes the next piece; returns what can be passed on now.
    pub fn push(&mut self, piece: &[u8]) -> Vec<u8> {
        let Some(m) = matcher() else {
            let mut out = std::mem::take(&mut self.carry);
            out.extend_from_slice(piece);
            return out;
        };
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(piece);
        let keep = m.longest.saturating_sub(1);
        if buf.len() <= keep {
            self.carry = buf;
            return Vec::new();
        }
        // Every value starting before `safe` ends inside `buf`, so it is found whole here.
        let safe = buf.len() - keep;
        let mut out = Vec::with_capacity(buf.len());
        let mut pos = 0;
        let mut masked = false;
        for found in m.ac.find_iter(&buf) {
            if found.start() >= safe {
                break;
            }
            out.extend_from_slice(&buf[pos..found.start()]);
            out.extend_from_slice(&same_length_mask(found.end() - found.start()));
            pos = found.end();
            masked = true;
        }
        let cut = safe.max(pos);
        out.extend_from_slice(&buf[pos..cut]);
        self.carry = buf[cut..].to_vec();
        if masked {
            // Its own event: the value came from Clever's answer (an upstream that echoes what
            // it received), not from the component, whose output must never need the scrubber.
            tracing::warn!(
                event = "upstream_body_scrubbed",
                "a known secret value in Clever's answer was masked in a gateway response body"
            );
        }
        out
    }

    /// [`push`](Self::push) for a body pump that can pass parts of `piece` on without copying
    /// them: when no known value is in sight (the common case), the answer is the bytes held
    /// back from before and a prefix of `piece`; only what is held back now is copied.
    pub fn pass(&mut self, piece: &[u8]) -> Pass {
        let Some(m) = matcher() else {
            return Pass::Clean {
                held: std::mem::take(&mut self.carry),
                upto: piece.len(),
            };
        };
        let keep = m.longest.saturating_sub(1);
        let edge = echo::edge(&self.carry, piece, keep);
        if m.ac.is_match(&edge) || m.ac.is_match(piece) {
            return Pass::Masked(self.push(piece));
        }
        echo::pass_clean(&mut self.carry, piece, keep)
    }

    /// The held-back end of the body, scrubbed.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.carry);
        let Some(m) = matcher() else {
            return rest;
        };
        let mut out = Vec::with_capacity(rest.len());
        let mut pos = 0;
        for found in m.ac.find_iter(&rest) {
            out.extend_from_slice(&rest[pos..found.start()]);
            out.extend_from_slice(&same_length_mask(found.end() - found.start()));
            pos = found.end();
        }
        out.extend_from_slice(&rest[pos..]);
        out
    }
}

/// A streamed body keeps its length (a `Content-Length` sent ahead stays true): the mask is
/// padded with `*` to the masked value's length.
fn same_length_mask(len: usize) -> Vec<u8> {
    let mut mask: Vec<u8> = MASK.bytes().take(len).collect();
    mask.resize(len, b'*');
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_split_across_pieces_is_masked_in_a_stream() {
        register("canary-stream-GGGG-7777");
        let body = b"head canary-stream-GGGG-7777 middle canary-stream-GGGG-7777 tail".to_vec();
        let mask = format!("{MASK}*************");
        let expected = format!("head {mask} middle {mask} tail").into_bytes();
        // Every way of cutting the body in two, and byte by byte.
        for cut in 0..=body.len() {
            let mut s = StreamScrubber::default();
            let mut out = s.push(&body[..cut]);
            out.extend(s.push(&body[cut..]));
            out.extend(s.finish());
            assert_eq!(out.len(), body.len(), "the length is kept");
            assert_eq!(out, expected, "cut at {cut}");
        }
        let mut s = StreamScrubber::default();
        let mut out = Vec::new();
        for b in &body {
            out.extend(s.push(std::slice::from_ref(b)));
        }
        out.extend(s.finish());
        assert_eq!(out, expected);
    }

    #[test]
    fn a_clean_stream_passes_unchanged() {
        register("canary-stream-HHHH-8888");
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut s = StreamScrubber::default();
        let mut out = Vec::new();
        for piece in body.chunks(4096) {
            out.extend(s.push(piece));
        }
        out.extend(s.finish());
        assert_eq!(out, body);
    }

    fn passed(s: &mut StreamScrubber, piece: &[u8]) -> Vec<u8> {
        match s.pass(piece) {
            Pass::Clean { mut held, upto } => {
                held.extend_from_slice(&piece[..upto]);
                held
            }
            Pass::Masked(out) => out,
        }
    }

    #[test]
    fn pass_gives_what_push_gives_for_every_cut() {
        register("canary-stream-PPPP-9999");
        let body =
            b"a canary-stream-PPPP-9999 b canary-stream-PPPP c canary-stream-PPPP-9999".to_vec();
        for size in [1, 3, 10, 22, 23, 24, 40, body.len()] {
            let (mut a, mut b) = (StreamScrubber::default(), StreamScrubber::default());
            let (mut pushed, mut pass) = (Vec::new(), Vec::new());
            for piece in body.chunks(size) {
                pushed.extend(a.push(piece));
                pass.extend(passed(&mut b, piece));
            }
            pushed.extend(a.finish());
            pass.extend(b.finish());
            assert_eq!(pushed, pass, "pieces of {size}");
            assert!(!pass.windows(9).any(|w| w == b"PPPP-9999"), "masked");
        }
        let mut s = StreamScrubber::default();
        let clean = b"z".repeat(4096);
        assert!(
            matches!(s.pass(&clean), Pass::Clean { upto, .. } if upto > 4000),
            "a clean piece passes without a copy of its bulk"
        );
    }

    // The registry is process-wide, so each test uses values no other test registers.

    #[test]
    fn registered_values_are_masked_everywhere_they_appear() {
        register("canary-secret-AAAA-1111");
        let line =
            r#"{"msg":"failed","body":"bad canary-secret-AAAA-1111 x canary-secret-AAAA-1111"}"#;
        let out = scrub(line);
        assert!(!out.contains("canary-secret-AAAA-1111"), "{out}");
        assert_eq!(out.matches(MASK).count(), 2);
        assert_eq!(
            scrub_bytes(line.as_bytes()).as_ref(),
            out.as_bytes(),
            "bytes and text scrub alike"
        );
    }

    #[test]
    fn text_without_secrets_is_borrowed_untouched() {
        register("canary-secret-BBBB-2222");
        assert!(matches!(scrub("nothing to see"), Cow::Borrowed(_)));
    }

    #[test]
    fn short_values_are_not_registered() {
        register("abc");
        assert_eq!(scrub("abc abc"), "abc abc");
    }

    #[test]
    fn basic_credentials_are_masked_encoded_and_decoded() {
        use base64::Engine as _;
        register_client_credentials("client-CCCC", "canary-secret-CCCC-3333");
        let encoded =
            base64::engine::general_purpose::STANDARD.encode("client-CCCC:canary-secret-CCCC-3333");
        let header = format!("Authorization: Basic {encoded}");
        assert_eq!(scrub(&header), format!("Authorization: Basic {MASK}"));
        assert_eq!(
            scrub("pair client-CCCC:canary-secret-CCCC-3333"),
            format!("pair client-CCCC:{MASK}")
        );
    }

    #[test]
    fn authorization_headers_register_their_credential() {
        register_authorization("Bearer canary-token-DDDD-4444");
        assert_eq!(
            scrub("url?t=canary-token-DDDD-4444&x"),
            format!("url?t={MASK}&x")
        );
        use base64::Engine as _;
        let basic =
            base64::engine::general_purpose::STANDARD.encode("id-EEEE:canary-secret-EEEE-5555");
        register_authorization(&format!("Basic {basic}"));
        assert_eq!(scrub("s=canary-secret-EEEE-5555"), format!("s={MASK}"));
    }

    #[test]
    fn a_value_containing_another_is_masked_whole() {
        register("canary-FFFF-6666");
        register("canary-FFFF-6666-longer-token");
        assert_eq!(
            scrub("x canary-FFFF-6666-longer-token y"),
            format!("x {MASK} y")
        );
    }

    #[test]
    fn pinned_secrets_survive_any_number_of_other_values() {
        let mut k = Known::default();
        k.pin(Pin::ClientSecret, "pinned-secret-0001");
        k.touch("first-token-000001");
        for i in 0..MAX_VALUES + 10 {
            k.touch(&format!("token-{i:08}"));
        }
        assert!(k.contains("pinned-secret-0001"));
        assert!(
            !k.contains("first-token-000001"),
            "the oldest other value went"
        );
        assert_eq!(k.recent.len(), MAX_VALUES);
        assert_eq!(k.by_tick.len(), MAX_VALUES);
    }

    #[test]
    fn registering_again_makes_a_value_recent() {
        let mut k = Known::default();
        k.touch("kept-by-reuse-0001");
        k.touch("not-reused-00000001");
        for i in 0..MAX_VALUES - 2 {
            k.touch(&format!("token-{i:08}"));
        }
        k.touch("kept-by-reuse-0001");
        k.touch("one-more-000000001");
        k.touch("one-more-000000002");
        assert!(k.contains("kept-by-reuse-0001"));
        assert!(!k.contains("not-reused-00000001"));
        assert_eq!(k.recent.len(), MAX_VALUES);
    }

    #[test]
    fn a_replaced_pin_stays_masked_until_it_ages_out() {
        let mut k = Known::default();
        k.pin(Pin::ManagedIdentityToken, "mi-token-old-00001");
        k.pin(Pin::ManagedIdentityToken, "mi-token-new-00001");
        assert!(k.contains("mi-token-old-00001") && k.contains("mi-token-new-00001"));
        for i in 0..MAX_VALUES {
            k.touch(&format!("token-{i:08}"));
        }
        assert!(!k.contains("mi-token-old-00001"));
        assert!(k.contains("mi-token-new-00001"));
    }

    #[test]
    fn json_escaped_forms_are_masked() {
        let secret = r#"canary"quote\back-GGGG-7777"#;
        register(secret);
        let once = serde_json::json!({ "m": secret }).to_string();
        assert!(!once.contains(secret), "the escaped form differs: {once}");
        assert_eq!(scrub(&once), format!(r#"{{"m":"{MASK}"}}"#));
        let twice = serde_json::json!({ "line": once }).to_string();
        assert_eq!(scrub(&twice).matches(MASK).count(), 1, "{twice}");
        assert!(!scrub(&twice).contains("GGGG"));
    }

    #[test]
    fn a_cut_never_splits_a_known_value() {
        let secret = "canary-cut-HHHH-8888-long-value";
        register(secret);
        let mut line = "x".repeat(100);
        line.push_str(secret);
        line.push_str("tail");
        let bytes = line.as_bytes();
        // However much of the stream has arrived, the piece before the cut holds the value
        // whole or not at all; the rest is kept for the next piece.
        for arrived in 0..=bytes.len() {
            let cut = safe_cut(&bytes[..arrived]);
            assert!(cut <= arrived);
            let head = String::from_utf8_lossy(&bytes[..cut]);
            let rest = String::from_utf8_lossy(&bytes[cut..]);
            assert!(
                head.contains(secret) || rest.contains(secret),
                "cut at {cut} of {arrived} splits the value"
            );
        }
    }

    #[test]
    fn pinned_values_are_masked() {
        pin(Pin::IdentityHeader, "identity-header-IIII-9999");
        assert!(is_known("identity-header-IIII-9999"));
        assert_eq!(scrub("h=identity-header-IIII-9999"), format!("h={MASK}"));
    }
}
