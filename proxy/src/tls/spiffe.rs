//! SPIFFE IDs: `spiffe://<trust domain>/<path>`, read from a certificate's URI SAN.

use std::fmt;

use rustls::pki_types::CertificateDer;

/// A SPIFFE ID, checked against the SPIFFE ID specification: scheme `spiffe`, a
/// lower-case trust domain of `[a-z0-9._-]`, path segments of `[A-Za-z0-9._-]` that are
/// neither empty, `.` nor `..`; no query, fragment, port or user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffeId {
    /// The trust domain, for example `cluster.local`.
    pub trust_domain: String,
    /// The path, `""` or starting with `/`.
    pub path: String,
}

impl SpiffeId {
    /// Parses a SPIFFE ID; `None` if `s` is not one.
    pub fn parse(s: &str) -> Option<SpiffeId> {
        let rest = s.strip_prefix("spiffe://")?;
        let (td, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let td_ok = !td.is_empty()
            && td
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_'));
        let path_ok = path.is_empty()
            || path[1..].split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
            });
        (td_ok && path_ok).then(|| SpiffeId {
            trust_domain: td.to_owned(),
            path: path.to_owned(),
        })
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}{}", self.trust_domain, self.path)
    }
}

/// What a certificate's URI SANs say about its SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpiffeSan {
    /// Exactly one URI SAN, a valid SPIFFE ID (what an X.509-SVID carries).
    Id(SpiffeId),
    /// No URI SAN at all.
    None,
    /// A URI SAN that is not a SPIFFE ID, or more than one.
    Invalid,
}

/// The SPIFFE ID of an end-entity certificate (its one URI SAN), if it has one.
pub fn spiffe_id_of(cert: &CertificateDer<'_>) -> Option<SpiffeId> {
    match spiffe_san(cert) {
        SpiffeSan::Id(id) => Some(id),
        _ => None,
    }
}

/// Reads the URI SANs of an end-entity certificate.
pub fn spiffe_san(cert: &CertificateDer<'_>) -> SpiffeSan {
    let Ok(ee) = webpki::EndEntityCert::try_from(cert) else {
        return SpiffeSan::Invalid;
    };
    let mut uris = ee.valid_uri_names();
    match (uris.next(), uris.next()) {
        (None, _) => SpiffeSan::None,
        (Some(uri), None) => SpiffeId::parse(uri).map_or(SpiffeSan::Invalid, SpiffeSan::Id),
        _ => SpiffeSan::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids_follow_the_specification() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/orders").unwrap();
        assert_eq!(id.trust_domain, "cluster.local");
        assert_eq!(id.path, "/ns/shop/sa/orders");
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/shop/sa/orders");
        assert!(SpiffeId::parse("spiffe://cluster.local").is_some());
        for bad in [
            "http://cluster.local/a",
            "spiffe://",
            "spiffe://Cluster.local/a",
            "spiffe://cluster.local/a//b",
            "spiffe://cluster.local/a/../b",
            "spiffe://cluster.local:8080/a",
            "spiffe://cluster.local/a?x=1",
            "spiffe://user@cluster.local/a",
            "spiffe://cluster.local/",
        ] {
            assert!(SpiffeId::parse(bad).is_none(), "{bad}");
        }
    }
}
