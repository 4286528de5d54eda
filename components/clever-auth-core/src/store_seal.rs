//! Token records as a shared store holds them: the token sealed with AES-256-GCM under the
//! deployment's store key, so a Redis dump, a replica or a stray `MONITOR` holds nothing a
//! caller could present to Clever. The record's other fields (district, expiry, scopes) stay
//! readable: the host's expiry gauge and an operator's `redis-cli` need them, and they lend
//! no power.
//!
//! The sealed token is `sealed.v1.<key id>.<nonce>.<ciphertext>` (base64url), authenticated
//! together with the district id, so a sealed token moved into another district's record does
//! not open. Two keys may be given, current and previous: records sealed with either open, new
//! ones are sealed with the current one, so a rotation loses no token. Sans-IO: the caller
//! brings the nonce (12 fresh random bytes per write).

use crate::lifecycle::TokenEntry;
use crate::settings::SettingError;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256};

/// The setting that carries the current key (base64 of 32 bytes), through the secrets provider.
pub const KEY_SETTING: &str = "clever_store_key";
/// The setting that carries the previous key, during a rotation.
pub const PREVIOUS_KEY_SETTING: &str = "clever_store_key_previous";
/// `required` when the store is shared: then no token is written or read unsealed.
pub const MODE_SETTING: &str = "clever_store_encryption";
pub const REQUIRED: &str = "required";

const SEALED_PREFIX: &str = "sealed.v1.";
const NONCE_LEN: usize = 12;

/// One store key. `Debug` shows its id only.
#[derive(Clone)]
pub struct StoreKey {
    id: String,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreKey({})", self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{0} is not base64")]
    NotBase64(&'static str),
    #[error("{0} must be 32 bytes (base64 of 32 random bytes), not {1}")]
    WrongLength(&'static str, usize),
}

impl KeyError {
    /// The setting whose value is wrong.
    pub fn setting(&self) -> &'static str {
        match self {
            KeyError::NotBase64(s) | KeyError::WrongLength(s, _) => s,
        }
    }
}

/// The settings whose errors are the store's sealing, beside `settings::SETTINGS`.
pub const SETTINGS: [&str; 3] = [KEY_SETTING, PREVIOUS_KEY_SETTING, MODE_SETTING];

/// Why no token can be written or read as the settings stand, as a settings error: a
/// malformed key, or a shared store with no key (then calling Clever would fetch tokens
/// that cannot be kept).
pub fn settings_error(sealing: &Result<Sealing, KeyError>) -> Option<SettingError> {
    match sealing {
        Err(e) => Some(SettingError {
            setting: e.setting(),
            message: e.to_string(),
        }),
        Ok(s) if s.required && s.keys.is_none() => Some(SettingError {
            setting: KEY_SETTING,
            message: SealError::NoKey.to_string(),
        }),
        Ok(_) => None,
    }
}

impl StoreKey {
    /// `value` is base64 (standard alphabet) of 32 bytes; `setting` names it in errors.
    pub fn parse(setting: &'static str, value: &str) -> Result<StoreKey, KeyError> {
        let bytes = STANDARD
            .decode(value.trim())
            .map_err(|_| KeyError::NotBase64(setting))?;
        if bytes.len() != 32 {
            return Err(KeyError::WrongLength(setting, bytes.len()));
        }
        let digest = Sha256::digest(&bytes);
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        let cipher = Aes256Gcm::new_from_slice(&bytes)
            .map_err(|_| KeyError::WrongLength(setting, bytes.len()))?;
        Ok(StoreKey { id, cipher })
    }

    /// A short fingerprint (the first 4 bytes of the key's SHA-256, hex): which key sealed a
    /// record, without saying anything usable about the key.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The keys a deployment seals with: the current one, and the previous one while rotating.
#[derive(Debug, Clone)]
pub struct StoreKeys {
    pub current: StoreKey,
    pub previous: Option<StoreKey>,
}

impl StoreKeys {
    pub fn parse(current: &str, previous: Option<&str>) -> Result<StoreKeys, KeyError> {
        Ok(StoreKeys {
            current: StoreKey::parse(KEY_SETTING, current)?,
            previous: previous
                .filter(|p| !p.trim().is_empty())
                .map(|p| StoreKey::parse(PREVIOUS_KEY_SETTING, p))
                .transpose()?,
        })
    }

