//! Escaping for what the serve layer writes from store data: HTML text and attribute
//! values, and URL path segments. Store content is untrusted (a store is a directory
//! anyone with write access can edit), so nothing from it reaches markup or a URL raw.

/// Escapes text for HTML element content and for quoted attribute values.
pub(super) fn html(s: &str) -> String {
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

/// Percent-encodes one URL path segment: every byte but RFC 3986 `pchar`s (unreserved,
/// sub-delims, `:` and `@`) becomes `%XX`, so `/`, `?`, `#`, `%`, quotes, spaces,
/// control characters and non-ASCII cannot change what the URL points at.
pub(super) fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes of a request path; anything else (a `%` not followed by two
/// hex digits included) is kept as it is. Works on bytes, so no input can split a
/// character; invalid UTF-8 becomes U+FFFD.
pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|b| hex_value(*b)),
                bytes.get(i + 2).and_then(|b| hex_value(*b)),
            )
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Whether a string from the store holds a control character (CR, LF, NUL, ...), which
/// no name, revision or identifier that ferry serves may contain.
pub(super) fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Whether `s` is `len` lowercase hex digits (a git object id, a sha256).
pub(super) fn is_lower_hex(s: &str, len: usize) -> bool {
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
