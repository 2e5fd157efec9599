//! JSON Web Tokens (RFC 7519) in compact JWS form: decoding, signature verification and
//! the registered claims.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::jwks::{Entry, Key};

/// Why a token is refused; each maps to an `error_description` in `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url parts of JSON.
    Malformed(&'static str),
    /// An algorithm weft does not accept (`none` included).
    Algorithm(String),
    /// No key fits the token's `kid` and algorithm.
    UnknownKey,
    /// The signature does not verify.
    Signature,
    /// `exp` has passed.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// `iss` is not the expected issuer.
    Issuer,
    /// `aud` holds none of the expected audiences.
    Audience,
}

impl TokenError {
    /// A short description for clients.
    pub fn describe(&self) -> String {
        match self {
            TokenError::Malformed(w) => format!("malformed token: {w}"),
            TokenError::Algorithm(a) => format!("algorithm {a} not accepted"),
            TokenError::UnknownKey => "no key matches the token".into(),
            TokenError::Signature => "invalid signature".into(),
            TokenError::Expired => "token expired".into(),
            TokenError::NotYetValid => "token not yet valid".into(),
            TokenError::Issuer => "wrong issuer".into(),
            TokenError::Audience => "wrong audience".into(),
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// What a token must satisfy besides its signature.
pub struct Expectations<'a> {
    /// The `iss` it must carry, if any.
    pub issuer: Option<&'a str>,
    /// Audiences it may be for (any; none: not checked).
    pub audiences: &'a [String],
    /// Seconds of clock difference tolerated.
    pub skew_secs: u64,
    /// Now, in seconds since the epoch.
    pub now_secs: u64,
}

fn decode_part(part: &str, what: &'static str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(what))
}

/// Verifies a compact JWS and returns its claims.
pub fn verify(
    token: &str,
    keys: &[Entry],
    expect: &Expectations<'_>,
) -> Result<Map<String, Value>, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("not three parts"));
    };
    let header: Header = serde_json::from_slice(&decode_part(h, "header")?)
        .map_err(|_| TokenError::Malformed("header"))?;
    if !matches!(header.alg.as_str(), "RS256" | "ES256" | "HS256") {
        return Err(TokenError::Algorithm(header.alg));
    }
    let signature = decode_part(s, "signature")?;
    let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
    let candidates = keys.iter().filter(|e| {
        e.key.alg() == header.alg
            && (header.kid.is_none() || e.kid.is_none() || e.kid == header.kid)
    });
    let mut any = false;
    let mut verified = false;
    for entry in candidates {
        any = true;
        if check(&entry.key, signed, &signature) {
            verified = true;
            break;
        }
    }
    if !any {
        return Err(TokenError::UnknownKey);
    }
    if !verified {
        return Err(TokenError::Signature);
    }
    let claims: Map<String, Value> = serde_json::from_slice(&decode_part(p, "payload")?)
        .map_err(|_| TokenError::Malformed("payload"))?;
    check_claims(&claims, expect)?;
    Ok(claims)
}

fn check(key: &Key, signed: &[u8], signature: &[u8]) -> bool {
    match key {
        Key::Rsa(vk) => {
            use rsa::signature::Verifier;
            rsa::pkcs1v15::Signature::try_from(signature)
                .is_ok_and(|sig| vk.verify(signed, &sig).is_ok())
        }
        Key::Ec(vk) => {
            use p256::ecdsa::signature::Verifier;
            p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| vk.verify(signed, &sig).is_ok())
        }
        Key::Hmac(secret) => match Hmac::<sha2::Sha256>::new_from_slice(secret) {
            Ok(mut mac) => {
                mac.update(signed);
                mac.verify_slice(signature).is_ok()
            }
            Err(_) => false,
        },
    }
}

/// Checks `exp`, `nbf`, `iss` and `aud`.
pub fn check_claims(
    claims: &Map<String, Value>,
    expect: &Expectations<'_>,
) -> Result<(), TokenError> {
    let number = |name: &str| claims.get(name).and_then(Value::as_f64);
    if let Some(exp) = number("exp") {
        if (expect.now_secs as f64) >= exp + expect.skew_secs as f64 {
            return Err(TokenError::Expired);
        }
    }
    if let Some(nbf) = number("nbf") {
        if (expect.now_secs as f64) + (expect.skew_secs as f64) < nbf {
            return Err(TokenError::NotYetValid);
        }
    }
    if let Some(iss) = expect.issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(iss) {
            return Err(TokenError::Issuer);
        }
    }
    if !expect.audiences.is_empty() {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => expect.audiences.iter().any(|x| x == a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| expect.audiences.iter().any(|x| x == a)),
            _ => false,
        };
        if !ok {
            return Err(TokenError::Audience);
        }
    }
    Ok(())
}