    fn by_id(&self, id: &str) -> Option<&StoreKey> {
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .find(|k| k.id == id)
    }
}

/// How the component treats token records.
#[derive(Debug, Clone)]
pub struct Sealing {
    pub keys: Option<StoreKeys>,
    /// The store is shared: never write or accept a token in the clear.
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the store is shared but no store key is configured (clever_store_key); tokens are not written in the clear")]
    NoKey,
    #[error("a sealed token record, but no store key is configured to open it")]
    SealedWithoutKey,
    #[error("the record was sealed with key {0}, which is neither the current nor the previous store key")]
    UnknownKey(String),
    #[error("the sealed token does not open with its key (altered, or moved from another record)")]
    DoesNotOpen,
    #[error("a token in the clear on a shared store; refused")]
    Plaintext,
    #[error("malformed token record: {0}")]
    Malformed(String),
}

/// The record's bytes as stored: sealed when keys are given, else the plain record (only
/// when sealing is not required).
pub fn seal(
    sealing: &Sealing,
    entry: &TokenEntry,
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>, SealError> {
    let malformed = |e: serde_json::Error| SealError::Malformed(e.to_string());
    let mut value = serde_json::to_value(entry).map_err(malformed)?;
    match &sealing.keys {
        Some(keys) => {
            let plain = entry.token.expose().as_bytes();
            let key = &keys.current;
            let sealed = key
                .cipher
                .encrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: plain,
                        aad: entry.district_id.as_bytes(),
                    },
                )
                .map_err(|_| SealError::Malformed("encryption failed".into()))?;
            value["token"] = serde_json::Value::String(format!(
                "{SEALED_PREFIX}{}.{}.{}",
                key.id,
                URL_SAFE_NO_PAD.encode(nonce),
                URL_SAFE_NO_PAD.encode(sealed)
            ));
        }
        None if sealing.required => return Err(SealError::NoKey),
        None => {}
    }
    serde_json::to_vec(&value).map_err(malformed)
}

