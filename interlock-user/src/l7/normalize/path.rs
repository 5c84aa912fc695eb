//! The path routes match and the backend gets (RFC 3986 6.2.2): percent-encoded unreserved
//! characters decoded (`%2e` is a dot), dot segments removed (5.2.4) and empty segments
//! merged (`//a` is `/a`, as nginx's `merge_slashes`), so `/ws/../admin` or `/%2e%2e/admin`
//! cannot reach what `/admin` reaches while skipping a rule written for `/admin`.
//! Encoded `/`, `\` and NUL, a raw `\` and broken `%` escapes are refused: they mean
//! different paths to different servers.
use std::borrow::Cow;

/// Why a path was refused (the 400's reason).
pub type Refusal = &'static str;

/// `raw` (the path of an origin-form target, without the query) normalised. Borrowed when
/// nothing needs changing, the usual case: one scan, no allocation.
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, Refusal> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err("the path does not start with /");
    }
    if is_clean(bytes) {
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = decode_unreserved(bytes)?;
    Ok(Cow::Owned(remove_dot_segments(&decoded)))
}

/// No `%`, `\`, `//` or `/.` anywhere: nothing to decode, merge or remove.
fn is_clean(bytes: &[u8]) -> bool {
    let mut previous_slash = false;
    for &b in bytes {
        match b {
            b'%' | b'\\' => return false,
            b'/' | b'.' if previous_slash => return false,
            _ => {}
        }
        previous_slash = b == b'/';
    }
    true
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Decodes `%XX` of unreserved characters; keeps other escapes (upper-cased, RFC 3986
/// 6.2.2.1); refuses escapes of `/`, `\` and NUL, malformed escapes and raw backslashes.
fn decode_unreserved(bytes: &[u8]) -> Result<String, Refusal> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err("a backslash in the path"),
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err("a malformed percent-escape in the path");
                };
                let byte = hi << 4 | lo;
                match byte {
                    b'/' | b'\\' | 0 => return Err("an encoded /, \\ or NUL in the path"),
                    b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => out.push(b as char),
                    _ => {
                        out.push('%');
                        out.push(bytes[i + 1].to_ascii_uppercase() as char);
                        out.push(bytes[i + 2].to_ascii_uppercase() as char);
                    }
                }
                i += 3;
                continue;
            }
            _ => {}
        }
        // Copy the run up to the next escape or backslash as it is (it is UTF-8: the
        // input was a `str` and only ASCII bytes end a run).
        let end = bytes[i..]
            .iter()
            .position(|b| matches!(b, b'%' | b'\\'))
            .map_or(bytes.len(), |p| i + p);
        out.push_str(std::str::from_utf8(&bytes[i..end]).map_err(|_| "a path that is not UTF-8")?);
        i = end;
    }
    Ok(out)
}

/// RFC 3986 5.2.4 on an absolute path, with empty segments merged.
fn remove_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.into_iter().enumerate() {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
        // `/a/`, `/a/.` and `/a/b/..` all name a directory: the slash stays.
        trailing_slash = i == last && matches!(segment, "" | "." | "..");
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, Refusal> {
        normalize(p).map(Cow::into_owned)
    }

    #[test]
    fn clean_paths_are_borrowed() {
        for p in ["/", "/a", "/a/b/", "/a.b/c..d", "/a-b_c~d", "/a;b=c"] {
            assert!(matches!(normalize(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn dot_segments_and_empty_segments_go() {
        for (raw, want) in [
            ("/ws/../other", "/other"),
            ("/ws/%2e%2e/other", "/other"),
            ("/ws/%2E%2E/other", "/other"),
            ("/ws/.%2e/other", "/other"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/..", "/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("//admin", "/admin"),
            ("/a//b///c/", "/a/b/c/"),
            ("/.well-known/acme", "/.well-known/acme"),
            ("/%41%62c", "/Abc"),
            ("/a%20b", "/a%20b"),
            ("/a%3fb", "/a%3Fb"),
            ("/caf\u{e9}/%2e", "/caf\u{e9}/"),
        ] {
            assert_eq!(norm(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for raw in [
            "/a%2fb", "/a%2Fb", "/a%5cb", "/a%00b", "/a\\b", "/a%", "/a%2", "/a%zz", "*", "a", "",
        ] {
            assert!(norm(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for raw in ["/ws/../other", "/a//b/./c/..", "/%2e%2e/x", "/a%3fb"] {
            let once = norm(raw).unwrap();
            assert_eq!(norm(&once).unwrap(), once, "{raw}");
        }
    }
}
