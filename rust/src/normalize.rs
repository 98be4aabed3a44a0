//! Request paths normalised before routing, so that the route the gateway matches is the
//! resource the agent serves.
//!
//! Without it, `GET /public/../private/x` matches a public `/public` route and an agent that
//! removes dot-segments (as most servers do, RFC 3986 §5.2.4) serves `/private/x` without the
//! private route's auth. The steps follow Envoy's `normalize_path` and nginx:
//!
//! 1. percent-encodings of unreserved characters are decoded (`%2E` → `.`, `%7E` → `~`), the
//!    others are kept with uppercase hex; bytes that may not appear raw in a path are encoded;
//! 2. `%2F` is kept, decoded into a separator, or refused, as configured;
//! 3. `.` and `..` segments are removed (a `..` never climbs above the root);
//! 4. runs of `/` are merged, when configured.
//!
//! The normalised path is also what goes upstream.

use std::borrow::Cow;

/// What to do with `%2F` (an encoded slash) in a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodedSlash {
    /// Leave it encoded: not a separator for routing.
    Keep,
    /// Decode it into `/` before removing dot-segments.
    Decode,
    /// Refuse the request (400).
    Reject,
}

impl std::str::FromStr for EncodedSlash {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keep" => Ok(EncodedSlash::Keep),
            "decode" => Ok(EncodedSlash::Decode),
            "reject" => Ok(EncodedSlash::Reject),
            _ => Err(format!("{s:?}: expected keep, decode or reject")),
        }
    }
}

/// Normalisation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Collapse `//` into `/`.
    pub merge_slashes: bool,
    /// `%2F` handling.
    pub encoded_slash: EncodedSlash,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            merge_slashes: true,
            encoded_slash: EncodedSlash::Decode,
        }
    }
}