/// The record from its stored bytes, its token opened.
pub fn open(sealing: &Sealing, bytes: &[u8]) -> Result<TokenEntry, SealError> {
    let malformed = |e: serde_json::Error| SealError::Malformed(e.to_string());
    let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(malformed)?;
    let token = value["token"]
        .as_str()
        .ok_or_else(|| SealError::Malformed("no token field".into()))?;
    if let Some(sealed) = token.strip_prefix(SEALED_PREFIX) {
        let keys = sealing.keys.as_ref().ok_or(SealError::SealedWithoutKey)?;
        let mut parts = sealed.splitn(3, '.');
        let (Some(id), Some(nonce), Some(ciphertext)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SealError::Malformed(
                "sealed token has too few parts".into(),
            ));
        };
        let key = keys
            .by_id(id)
            .ok_or_else(|| SealError::UnknownKey(id.to_string()))?;
        let nonce = URL_SAFE_NO_PAD
            .decode(nonce)
            .ok()
            .filter(|n| n.len() == NONCE_LEN)
            .ok_or_else(|| SealError::Malformed("sealed token's nonce".into()))?;
        let ciphertext = URL_SAFE_NO_PAD
            .decode(ciphertext)
            .map_err(|_| SealError::Malformed("sealed token's ciphertext".into()))?;
        let district = value["district_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let plain = key
            .cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: district.as_bytes(),
                },
            )
            .map_err(|_| SealError::DoesNotOpen)?;
        let plain = String::from_utf8(plain).map_err(|_| SealError::DoesNotOpen)?;
        value["token"] = serde_json::Value::String(plain);
    } else if sealing.required || sealing.keys.is_some() {
        // With a key configured, a record in the clear was not written by this deployment
        // (or predates its key): it is not handed out.
        return Err(SealError::Plaintext);
    }
    serde_json::from_value(value).map_err(malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::AccessToken;

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    fn entry(district: &str, token: &str) -> TokenEntry {
        TokenEntry::new(
            district.into(),
            AccessToken::new(token),
            vec!["read:districts".into()],
            1_000,
            4_000,
            0.75,
        )
    }

    fn sealing(current: &str, previous: Option<&str>) -> Sealing {
        Sealing {
            keys: Some(StoreKeys::parse(current, previous).expect("keys")),
            required: true,
        }
    }

    #[test]
    fn a_sealed_record_holds_no_token_and_opens_to_the_same_entry() {
        let s = sealing(K1, None);
        let e = entry("d-1", "tok-secret-value");
        let bytes = seal(&s, &e, [7; 12]).expect("seal");
        let text = String::from_utf8(bytes.clone()).expect("utf8");
        assert!(!text.contains("tok-secret-value"), "{text}");
        assert!(
            text.contains("\"expires_at\":5000"),
            "metadata stays readable: {text}"
        );
        assert_eq!(open(&s, &bytes).expect("open"), e);
    }

    #[test]
    fn a_fresh_nonce_gives_a_different_record() {
        let s = sealing(K1, None);
        let e = entry("d-1", "tok");
        assert_ne!(seal(&s, &e, [1; 12]), seal(&s, &e, [2; 12]));
    }

    #[test]
    fn the_previous_key_still_opens_and_new_writes_use_the_current() {
        let old = sealing(K1, None);
        let e = entry("d-1", "tok");
        let sealed_old = seal(&old, &e, [3; 12]).expect("seal");
        let rotated = sealing(K2, Some(K1));
        assert_eq!(open(&rotated, &sealed_old).expect("previous key opens"), e);
        let sealed_new = seal(&rotated, &e, [4; 12]).expect("seal");
        let id2 = rotated
            .keys
            .as_ref()
            .map(|k| k.current.id().to_string())
            .unwrap_or_default();
        assert!(String::from_utf8_lossy(&sealed_new).contains(&id2));
        // After the rotation completes (previous dropped), the old record no longer opens.
        let after = sealing(K2, None);
        assert!(matches!(
            open(&after, &sealed_old),
            Err(SealError::UnknownKey(_))
        ));
    }

    #[test]
    fn a_token_moved_to_another_district_or_altered_does_not_open() {
        let s = sealing(K1, None);
        let bytes = seal(&s, &entry("d-1", "tok"), [5; 12]).expect("seal");
        let moved = String::from_utf8_lossy(&bytes).replace("\"d-1\"", "\"d-2\"");
        assert_eq!(open(&s, moved.as_bytes()), Err(SealError::DoesNotOpen));
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        let t = v["token"].as_str().expect("token").to_string();
        let flipped = format!("{}A", &t[..t.len() - 1]);
        v["token"] = flipped.into();
        let altered = serde_json::to_vec(&v).expect("json");
        assert!(open(&s, &altered).is_err());
    }

    #[test]
    fn a_shared_store_never_takes_or_gives_a_token_in_the_clear() {
        let none = Sealing {
            keys: None,
            required: true,
        };
        assert_eq!(
            seal(&none, &entry("d", "t"), [0; 12]),
            Err(SealError::NoKey)
        );
        let plain = serde_json::to_vec(&entry("d", "t")).expect("json");
        assert_eq!(open(&none, &plain), Err(SealError::Plaintext));
        assert_eq!(open(&sealing(K1, None), &plain), Err(SealError::Plaintext));
    }

    #[test]
    fn the_memory_store_keeps_plain_records() {
        let memory = Sealing {
            keys: None,
            required: false,
        };
        let e = entry("d", "t");
        let bytes = seal(&memory, &e, [0; 12]).expect("plain");
        assert_eq!(open(&memory, &bytes).expect("open"), e);
        let sealed = seal(&sealing(K1, None), &e, [0; 12]).expect("seal");
        assert_eq!(open(&memory, &sealed), Err(SealError::SealedWithoutKey));
    }

    #[test]
    fn a_shared_store_without_a_usable_key_is_a_settings_error_naming_the_key() {
        let required = |keys| {
            Ok(Sealing {
                keys,
                required: true,
            })
        };
        let missing = settings_error(&required(None)).expect("no key on a shared store");
        assert_eq!(missing.setting, KEY_SETTING);
        assert!(missing.message.contains("no store key"), "{missing}");
        assert_eq!(
            settings_error(&required(Some(sealing(K1, None).keys.expect("key")))),
            None
        );
        let memory = Ok(Sealing {
            keys: None,
            required: false,
        });
        assert_eq!(settings_error(&memory), None);
        let short = STANDARD.encode([1u8; 16]);
        let bad = StoreKeys::parse(K1, Some(&short)).map(|k| Sealing {
            keys: Some(k),
            required: true,
        });
        let named = settings_error(&bad).expect("a bad previous key");
        assert_eq!(named.setting, PREVIOUS_KEY_SETTING);
        assert!(!named.message.contains(&short));
    }

    #[test]
    fn bad_keys_are_named_without_being_repeated() {
        let e = StoreKeys::parse("not base64!!", None).expect_err("bad");
        assert_eq!(e.to_string(), "clever_store_key is not base64");
        let short = STANDARD.encode([1u8; 16]);
        let e = StoreKeys::parse(K1, Some(&short)).expect_err("short");
        assert!(
            e.to_string()
                .contains("clever_store_key_previous must be 32 bytes"),
            "{e}"
        );
        assert!(!e.to_string().contains(&short));
        assert!(!format!("{:?}", StoreKeys::parse(K1, None)).contains(K1));
    }
}
