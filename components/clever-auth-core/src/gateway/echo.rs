//! Masks the token the gateway sent wherever Clever's answer echoes it (an upstream, or a
//! proxy in front of it, that reflects the request's headers), in a body that arrives in
//! pieces: the last `token length − 1` bytes of each piece are held back until the next one,
//! so a token split across pieces is still masked, and nothing more is ever held.
//!
//! The mask has the token's length (`<redacted>` padded with `*`), so a `Content-Length`
//! passed on ahead of the body stays true. Sans-IO: the component's body pump feeds it.

use memchr::memmem::Finder;

/// What a masked token reads as, padded with `*` to the token's length.
pub const MASK: &str = "<redacted>";

/// What [`EchoMask::pass`] lets through for one piece.
#[derive(Debug, PartialEq, Eq)]
pub enum Pass {
    /// Nothing masked: pass `held`, then `piece[..upto]` unchanged.
    Clean { held: Vec<u8>, upto: usize },
    /// Pass these bytes instead (a token was masked in them).
    Masked(Vec<u8>),
}

/// The bytes around the cut between `carry` (the bytes held back, fewer than `keep + 1`) and
/// `piece`: a value of at most `keep + 1` bytes that starts in `carry` ends in here; any other
/// value in `carry + piece` lies in `piece` whole.
pub fn edge(carry: &[u8], piece: &[u8], keep: usize) -> Vec<u8> {
    let mut edge = carry.to_vec();
    edge.extend_from_slice(&piece[..piece.len().min(keep)]);
    edge
}

/// For `carry + piece` with nothing to mask in it: what passes on (all but the last `keep`
/// bytes), holding the last `keep` back in `carry` for the next piece.
pub fn pass_clean(carry: &mut Vec<u8>, piece: &[u8], keep: usize) -> Pass {
    let passing = (carry.len() + piece.len()).saturating_sub(keep);
    if passing <= carry.len() {
        // A piece shorter than what is held back: the oldest held bytes go on.
        let held: Vec<u8> = carry.drain(..passing).collect();
        carry.extend_from_slice(piece);
        return Pass::Clean { held, upto: 0 };
    }
    let upto = passing - carry.len();
    let held = std::mem::replace(carry, piece[upto..].to_vec());
    Pass::Clean { held, upto }
}

thread_local! {
    /// The last token's searcher: a district's token serves many requests in a row, and
    /// building the searcher showed in the gateway's profile.
    static LAST: std::cell::RefCell<Option<Finder<'static>>> = const { std::cell::RefCell::new(None) };
}

fn finder_for(token: &[u8]) -> Finder<'static> {
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match last.as_ref() {
            Some(f) if f.needle() == token => f.clone(),
            _ => {
                let f = Finder::new(token).into_owned();
                *last = Some(f.clone());
                f
            }
        }
    })
}

/// One response body's masker for one token.
pub struct EchoMask {
    /// `None` for an empty token: nothing to find.
    finder: Option<Finder<'static>>,
    mask: Vec<u8>,
    carry: Vec<u8>,
    masked: u64,
}

/// Never shows the token.
impl std::fmt::Debug for EchoMask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoMask")
            .field("held_back", &self.carry.len())
            .field("masked", &self.masked)
            .finish_non_exhaustive()
    }
}

impl EchoMask {
    pub fn new(token: &[u8]) -> Self {
        let mut mask: Vec<u8> = MASK.bytes().take(token.len()).collect();
        mask.resize(token.len(), b'*');
        Self {
            finder: (!token.is_empty()).then(|| finder_for(token)),
            mask,
            carry: Vec::new(),
            masked: 0,
        }
    }

    /// Takes the next piece of the body and appends to `out` what can be passed on now.
    pub fn push(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        let Some(finder) = &self.finder else {
            out.extend_from_slice(piece);
            return;
        };
        let keep = self.mask.len() - 1;
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(piece);
        let mut pos = 0;
        // Every occurrence starting before `safe` lies whole inside `buf`.
        let safe = buf.len().saturating_sub(keep);
        while let Some(at) = finder.find(&buf[pos..]) {
            let start = pos + at;
            out.extend_from_slice(&buf[pos..start]);
            out.extend_from_slice(&self.mask);
            pos = start + self.mask.len();
            self.masked += 1;
        }
        let cut = safe.max(pos);
        out.extend_from_slice(&buf[pos..cut]);
        buf.drain(..cut);
        self.carry = buf;
    }

