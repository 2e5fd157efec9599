//! Making certificates for development and tests (`weft cert`): a throwaway CA for a
//! trust domain, and SPIFFE X.509-SVIDs it signs. Keys are ECDSA P-256.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

/// A certificate and its private key, as PEM.
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8). A secret: write it with mode 0600.
    pub key_pem: String,
}

/// A new self-signed CA for `trust_domain`, valid from now for `days`.
pub fn issue_ca(trust_domain: &str, days: i64) -> Result<Issued, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    // A distinct name per CA, so that certificates of two CAs for one trust domain
    // are told apart as "unknown issuer", not as a bad signature.
    params.distinguished_name.push(
        DnType::CommonName,
        format!(
            "weft development CA for {trust_domain} ({:08x})",
            fastrand::u32(..)
        ),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(days);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// What an SVID is for.
pub struct SvidRequest<'a> {
    /// Its SPIFFE ID (`spiffe://<trust domain>/<path>`), its one URI SAN; none for a
    /// plain server certificate.
    pub spiffe_id: Option<&'a str>,
    /// DNS names it is also valid for (`*.` wildcards allowed).
    pub dns_names: &'a [String],
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

/// A certificate for `req`, signed by the CA whose certificate and key are given (PEM),
/// usable both as a server and as a client certificate.
pub fn issue_svid(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    req: &SvidRequest<'_>,
) -> Result<Issued, rcgen::Error> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key)?;
    let mut params = CertificateParams::new(req.dns_names.to_vec())?;
    let cn = req
        .spiffe_id
        .map(str::to_owned)
        .or_else(|| req.dns_names.first().cloned())
        .unwrap_or_else(|| "weft".to_owned());
    params.distinguished_name.push(DnType::CommonName, cn);
    if let Some(id) = req.spiffe_id {
        params.subject_alt_names.push(SanType::URI(id.try_into()?));
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = req.not_before;
    params.not_after = req.not_after;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}
