//! Checks and decoding for what the serve layer reads: store strings that become
//! headers, and request paths. Store content is untrusted (a store is a directory
//! anyone with write access can edit).

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
        assert_eq!(percent_decode("%aé%4"), "%aé%4");
        assert_eq!(percent_decode("%41%2f"), "A/");
        assert!(has_control("abc\r\nX: 1"));
        assert!(is_lower_hex(&"a".repeat(40), 40));
        assert!(!is_lower_hex("bad\netag", 8));
    }
}