    /// [`push`](Self::push) for a carrier that can pass parts of `piece` on without copying
    /// them: when nothing is masked (the common case), the answer is the bytes held back
    /// from before and a prefix of `piece`, and only the few bytes held back now are copied.
    pub fn pass(&mut self, piece: &[u8]) -> Pass {
        let Some(finder) = &self.finder else {
            return Pass::Clean {
                held: std::mem::take(&mut self.carry),
                upto: piece.len(),
            };
        };
        let keep = self.mask.len() - 1;
        let edge = edge(&self.carry, piece, keep);
        if finder.find(&edge).is_some() || finder.find(piece).is_some() {
            let mut out = Vec::new();
            self.push(piece, &mut out);
            return Pass::Masked(out);
        }
        pass_clean(&mut self.carry, piece, keep)
    }

    /// The end of the body: what was held back (no token fits in it whole).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.carry);
    }

    /// How many times the token was masked so far.
    pub fn masked(&self) -> u64 {
        self.masked
    }

    /// Bytes held back right now (always shorter than the token).
    pub fn held_back(&self) -> usize {
        self.carry.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &[u8] = b"tok-0123456789abcdef0123456789abcdef";

    fn run(token: &[u8], pieces: &[&[u8]]) -> (Vec<u8>, u64) {
        let mut m = EchoMask::new(token);
        let mut out = Vec::new();
        for p in pieces {
            m.push(p, &mut out);
            assert!(m.held_back() < token.len().max(1));
        }
        m.finish(&mut out);
        (out, m.masked())
    }

    fn expected(body: &[u8], token: &[u8]) -> Vec<u8> {
        let mask = EchoMask::new(token).mask;
        let mut out = Vec::new();
        let mut i = 0;
        while i < body.len() {
            if !token.is_empty() && body[i..].starts_with(token) {
                out.extend_from_slice(&mask);
                i += token.len();
            } else {
                out.push(body[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn a_token_in_one_piece_is_masked_to_its_own_length() {
        let body = [b"{\"auth\":\"Bearer ".as_slice(), TOKEN, b"\"}"].concat();
        let (out, n) = run(TOKEN, &[&body]);
        assert_eq!(n, 1);
        assert_eq!(out.len(), body.len());
        assert!(!out.windows(TOKEN.len()).any(|w| w == TOKEN));
        assert!(String::from_utf8_lossy(&out).contains("<redacted>**"));
    }

    #[test]
    fn a_body_without_the_token_passes_unchanged() {
        let body = b"x".repeat(100_000);
        let (out, n) = run(TOKEN, &[&body[..7], &body[7..50_000], &body[50_000..]]);
        assert_eq!((out, n), (body, 0));
    }

    #[test]
    fn tokens_in_turn_each_mask_their_own() {
        // The searcher of the last token is kept: a mask for another token must not reuse it.
        let other: &[u8] = b"another-token-0123";
        let body = [TOKEN, b" ".as_slice(), other].concat();
        for (token, kept) in [
            (TOKEN, other),
            (other, TOKEN),
            (TOKEN, other),
            (TOKEN, other),
        ] {
            let (out, n) = run(token, &[&body]);
            assert_eq!(n, 1);
            assert!(out.windows(kept.len()).any(|w| w == kept));
            assert!(!out.windows(token.len()).any(|w| w == token));
        }
    }

    #[test]
    fn an_empty_token_masks_nothing() {
        let (out, n) = run(b"", &[b"abc", b"def"]);
        assert_eq!((out.as_slice(), n), (b"abcdef".as_slice(), 0));
    }

    #[test]
    fn a_one_byte_token_holds_nothing_back() {
        let mut m = EchoMask::new(b"z");
        let mut out = Vec::new();
        m.push(b"azbz", &mut out);
        assert_eq!(out, b"a<b<");
        assert_eq!(m.held_back(), 0);
    }

    /// Every way of cutting a body with two echoes (one at the very end) into two and three
    /// pieces: the output is the same as masking it whole.
    #[test]
    fn every_split_point_gives_the_same_answer() {
        let body = [b"ab".as_slice(), TOKEN, b"tok-", TOKEN, b"x", TOKEN].concat();
        let want = expected(&body, TOKEN);
        assert_eq!(run(TOKEN, &[&body]), (want.clone(), 3));
        for i in 0..=body.len() {
            assert_eq!(
                run(TOKEN, &[&body[..i], &body[i..]]),
                (want.clone(), 3),
                "split at {i}"
            );
            for j in i..=body.len() {
                let got = run(TOKEN, &[&body[..i], &body[i..j], &body[j..]]);
                assert_eq!(got, (want.clone(), 3), "split at {i} and {j}");
            }
        }
    }

    /// Random bodies rich in near-misses, cut at random points, against the whole-body answer.
    #[test]
    fn random_bodies_and_pieces_match_the_whole_body_answer() {
        let token = b"abcab";
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2_000 {
            let len = (next() % 60) as usize;
            let body: Vec<u8> = (0..len).map(|_| b"abc"[(next() % 3) as usize]).collect();
            let mut pieces = Vec::new();
            let mut at = 0;
            while at < body.len() {
                let n = 1 + (next() % 7) as usize;
                let end = (at + n).min(body.len());
                pieces.push(&body[at..end]);
                at = end;
            }
            let want = expected(&body, token);
            let (got, _) = run(token, &pieces);
            assert_eq!(
                got,
                want,
                "body {:?} pieces {pieces:?}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let m = EchoMask::new(TOKEN);
        assert!(!format!("{m:?}").contains("tok-0123"));
    }

    /// `pass` lets through exactly what `push` does, whatever the cuts, with or without a
    /// token in the body.
    #[test]
    fn pass_gives_what_push_gives_for_every_cut() {
        let mut body = b"{\"data\":[".to_vec();
        body.extend_from_slice(TOKEN);
        body.extend_from_slice(b"],\"x\":\"");
        body.extend_from_slice(&TOKEN[..10]);
        body.extend_from_slice(b"\",\"y\":\"");
        body.extend_from_slice(TOKEN);
        body.extend_from_slice(b"\"}");
        let clean = b"0123456789abcdef".repeat(20);
        for body in [body.clone(), clean] {
            for size in [
                1,
                2,
                5,
                TOKEN.len() - 1,
                TOKEN.len(),
                TOKEN.len() + 1,
                64,
                body.len(),
            ] {
                let mut pushed = EchoMask::new(TOKEN);
                let mut passed = EchoMask::new(TOKEN);
                let (mut a, mut b) = (Vec::new(), Vec::new());
                for piece in body.chunks(size) {
                    pushed.push(piece, &mut a);
                    match passed.pass(piece) {
                        Pass::Clean { held, upto } => {
                            b.extend_from_slice(&held);
                            b.extend_from_slice(&piece[..upto]);
                        }
                        Pass::Masked(out) => b.extend_from_slice(&out),
                    }
                }
                pushed.finish(&mut a);
                passed.finish(&mut b);
                assert_eq!(a, b, "pieces of {size}");
                assert_eq!(a.len(), body.len());
                assert_eq!(pushed.masked(), passed.masked());
            }
        }
    }

    #[test]
    fn a_clean_piece_passes_without_a_copy_of_its_bulk() {
        let mut m = EchoMask::new(TOKEN);
        let piece = b"x".repeat(1000);
        match m.pass(&piece) {
            Pass::Clean { held, upto } => {
                assert!(held.is_empty());
                assert_eq!(upto, 1000 - (TOKEN.len() - 1));
            }
            Pass::Masked(_) => panic!("nothing to mask"),
        }
        assert_eq!(m.held_back(), TOKEN.len() - 1);
    }
}
