//! Access-log formats: JSON lines with every field, or a format string whose `%field%`
//! placeholders name the same fields.

/// A field of an access-log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogField {
    /// When the request arrived (RFC 3339, UTC, milliseconds).
    Time,
    Method,
    Authority,
    /// Path and query, as received.
    Path,
    /// The status the client got.
    Status,
    RequestBytes,
    ResponseBytes,
    /// Arrival to the response's end, in milliseconds (3 decimals).
    DurationMs,
    /// The upstream endpoint that answered (or was tried last).
    Upstream,
    /// Attempts sent upstream.
    Attempts,
    Route,
    Cluster,
    Listener,
    /// The client's `ip:port`.
    Client,
    /// The client's SPIFFE ID (mTLS).
    PeerIdentity,
    TraceId,
    /// What went wrong, in short codes (see the README); `-` for nothing.
    Flags,
    /// Request properties the filters set, as `k=v` joined by `;` (an object in JSON).
    Properties,
}

impl LogField {
    /// Every field, in the order JSON lines carry them.
    pub const ALL: [LogField; 18] = [
        LogField::Time,
        LogField::Method,
        LogField::Authority,
        LogField::Path,
        LogField::Status,
        LogField::RequestBytes,
        LogField::ResponseBytes,
        LogField::DurationMs,
        LogField::Upstream,
        LogField::Attempts,
        LogField::Route,
        LogField::Cluster,
        LogField::Listener,
        LogField::Client,
        LogField::PeerIdentity,
        LogField::TraceId,
        LogField::Flags,
        LogField::Properties,
    ];

    /// Its name in JSON and in `%name%`.
    pub fn name(self) -> &'static str {
        match self {
            LogField::Time => "time",
            LogField::Method => "method",
            LogField::Authority => "authority",
            LogField::Path => "path",
            LogField::Status => "status",
            LogField::RequestBytes => "request_bytes",
            LogField::ResponseBytes => "response_bytes",
            LogField::DurationMs => "duration_ms",
            LogField::Upstream => "upstream",
            LogField::Attempts => "attempts",
            LogField::Route => "route",
            LogField::Cluster => "cluster",
            LogField::Listener => "listener",
            LogField::Client => "client",
            LogField::PeerIdentity => "peer_identity",
            LogField::TraceId => "trace_id",
            LogField::Flags => "flags",
            LogField::Properties => "properties",
        }
    }
}

impl LogField {
    /// How the field starts in a JSON line: `,"name":` (no comma for the first field).
    pub fn json_key(self) -> &'static str {
        match self {
            LogField::Time => "\"time\":",
            LogField::Method => ",\"method\":",
            LogField::Authority => ",\"authority\":",
            LogField::Path => ",\"path\":",
            LogField::Status => ",\"status\":",
            LogField::RequestBytes => ",\"request_bytes\":",
            LogField::ResponseBytes => ",\"response_bytes\":",
            LogField::DurationMs => ",\"duration_ms\":",
            LogField::Upstream => ",\"upstream\":",
            LogField::Attempts => ",\"attempts\":",
            LogField::Route => ",\"route\":",
            LogField::Cluster => ",\"cluster\":",
            LogField::Listener => ",\"listener\":",
            LogField::Client => ",\"client\":",
            LogField::PeerIdentity => ",\"peer_identity\":",
            LogField::TraceId => ",\"trace_id\":",
            LogField::Flags => ",\"flags\":",
            LogField::Properties => ",\"properties\":",
        }
    }
}

/// A piece of a format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogPiece {
    Text(String),
    Field(LogField),
}

/// Parses `%field%` placeholders (`%%` is a literal `%`).
pub fn parse_format(format: &str) -> Result<Vec<LogPiece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = format;
    while let Some(i) = rest.find('%') {
        text.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        let Some(end) = rest.find('%') else {
            return Err("a % without its closing %".into());
        };
        let name = &rest[..end];
        rest = &rest[end + 1..];
        if name.is_empty() {
            text.push('%');
            continue;
        }
        let field = LogField::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = LogField::ALL.iter().map(|f| f.name()).collect();
                format!("unknown field %{name}% (fields: {})", known.join(", "))
            })?;
        if !text.is_empty() {
            pieces.push(LogPiece::Text(std::mem::take(&mut text)));
        }
        pieces.push(LogPiece::Field(field));
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(LogPiece::Text(text));
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keys_name_each_field_in_order() {
        for (i, f) in LogField::ALL.into_iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            assert_eq!(f.json_key(), format!("{comma}\"{}\":", f.name()));
        }
    }
}
