//! Picks the listener's certificate from the client's SNI: an exact DNS name first,
//! then a `*.` wildcard covering exactly one left-most label (RFC 6125), then the first
//! certificate (clients that send no SNI, such as those dialling an IP address).

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Certificates by the names they are valid for.
#[derive(Debug)]
pub struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `example.com` for a certificate valid for `*.example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    /// Indexes `keys` by their DNS names; the first is the default. Earlier
    /// certificates win a name two of them share.
    pub fn new(keys: Vec<Arc<CertifiedKey>>) -> Option<SniResolver> {
        let default = keys.first()?.clone();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for key in &keys {
            let Some(ee) = key.cert.first() else { continue };
            let Ok(parsed) = webpki::EndEntityCert::try_from(ee) else {
                continue;
            };
            for name in parsed.valid_dns_names() {
                let name = name.to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_owned()),
                    None => exact.entry(name),
                }
                .or_insert_with(|| key.clone());
            }
        }
        Some(SniResolver {
            exact,
            wildcard,
            default,
        })
    }

    /// The certificate for a server name.
    pub fn pick(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name else {
            return self.default.clone();
        };
        let name = name.trim_end_matches('.');
        if let Some(k) = self.exact.get(name) {
            return k.clone();
        }
        if let Some(k) = name
            .split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
        {
            return k.clone();
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // rustls hands the name over lower-cased.
        Some(self.pick(hello.server_name()))
    }
}
