//! Verification keys from a JSON Web Key Set (RFC 7517): RSA (RS256), P-256 (ES256) and
//! shared secrets (HS256).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

/// One verification key.
pub enum Key {
    /// RS256.
    Rsa(rsa::pkcs1v15::VerifyingKey<sha2::Sha256>),
    /// ES256.
    Ec(p256::ecdsa::VerifyingKey),
    /// HS256.
    Hmac(Vec<u8>),
}

impl Key {
    /// The JWS algorithm this key verifies.
    pub fn alg(&self) -> &'static str {
        match self {
            Key::Rsa(_) => "RS256",
            Key::Ec(_) => "ES256",
            Key::Hmac(_) => "HS256",
        }
    }
}

/// A key and its id.
pub struct Entry {
    /// `kid`, if the JWK had one.
    pub kid: Option<String>,
    /// The key.
    pub key: Key,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<RawKey>,
}

#[derive(Deserialize)]
struct RawKey {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    k: Option<String>,
}

fn b64(field: &str, v: Option<&String>) -> Result<Vec<u8>, String> {
    let v = v.ok_or_else(|| format!("missing {field}"))?;
    URL_SAFE_NO_PAD
        .decode(v.trim_end_matches('='))
        .map_err(|e| format!("{field} is not base64url: {e}"))
}

fn parse_key(k: &RawKey) -> Result<Option<Key>, String> {
    if k.use_.as_deref().is_some_and(|u| u != "sig") {
        return Ok(None); // an encryption key
    }
    let key = match k.kty.as_str() {
        "RSA" => {
            let n = rsa::BigUint::from_bytes_be(&b64("n", k.n.as_ref())?);
            let e = rsa::BigUint::from_bytes_be(&b64("e", k.e.as_ref())?);
            let public =
                rsa::RsaPublicKey::new(n, e).map_err(|e| format!("invalid RSA key: {e}"))?;
            Key::Rsa(rsa::pkcs1v15::VerifyingKey::new(public))
        }
        "EC" => {
            if k.crv.as_deref() != Some("P-256") {
                return Err(format!("unsupported curve {:?} (P-256 only)", k.crv));
            }
            let (x, y) = (b64("x", k.x.as_ref())?, b64("y", k.y.as_ref())?);
            if x.len() != 32 || y.len() != 32 {
                return Err("P-256 coordinates must be 32 bytes".into());
            }
            let mut point = vec![4u8];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Key::Ec(
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                    .map_err(|_| "invalid P-256 point".to_string())?,
            )
        }
        "oct" => Key::Hmac(b64("k", k.k.as_ref())?),
        _ => return Ok(None),
    };
    if let Some(alg) = &k.alg {
        if alg != key.alg() {
            return Err(format!(
                "alg {alg} does not fit a {} key (weft supports RS256, ES256, HS256)",
                k.kty
            ));
        }
    }
    Ok(Some(key))
}

/// Reads a JWKS. Keys of kinds weft does not verify with are skipped; a malformed key is
/// an error naming it.
pub fn parse(json: &[u8]) -> Result<Vec<Entry>, String> {
    let set: RawSet = serde_json::from_slice(json).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut out = Vec::new();
    for (i, k) in set.keys.iter().enumerate() {
        let what = k.kid.clone().unwrap_or_else(|| format!("keys[{i}]"));
        if let Some(key) = parse_key(k).map_err(|e| format!("key {what}: {e}"))? {
            out.push(Entry {
                kid: k.kid.clone(),
                key,
            });
        }
    }
    if out.is_empty() {
        return Err("no usable signing key (RS256, ES256 or HS256)".into());
    }
    Ok(out)
}
