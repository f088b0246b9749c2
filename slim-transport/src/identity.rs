//! Shared-secret identity tokens, as SLIM v1.3 mints and checks them.
//!
//! A token is `id:ts:nonce:claims_b64:mac_b64`: `ts` in Unix seconds, a
//! 12-byte nonce and the claims JSON in base64url without padding, and the MAC
//! = base64url-nopad(HMAC-SHA256(secret, "id:ts:nonce:claims_b64")). Tokens are
//! valid for 3600 s and may be at most 5 s in the future. A fresh token is
//! minted for every message. The claims carry `pubkey`: the standard-base64
//! Ed25519 public key of the MLS leaf that owns the token.
//!
//! Providers and verifiers are traits so other identities (JWT, SPIFFE) can be
//! added. Every check takes `now` explicitly (the `*_at` methods) so callers
//! such as the sans-IO session layer can run on a virtual clock.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::Rng as _;
use rand::distr::Alphanumeric;
use sha2::Sha256;

/// How long a token stays valid after it was minted, in seconds.
pub const TOKEN_VALIDITY_SECS: u64 = 3600;
/// How far in the future a token's timestamp may be, in seconds.
pub const CLOCK_SKEW_SECS: u64 = 5;
/// The shortest shared secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// Why a token could not be minted or was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("shared secret must be at least {MIN_SECRET_LEN} bytes")]
    SecretTooShort,
    #[error("identity id must be non-empty, without ':' or whitespace")]
    BadId,
    #[error("token must have 5 ':'-separated fields")]
    Malformed,
    #[error("token timestamp is not a number")]
    BadTimestamp,
    #[error("token expired {0} s ago")]
    Expired(u64),
    #[error("token is {0} s in the future")]
    FromTheFuture(u64),
    #[error("token MAC does not match")]
    BadMac,
    #[error("token claims are not valid base64url JSON")]
    BadClaims,
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The token's id field (`<base_id>_<8 random alphanumerics>`).
    pub sub: String,
    /// Minting time, Unix seconds.
    pub iat: u64,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Standard-base64 Ed25519 public key, when the token carries one.
    pub pubkey: Option<String>,
}

/// Mints identity tokens.
pub trait IdentityProvider: Send + Sync {
    /// The stable identity id used in every token.
    fn id(&self) -> &str;
    /// A fresh token as of `now` (Unix seconds).
    fn token_at(&self, now: u64) -> Result<String, IdentityError>;
    /// A fresh token as of `now` whose randomness (its nonce) is `nonce`,
    /// drawn by the caller: the sans-IO session core mints this way, so it
    /// keeps no RNG of its own. Providers whose tokens carry no nonce
    /// ignore it.
    fn token_with_nonce(&self, now: u64, nonce: [u8; 12]) -> Result<String, IdentityError> {
        let _ = nonce;
        self.token_at(now)
    }
    /// A fresh token as of the system clock.
    fn token(&self) -> Result<String, IdentityError> {
        self.token_at(unix_now())
    }
}

/// Checks identity tokens.
pub trait IdentityVerifier: Send + Sync {
    /// Verifies `token` as of `now` (Unix seconds) and returns its claims.
    fn verify_at(&self, token: &str, now: u64) -> Result<Claims, IdentityError>;
    /// Verifies `token` as of the system clock.
    fn verify(&self, token: &str) -> Result<Claims, IdentityError> {
        self.verify_at(token, unix_now())
    }
}

/// The base64url claims JSON of a token: `{"pubkey":..}` or `{}`.
fn claims_b64(pubkey: Option<&str>) -> String {
    let claims = match pubkey {
        Some(pk) => serde_json::json!({ "pubkey": pk }),
        None => serde_json::json!({}),
    };
    URL_SAFE_NO_PAD.encode(claims.to_string())
}

