//! Path normalization before routing, before filters see the path, and before the
//! upstream gets it (as Envoy's `normalize_path` and `merge_slashes`), so that a rule on
//! `/api/admin` cannot be walked around with `/api//admin`, `/api/./admin`,
//! `/api/%61dmin` or `/api/x/../admin`: percent-encoded unreserved characters are
//! decoded (and other escapes upper-cased), slashes merged, and dot segments removed
//! (RFC 3986 sections 6.2.2 and 5.2.4). Encoded slashes and backslashes are kept,
//! decoded or refused, as the listener says. The query is left as it came.

use http::uri::PathAndQuery;

use crate::config::EscapedSlashes;
use crate::error::ProxyError;

/// The normalized path and query, or `None` when normalization changes nothing (the
/// common case, decided by one scan of the path without allocating).
pub fn normalize(
    pq: &PathAndQuery,
    merge_slashes: bool,
    slashes: EscapedSlashes,
) -> Result<Option<PathAndQuery>, ProxyError> {
    let path = pq.path();
    let b = path.as_bytes();
    let suspicious = b.iter().enumerate().any(|(i, &c)| {
        c == b'%'
            || c == b'\\'
            || (c == b'/' && matches!(b.get(i + 1), Some(b'.')) && dot_segment(&b[i + 1..]))
            || (merge_slashes && c == b'/' && b.get(i + 1) == Some(&b'/'))
    });
    if !suspicious || !path.starts_with('/') {
        return Ok(None);
    }
    let decoded = decode(path, slashes)?;
    let segments = remove_dots(&decoded, merge_slashes);
    if segments == path {
        return Ok(None);
    }
    let mut out = segments;
    if let Some(q) = pq.query() {
        out.push('?');
        out.push_str(q);
    }
    PathAndQuery::try_from(out)
        .map(Some)
        .map_err(|_| ProxyError::BadRequest("the normalized path is not a valid path".into()))
}

/// Only merges repeated slashes (`normalize_path: false`, `merge_slashes: true`).
pub fn merge_only(pq: &PathAndQuery) -> Option<PathAndQuery> {
    let path = pq.path();
    if !path.contains("//") {
        return None;
    }
    let mut out = String::with_capacity(pq.as_str().len());
    let mut last_slash = false;
    for c in path.chars() {
        if !(c == '/' && last_slash) {
            out.push(c);
        }
        last_slash = c == '/';
    }
    if let Some(q) = pq.query() {
        out.push('?');
        out.push_str(q);
    }
    PathAndQuery::try_from(out).ok()
}

/// Whether `rest` (after a `/`) starts with a `.` or `..` segment.
fn dot_segment(rest: &[u8]) -> bool {
    matches!(
        rest,
        [b'.'] | [b'.', b'/', ..] | [b'.', b'.'] | [b'.', b'.', b'/', ..]
    )
}

fn unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// Decodes escapes of unreserved characters, upper-cases the others, and applies the
/// listener's choice to `%2F`, `%5C` and `\`.
fn decode(path: &str, slashes: EscapedSlashes) -> Result<String, ProxyError> {
    let b = path.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    let refuse =
        || ProxyError::BadRequest("escaped slashes and backslashes are refused in paths".into());
    while i < b.len() {
        let c = b[i];
        if c == b'%' && i + 2 < b.len() {
            let hex = |x: u8| (x as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                let v = (h * 16 + l) as u8;
                if unreserved(v) {
                    out.push(v);
                } else if v == b'/' || v == b'\\' {
                    match slashes {
                        EscapedSlashes::Keep => {
                            out.extend_from_slice(format!("%{v:02X}").as_bytes())
                        }
                        EscapedSlashes::Decode => out.push(b'/'),
                        EscapedSlashes::Reject => return Err(refuse()),
                    }
                } else {
                    out.extend_from_slice(format!("%{v:02X}").as_bytes());
                }
                i += 3;
                continue;
            }
        }
        if c == b'\\' {
            match slashes {
                EscapedSlashes::Keep => out.push(b'\\'),
                EscapedSlashes::Decode => out.push(b'/'),
                EscapedSlashes::Reject => return Err(refuse()),
            }
        } else {
            out.push(c);
        }
        i += 1;
    }
    // Only ASCII was decoded: the rest is the path's own UTF-8.
    String::from_utf8(out).map_err(|_| ProxyError::BadRequest("invalid path".into()))
}

/// RFC 3986 section 5.2.4 on an absolute path, merging empty segments if asked.
fn remove_dots(path: &str, merge_slashes: bool) -> String {
    let mut out: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path[1..].split('/').collect();
    let last = parts.len() - 1;
    let mut trailing = false;
    for (i, seg) in parts.iter().enumerate() {
        match *seg {
            "." => trailing = i == last,
            ".." => {
                out.pop();
                trailing = i == last;
            }
            "" if merge_slashes && i != last => {}
            s => {
                out.push(s);
                trailing = false;
            }
        }
    }
    let mut s = String::with_capacity(path.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if trailing || s.is_empty() {
        s.push('/');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> String {
        norm_with(p, EscapedSlashes::Keep).unwrap()
    }

    fn norm_with(p: &str, slashes: EscapedSlashes) -> Result<String, ProxyError> {
        let pq = PathAndQuery::try_from(p).unwrap();
        Ok(normalize(&pq, true, slashes)?.map_or_else(|| p.to_owned(), |n| n.as_str().to_owned()))
    }

    #[test]
    fn tricks_around_a_prefix_normalize_to_it() {
        assert_eq!(norm("/api//admin/x"), "/api/admin/x");
        assert_eq!(norm("/api/./admin/x"), "/api/admin/x");
        assert_eq!(norm("/api/%61dmin/x"), "/api/admin/x");
        assert_eq!(norm("/api/x/../admin/y"), "/api/admin/y");
        assert_eq!(norm("/api/%2e%2e/admin"), "/admin");
        assert_eq!(norm("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(norm("/a/b/.."), "/a/");
        assert_eq!(norm("/a/."), "/a/");
        assert_eq!(norm("/a//b?x=//y/../z"), "/a/b?x=//y/../z");
        assert_eq!(norm("/a%2fb"), "/a%2Fb");
        assert_eq!(norm("/caf%c3%a9"), "/caf%C3%A9");
    }

    #[test]
    fn ordinary_paths_are_left_alone() {
        for p in ["/", "/api/items?limit=10", "/a.b/c..d/.e", "/a/b/"] {
            let pq = PathAndQuery::try_from(p).unwrap();
            assert!(
                normalize(&pq, true, EscapedSlashes::Keep)
                    .unwrap()
                    .is_none(),
                "{p}"
            );
        }
    }

    #[test]
    fn escaped_slashes_are_kept_decoded_or_refused() {
        assert_eq!(
            norm_with("/a%2Fb\\c", EscapedSlashes::Keep).unwrap(),
            "/a%2Fb\\c"
        );
        assert_eq!(
            norm_with("/a%2Fb\\c", EscapedSlashes::Decode).unwrap(),
            "/a/b/c"
        );
        assert!(norm_with("/a%2Fb", EscapedSlashes::Reject).is_err());
        assert!(norm_with("/a\\b", EscapedSlashes::Reject).is_err());
    }
}
