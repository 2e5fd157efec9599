//! Why a handshake failed, in a few words a metric label and an operator can use.

use rustls::{CertificateError, Error};

use super::verify::SpiffeRefusal;

/// Why a TLS handshake did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Client authentication is required and the client sent no certificate.
    NoClientCertificate,
    /// The peer's certificate has expired.
    Expired,
    /// The peer's certificate is not valid yet.
    NotYetValid,
    /// The peer's certificate does not chain to the trust bundle.
    Untrusted,
    /// The peer's certificate carries no valid SPIFFE ID.
    NoSpiffeId,
    /// The peer's SPIFFE ID is outside the expected trust domain.
    WrongTrustDomain,
    /// The peer's certificate is not valid for the name or ID expected of it.
    WrongName,
    /// Any other problem with the peer's certificate (bad signature, wrong use,
    /// revoked, malformed).
    BadCertificate,
    /// No protocol version, cipher suite or key exchange in common (an old client).
    Incompatible,
    /// The peer refused the handshake with an alert (often: it does not trust our
    /// certificate).
    PeerAlert,
    /// Not TLS, or TLS messages out of order.
    Malformed,
    /// The handshake took longer than the listener's `handshake_timeout`.
    Timeout,
    /// The connection closed during the handshake.
    Closed,
    /// The worker already had `max_handshakes` in progress.
    Overloaded,
    /// Anything else.
    Other,
}

/// A handshake error in words: rustls' own, except that weft's SPIFFE refusals are
/// given as sentences rather than debug output.
pub fn describe(e: &std::io::Error) -> String {
    if let Some(Error::InvalidCertificate(CertificateError::Other(other))) =
        e.get_ref().and_then(|inner| inner.downcast_ref::<Error>())
    {
        if let Some(r) = other.0.downcast_ref::<SpiffeRefusal>() {
            return format!("invalid peer certificate: {r}");
        }
    }
    e.to_string()
}

impl Refusal {
    /// Every reason, for metrics made up front.
    pub const ALL: [Refusal; 15] = [
        Refusal::NoClientCertificate,
        Refusal::Expired,
        Refusal::NotYetValid,
        Refusal::Untrusted,
        Refusal::NoSpiffeId,
        Refusal::WrongTrustDomain,
        Refusal::WrongName,
        Refusal::BadCertificate,
        Refusal::Incompatible,
        Refusal::PeerAlert,
        Refusal::Malformed,
        Refusal::Timeout,
        Refusal::Closed,
        Refusal::Overloaded,
        Refusal::Other,
    ];

    /// Its metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NoClientCertificate => "no_client_certificate",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::Untrusted => "untrusted",
            Refusal::NoSpiffeId => "no_spiffe_id",
            Refusal::WrongTrustDomain => "wrong_trust_domain",
            Refusal::WrongName => "wrong_name",
            Refusal::BadCertificate => "bad_certificate",
            Refusal::Incompatible => "incompatible",
            Refusal::PeerAlert => "peer_alert",
            Refusal::Malformed => "malformed",
            Refusal::Timeout => "timeout",
            Refusal::Closed => "closed",
            Refusal::Overloaded => "overloaded",
            Refusal::Other => "other",
        }
    }

    /// Sorts a failed handshake's error.
    pub fn of_io(e: &std::io::Error) -> Refusal {
        match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
            Some(tls) => Refusal::of(tls),
            None => match e.kind() {
                std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe => Refusal::Closed,
                std::io::ErrorKind::InvalidData => Refusal::Malformed,
                _ => Refusal::Other,
            },
        }
    }

    /// Sorts a rustls error.
    pub fn of(e: &Error) -> Refusal {
        match e {
            Error::NoCertificatesPresented => Refusal::NoClientCertificate,
            Error::InvalidCertificate(c) => match c {
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    Refusal::Expired
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    Refusal::NotYetValid
                }
                // A bad signature: signed by a CA of the same name that is not the
                // bundle's, or altered; either way nothing in the bundle vouches for it.
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    Refusal::Untrusted
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => Refusal::WrongName,
                CertificateError::Other(other) => match other.0.downcast_ref::<SpiffeRefusal>() {
                    Some(SpiffeRefusal::NoSpiffeId) => Refusal::NoSpiffeId,
                    Some(SpiffeRefusal::WrongTrustDomain { .. }) => Refusal::WrongTrustDomain,
                    Some(SpiffeRefusal::NotAccepted { .. }) => Refusal::WrongName,
                    None => Refusal::BadCertificate,
                },
                _ => Refusal::BadCertificate,
            },
            Error::PeerIncompatible(_) => Refusal::Incompatible,
            Error::AlertReceived(_) => Refusal::PeerAlert,
            Error::InvalidMessage(_)
            | Error::InappropriateMessage { .. }
            | Error::InappropriateHandshakeMessage { .. }
            | Error::PeerMisbehaved(_) => Refusal::Malformed,
            _ => Refusal::Other,
        }
    }
}