/// Why a path cannot be normalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `%` not followed by two hex digits.
    #[error("malformed percent-encoding in the path")]
    BadEncoding,
    /// `%2F` with `encoded_slash: reject`.
    #[error("encoded slash (%2F) in the path")]
    EncodedSlash,
    /// Not an origin-form path.
    #[error("the path must start with '/'")]
    NotAbsolute,
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Bytes RFC 3986 allows raw in a path: pchar (unreserved, sub-delims, `:`, `@`) and `/`.
fn path_char(b: u8) -> bool {
    unreserved(b) || b"!$&'()*+,;=:@/".contains(&b)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_encoded(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
}

/// Whether `path` can be taken as it is: no percent, no dot segment, no `//`, only path chars.
fn already_normal(path: &[u8], merge: bool) -> bool {
    let mut prev = 0u8;
    for (i, &b) in path.iter().enumerate() {
        if !path_char(b) {
            return false;
        }
        if b == b'/' && prev == b'/' && merge {
            return false;
        }
        if b == b'.' && prev == b'/' {
            // "/." starts a dot segment if followed by '/', end, or ".(/|end)"
            let rest = &path[i + 1..];
            if rest.is_empty()
                || rest[0] == b'/'
                || (rest[0] == b'.' && (rest.len() == 1 || rest[1] == b'/'))
            {
                return false;
            }
        }
        prev = b;
    }
    true
}

/// The normalised form of an origin-form `path` (without the query).
pub fn normalize_path<'a>(path: &'a str, opts: &Options) -> Result<Cow<'a, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if already_normal(bytes, opts.merge_slashes) {
        return Ok(Cow::Borrowed(path));
    }
    // 1 + 2: decoding pass
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (hi, lo) = match (bytes.get(i + 1), bytes.get(i + 2)) {
                (Some(&h), Some(&l)) => match (hex(h), hex(l)) {
                    (Some(h), Some(l)) => (h, l),
                    _ => return Err(PathError::BadEncoding),
                },
                _ => return Err(PathError::BadEncoding),
            };
            let c = hi << 4 | lo;
            if unreserved(c) {
                decoded.push(c);
            } else if c == b'/' {
                match opts.encoded_slash {
                    EncodedSlash::Keep => decoded.extend_from_slice(b"%2F"),
                    EncodedSlash::Decode => decoded.push(b'/'),
                    EncodedSlash::Reject => return Err(PathError::EncodedSlash),
                }
            } else {
                push_encoded(&mut decoded, c);
            }
            i += 3;
        } else {
            if path_char(b) {
                decoded.push(b);
            } else {
                push_encoded(&mut decoded, b);
            }
            i += 1;
        }
    }
    // 3 + 4: segments
    let mut segments: Vec<&[u8]> = Vec::new();
    let parts: Vec<&[u8]> = decoded[1..].split(|&b| b == b'/').collect();
    let last = parts.len() - 1;
    let mut trailing_slash = false;
    for (n, seg) in parts.iter().enumerate() {
        match *seg {
            b"." => trailing_slash = n == last,
            b".." => {
                segments.pop();
                trailing_slash = n == last;
            }
            b"" if opts.merge_slashes => trailing_slash = n == last,
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = Vec::with_capacity(decoded.len());
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if trailing_slash || out.is_empty() {
        out.push(b'/');
    }
    // Every byte pushed is ASCII: raw path chars, '%' and uppercase hex.
    Ok(Cow::Owned(
        String::from_utf8(out).map_err(|_| PathError::BadEncoding)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        normalize_path(p, &Options::default()).unwrap().into_owned()
    }

    fn with(p: &str, merge: bool, slash: EncodedSlash) -> Result<String, PathError> {
        normalize_path(
            p,
            &Options {
                merge_slashes: merge,
                encoded_slash: slash,
            },
        )
        .map(Cow::into_owned)
    }

    #[test]
    fn plain_paths_are_borrowed() {
        for p in ["/", "/a", "/a/b/", "/a.b/c..d/.e", "/x:y@z"] {
            assert!(matches!(
                normalize_path(p, &Options::default()),
                Ok(Cow::Borrowed(_))
            ));
        }
    }

    #[test]
    fn rfc3986_dot_segments() {
        // RFC 3986 §5.2.4 examples, as paths
        assert_eq!(n("/a/b/c/./../../g"), "/a/g");
        assert_eq!(n("/mid/content=5/../6"), "/mid/6");
        assert_eq!(n("/public/../private/echo"), "/private/echo");
        assert_eq!(n("/.."), "/");
        assert_eq!(n("/../../x"), "/x");
        assert_eq!(n("/a/."), "/a/");
        assert_eq!(n("/a/.."), "/");
        assert_eq!(n("/a/b/.."), "/a/");
    }

    #[test]
    fn encoded_dots_and_unreserved_are_decoded() {
        assert_eq!(n("/public/%2e%2e/private/echo"), "/private/echo");
        assert_eq!(n("/public/%2E%2E/private"), "/private");
        assert_eq!(n("/%7Euser/%41"), "/~user/A");
        assert_eq!(n("/a%20b"), "/a%20b");
        assert_eq!(n("/a%3fb"), "/a%3Fb");
    }

    #[test]
    fn encoded_slash_modes() {
        let p = "/public%2F..%2Fprivate";
        assert_eq!(with(p, true, EncodedSlash::Decode).unwrap(), "/private");
        assert_eq!(
            with(p, true, EncodedSlash::Keep).unwrap(),
            "/public%2F..%2Fprivate"
        );
        assert_eq!(
            with(p, true, EncodedSlash::Reject),
            Err(PathError::EncodedSlash)
        );
    }

    #[test]
    fn slashes_merge_when_asked() {
        assert_eq!(n("//private//echo"), "/private/echo");
        assert_eq!(
            with("//a//b/", false, EncodedSlash::Decode).unwrap(),
            "//a//b/"
        );
        assert_eq!(n("/a//"), "/a/");
    }

    #[test]
    fn bad_input_is_refused() {
        assert_eq!(
            normalize_path("/a%zz", &Options::default()),
            Err(PathError::BadEncoding)
        );
        assert_eq!(
            normalize_path("/a%2", &Options::default()),
            Err(PathError::BadEncoding)
        );
        assert_eq!(
            normalize_path("a", &Options::default()),
            Err(PathError::NotAbsolute)
        );
    }

    #[test]
    fn raw_unsafe_bytes_are_encoded() {
        assert_eq!(n("/a b\"c"), "/a%20b%22c");
    }
}