/// Seconds since the Unix epoch from the system clock.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Shared-secret identity: provider and verifier in one, as in SLIM v1.3.
#[derive(Clone)]
pub struct SharedSecret {
    id: Arc<str>,
    /// HMAC-SHA256 already keyed with the secret: cloning it skips hashing
    /// the key again for every token minted or checked.
    keyed: Arc<Hmac<Sha256>>,
    /// The claims field of every token this identity mints: `{}`, or the
    /// public key given to [`SharedSecret::with_public_key`].
    claims_b64: Arc<str>,
}

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("SharedSecret")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SharedSecret {
    /// A new identity whose id is `<base_id>_<8 random alphanumerics>`.
    pub fn new(base_id: &str, secret: &str) -> Result<Self, IdentityError> {
        if base_id.is_empty() || base_id.contains(':') || base_id.chars().any(char::is_whitespace) {
            return Err(IdentityError::BadId);
        }
        if secret.len() < MIN_SECRET_LEN {
            return Err(IdentityError::SecretTooShort);
        }
        let suffix: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(8)
            .map(char::from)
            .collect();
        // HMAC accepts keys of any length, so this cannot fail.
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
            .map_err(|_| IdentityError::SecretTooShort)?;
        Ok(Self {
            id: format!("{base_id}_{suffix}").into(),
            keyed: Arc::new(keyed),
            claims_b64: claims_b64(None).into(),
        })
    }

    /// The same identity, with tokens that claim `public_key` (raw Ed25519
    /// bytes) as theirs. The MLS layer binds its leaf key this way.
    pub fn with_public_key(&self, public_key: &[u8]) -> Self {
        Self {
            claims_b64: claims_b64(Some(&STANDARD.encode(public_key))).into(),
            ..self.clone()
        }
    }

    fn mac(&self, signed: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::clone(&self.keyed);
        mac.update(signed.as_bytes());
        mac
    }
}

impl IdentityProvider for SharedSecret {
    fn id(&self) -> &str {
        &self.id
    }

    fn token_at(&self, now: u64) -> Result<String, IdentityError> {
        let mut nonce = [0u8; 12];
        rand::rng().fill(&mut nonce);
        self.token_with_nonce(now, nonce)
    }

    fn token_with_nonce(&self, now: u64, nonce: [u8; 12]) -> Result<String, IdentityError> {
        // `<id>:<now>:<nonce>:<claims>:<mac>`, built in one buffer (a token
        // is minted for every message a session sends): 20 digits at most
        // for `now`, 16 base64 characters for the nonce, 43 for the MAC.
        let mut token = String::with_capacity(self.id.len() + self.claims_b64.len() + 84);
        token.push_str(&self.id);
        token.push(':');
        // Writing to a `String` cannot fail.
        let _ = write!(token, "{now}:");
        URL_SAFE_NO_PAD.encode_string(nonce, &mut token);
        token.push(':');
        token.push_str(&self.claims_b64);
        let mac = self.mac(&token).finalize().into_bytes();
        token.push(':');
        URL_SAFE_NO_PAD.encode_string(mac, &mut token);
        Ok(token)
    }
}

