//! Escaping for what ferry writes from untrusted data (serve, exports): HTML text and attribute
//! values, and URL path segments. Store content is untrusted (a store is a directory
//! anyone with write access can edit), so nothing from it reaches markup or a URL raw.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Escapes text for HTML element content and for quoted attribute values.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Every byte but RFC 3986 `pchar`s (unreserved, sub-delims, `:` and `@`).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// Percent-encodes one URL path segment, so `/`, `?`, `#`, `%`, quotes, spaces,
/// control characters and non-ASCII cannot change what the URL points at.
pub fn path_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// Decodes `%XX` escapes of a request path; a `%` not followed by two hex digits is
/// kept as it is, and invalid UTF-8 becomes U+FFFD.
pub fn percent_decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Whether a string from the store holds a control character (CR, LF, NUL, ...), which
/// no name, revision or identifier that ferry serves may contain.
pub fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Whether `s` is `len` lowercase hex digits (a git object id, a sha256).
pub fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            html("a\"><script>&'"),
            "a&quot;&gt;&lt;script&gt;&amp;&#39;"
        );
        assert_eq!(path_segment("a-1.0+x.whl"), "a-1.0+x.whl");
        assert_eq!(
            path_segment("a/b?c#d %\"<é"),
            "a%2Fb%3Fc%23d%20%25%22%3C%C3%A9"
        );
        assert_eq!(
            percent_decode(&path_segment("a/b?c#d %\"<é")),
            "a/b?c#d %\"<é"
        );
        assert_eq!(percent_decode("%aé%4"), "%aé%4");
        assert_eq!(percent_decode("%41%2f"), "A/");
        assert!(has_control("abc\r\nX: 1"));
        assert!(is_lower_hex(&"a".repeat(40), 40));
        assert!(!is_lower_hex("bad\netag", 8));
    }
}
