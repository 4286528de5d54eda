//! Secret-bearing strings that cannot leak through formatting or serialisation by accident.
//!
//! Tokens and client secrets end up next to things that get logged (error values, health
//! reports, debug dumps of whole structs). Both types here print as `<redacted>` whatever the
//! formatter, and neither implements `Serialize`: writing one out requires naming the
//! [`stored`] helpers, so every place that persists a credential is visible in review.

use std::fmt;

use serde::Deserialize;

const REDACTED: &str = "<redacted>";

/// Below this length even the last four characters give away too large a share of the value,
/// so `fingerprint` shows nothing of it.
const MIN_LEN_FOR_FINGERPRINT: usize = 16;

fn fingerprint_of(value: &str) -> String {
    let count = value.chars().count();
    if count < MIN_LEN_FOR_FINGERPRINT {
        return "…".to_owned();
    }
    let tail: String = value.chars().skip(count - 4).collect();
    format!("…{tail}")
}

/// One string type that holds a credential: the value is reachable only through `expose`, and
/// every formatter prints `<redacted>`. A macro so that both types are redacted by the same
/// code: a fix to one cannot miss the other.
macro_rules! redacted_string {
    ($(#[$doc:meta])* $name:ident, expose: $expose_doc:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            #[doc = $expose_doc]
            pub fn expose(&self) -> &str {
                &self.0
            }

            /// `…` plus the last four characters, so operators can tell two values apart in
            /// logs (a rotated one looks different) without the log being usable as a
            /// credential.
            pub fn fingerprint(&self) -> String {
                fingerprint_of(&self.0)
            }

            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({REDACTED})", stringify!($name))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(REDACTED)
            }
        }
    };
}

redacted_string!(
    /// A bearer token for the Clever APIs (a district-app token or an RFC 6749 access token).
    AccessToken,
    expose: "The raw token, for the `Authorization` header and the cache writer only."
);

redacted_string!(
    /// A configured credential such as the client secret.
    Secret,
    expose: "The raw secret, for building the `Authorization: Basic` header only."
);

/// Deliberate persistence of an [`AccessToken`], for the token cache:
///
/// ```
/// # use clever_auth_core::secret::AccessToken;
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct CachedToken {
///     #[serde(with = "clever_auth_core::secret::stored")]
///     token: AccessToken,
///     #[serde(with = "clever_auth_core::secret::stored::option", default)]
///     previous: Option<AccessToken>,
/// }
/// ```
pub mod stored {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::AccessToken;

    /// Writes the raw token. Named so that `serialize_exposed` stands out at a call site that
    /// uses it directly instead of through `#[serde(with)]`.
    pub fn serialize_exposed<S: Serializer>(
        token: &AccessToken,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(token.expose())
    }

    pub fn serialize<S: Serializer>(token: &AccessToken, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_exposed(token, serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<AccessToken, D::Error> {
        AccessToken::deserialize(deserializer)
    }

    /// The same for `Option<AccessToken>` fields.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        use super::super::AccessToken;

        pub fn serialize<S: Serializer>(
            token: &Option<AccessToken>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match token {
                Some(token) => serializer.serialize_some(token.expose()),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<AccessToken>, D::Error> {
            Option::<AccessToken>::deserialize(deserializer)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn formatting_never_shows_the_value() {
        let token = AccessToken::new(TOKEN);
        let secret = Secret::new(TOKEN);
        for text in [
            format!("{token:?}"),
            format!("{token:#?}"),
            format!("{token}"),
            format!("{secret:?}"),
            format!("{secret:#?}"),
            format!("{secret}"),
            format!("{:?}", Some(&token)),
            format!("{:?}", vec![secret.clone()]),
        ] {
            assert!(!text.contains(TOKEN), "leaked in {text}");
            assert!(!text.contains("4567"), "tail leaked in {text}");
        }
        assert_eq!(format!("{token:?}"), "AccessToken(<redacted>)");
        assert_eq!(format!("{token}"), "<redacted>");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{secret}"), "<redacted>");
    }

    #[test]
    fn expose_returns_the_raw_value() {
        assert_eq!(AccessToken::new(TOKEN).expose(), TOKEN);
        assert_eq!(Secret::new("s3cret").expose(), "s3cret");
        assert!(AccessToken::new("").is_empty());
        assert!(!Secret::new("x").is_empty());
    }

    #[test]
    fn fingerprint_shows_only_the_tail_of_long_values() {
        assert_eq!(AccessToken::new(TOKEN).fingerprint(), "…4567");
        assert_eq!(Secret::new(TOKEN).fingerprint(), "…4567");
        assert_eq!(AccessToken::new("short").fingerprint(), "…");
        assert_eq!(AccessToken::new("").fingerprint(), "…");
        // Multi-byte characters must not split a code point.
        assert_eq!(
            AccessToken::new("ééééééééééééééééabcd").fingerprint(),
            "…abcd"
        );
        assert_eq!(
            AccessToken::new("aaaaaaaaaaaaaaaaéééé").fingerprint(),
            "…éééé"
        );
    }

    #[test]
    fn deserializes_from_a_plain_string() {
        let token: AccessToken = serde_json::from_str(&format!("\"{TOKEN}\"")).unwrap();
        assert_eq!(token.expose(), TOKEN);
        let secret: Secret = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(secret.expose(), "abc");
        assert!(serde_json::from_str::<AccessToken>("42").is_err());
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Cached {
        #[serde(with = "stored")]
        token: AccessToken,
        #[serde(with = "stored::option", default)]
        previous: Option<AccessToken>,
    }

    #[test]
    fn stored_helpers_round_trip() {
        let cached = Cached {
            token: AccessToken::new(TOKEN),
            previous: Some(AccessToken::new("old-token")),
        };
        let json = serde_json::to_string(&cached).unwrap();
        assert_eq!(
            json,
            format!("{{\"token\":\"{TOKEN}\",\"previous\":\"old-token\"}}")
        );
        assert_eq!(serde_json::from_str::<Cached>(&json).unwrap(), cached);

        let none = Cached {
            token: AccessToken::new(TOKEN),
            previous: None,
        };
        let json = serde_json::to_string(&none).unwrap();
        assert!(json.contains("\"previous\":null"));
        assert_eq!(serde_json::from_str::<Cached>(&json).unwrap(), none);
        let missing: Cached = serde_json::from_str(&format!("{{\"token\":\"{TOKEN}\"}}")).unwrap();
        assert_eq!(missing.previous, None);
        // The cached struct's own Debug stays redacted.
        assert!(!format!("{cached:?}").contains(TOKEN));
    }

    #[test]
    fn serialize_exposed_is_callable_directly() {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::new(&mut out);
        stored::serialize_exposed(&AccessToken::new("abc"), &mut ser).unwrap();
        assert_eq!(out, b"\"abc\"");
    }
}