impl IdentityVerifier for SharedSecret {
    fn verify_at(&self, token: &str, now: u64) -> Result<Claims, IdentityError> {
        let mut fields = token.split(':');
        let (Some(id), Some(ts), Some(_nonce), Some(claims_b64), Some(mac_b64), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(IdentityError::Malformed);
        };
        let ts: u64 = ts.parse().map_err(|_| IdentityError::BadTimestamp)?;
        if ts > now {
            if ts - now > CLOCK_SKEW_SECS {
                return Err(IdentityError::FromTheFuture(ts - now));
            }
        } else if now - ts > TOKEN_VALIDITY_SECS {
            return Err(IdentityError::Expired(now - ts - TOKEN_VALIDITY_SECS));
        }
        // An HMAC-SHA256 tag is 32 bytes; anything longer is no tag.
        let mut mac = [0u8; 33];
        let mac_len = URL_SAFE_NO_PAD
            .decode_slice(mac_b64, &mut mac)
            .map_err(|_| IdentityError::BadMac)?;
        let signed_len = token.len() - mac_b64.len() - 1;
        self.mac(&token[..signed_len])
            .verify_slice(&mac[..mac_len])
            .map_err(|_| IdentityError::BadMac)?;
        let pubkey = if claims_b64.is_empty() {
            None
        } else {
            let json = URL_SAFE_NO_PAD
                .decode(claims_b64)
                .map_err(|_| IdentityError::BadClaims)?;
            let v: serde_json::Value =
                serde_json::from_slice(&json).map_err(|_| IdentityError::BadClaims)?;
            v.get("pubkey")
                .or_else(|| v.get("custom_claims").and_then(|c| c.get("pubkey")))
                .and_then(|p| p.as_str())
                .map(str::to_owned)
        };
        Ok(Claims {
            sub: id.to_string(),
            iat: ts,
            exp: ts + TOKEN_VALIDITY_SECS,
            pubkey,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The public test secret and a token captured from a live SLIM v1.3 app.
    const SECRET: &str = "kjandjansdiasb8udaijdniasdaindasndasndasndasndasndasndasndas";
    const LIVE_TOKEN: &str = "alice_kzD1X3gf:1795290177:ZuvPiRb4WW-Xr9HN:eyJwdWJrZXkiOiJ6dXc2VlB2dlE4TGZrOUVjNko5bS8zZ1lNOWRKRjJORFlFNmVEYTgxY2VRPSJ9:hsEBjvXTVVy7XedeAh_O9pI-zGOB6VVsbA-3n8YYAqM";
    const LIVE_TS: u64 = 1795290177;

    fn verifier() -> SharedSecret {
        SharedSecret::new("bob", SECRET).unwrap()
    }

    #[test]
    fn a_token_minted_with_a_given_nonce_is_reproducible_and_verifies() {
        let alice = SharedSecret::new("alice", SECRET).unwrap();
        let nonce = [7u8; 12];
        let first = alice.token_with_nonce(LIVE_TS, nonce).unwrap();
        assert_eq!(first, alice.token_with_nonce(LIVE_TS, nonce).unwrap());
        assert_ne!(first, alice.token_with_nonce(LIVE_TS, [8u8; 12]).unwrap());
        let claims = verifier().verify_at(&first, LIVE_TS).unwrap();
        assert_eq!(claims.sub, alice.id());
    }

    #[test]
    fn verifies_a_token_minted_by_official_slim() {
        let c = verifier().verify_at(LIVE_TOKEN, LIVE_TS + 10).unwrap();
        assert_eq!(c.sub, "alice_kzD1X3gf");
        assert_eq!(c.iat, LIVE_TS);
        assert_eq!(
            c.pubkey.as_deref(),
            Some("zuw6VPvvQ8Lfk9Ec6J9m/3gYM9dJF2NDYE6eDa81ceQ=")
        );
    }

    #[test]
    fn minted_token_round_trips_with_its_public_key() {
        let alice = SharedSecret::new("org/ns/alice", SECRET)
            .unwrap()
            .with_public_key(&[7u8; 32]);
        let token = alice.token_at(1000).unwrap();
        assert_eq!(token.split(':').count(), 5);
        let c = verifier().verify_at(&token, 1000).unwrap();
        assert_eq!(c.sub, alice.id());
        assert_eq!(c.pubkey, Some(STANDARD.encode([7u8; 32])));
    }

    #[test]
    fn ids_get_a_random_suffix() {
        let a = SharedSecret::new("org/ns/a", SECRET).unwrap();
        assert!(a.id().starts_with("org/ns/a_"));
        assert_eq!(a.id().len(), "org/ns/a_".len() + 8);
    }

    #[test]
    fn token_with_wrong_mac_is_refused() {
        let other = SharedSecret::new("x", &"z".repeat(40)).unwrap();
        let token = other.token_at(1000).unwrap();
        assert_eq!(
            verifier().verify_at(&token, 1000),
            Err(IdentityError::BadMac)
        );
        let mut tampered = LIVE_TOKEN.to_string();
        tampered.replace_range(0..5, "mallo");
        assert_eq!(
            verifier().verify_at(&tampered, LIVE_TS),
            Err(IdentityError::BadMac)
        );
    }

    #[test]
    fn expired_token_is_refused() {
        let v = verifier();
        assert!(
            v.verify_at(LIVE_TOKEN, LIVE_TS + TOKEN_VALIDITY_SECS)
                .is_ok()
        );
        assert_eq!(
            v.verify_at(LIVE_TOKEN, LIVE_TS + TOKEN_VALIDITY_SECS + 1),
            Err(IdentityError::Expired(1))
        );
    }

    #[test]
    fn token_from_the_future_is_refused_beyond_the_skew() {
        let v = verifier();
        assert!(v.verify_at(LIVE_TOKEN, LIVE_TS - CLOCK_SKEW_SECS).is_ok());
        assert_eq!(
            v.verify_at(LIVE_TOKEN, LIVE_TS - CLOCK_SKEW_SECS - 1),
            Err(IdentityError::FromTheFuture(CLOCK_SKEW_SECS + 1))
        );
    }

    #[test]
    fn malformed_tokens_are_refused_without_panic() {
        let v = verifier();
        for t in [
            "",
            "a:b",
            "a:b:c:d:e:f",
            "id:notanumber:n:c:m",
            "id:1:n:c:!!!",
            "id:1:n:%%:m",
        ] {
            assert!(v.verify_at(t, 1).is_err(), "{t:?} accepted");
        }
    }

    #[test]
    fn short_secret_and_bad_id_are_rejected() {
        assert_eq!(
            SharedSecret::new("a", "short").unwrap_err(),
            IdentityError::SecretTooShort
        );
        assert_eq!(
            SharedSecret::new("a b", SECRET).unwrap_err(),
            IdentityError::BadId
        );
        assert_eq!(
            SharedSecret::new("", SECRET).unwrap_err(),
            IdentityError::BadId
        );
    }
}
