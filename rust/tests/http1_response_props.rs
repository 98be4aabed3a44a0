//! Property tests of the incremental HTTP/1.1 response parser: any split of the input gives the
//! same heads, body and completion; generated responses parse back to what was serialised;
//! arbitrary bytes never panic.

use agentgate_core::http1::response::{Error, Limits, ResponseHead, ResponseParser};
use proptest::prelude::*;
use proptest::sample::Index;

/// Everything a feed sequence produced, for comparing splits.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    heads: Vec<ResponseHead>,
    body: Vec<u8>,
    done: bool,
    reusable: bool,
    eof: Option<Result<bool, Error>>,
}

/// Cut positions (sorted, in 0..=len) from proptest indices.
fn cuts_of(len: usize, idx: &[Index]) -> Vec<usize> {
    let mut cuts: Vec<usize> = idx.iter().map(|i| i.index(len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

/// Feeds `raw` split at `cuts` (empty pieces included), then EOF if the message is not done.
fn feed_split(
    p: &mut ResponseParser,
    raw: &[u8],
    cuts: &[usize],
    eof: bool,
) -> Result<Outcome, Error> {
    let mut out = Outcome {
        heads: Vec::new(),
        body: Vec::new(),
        done: false,
        reusable: false,
        eof: None,
    };
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&raw.len())) {
        let piece = &raw[start..end];
        start = end;
        if out.done {
            // Only empty pieces may follow a completed message in these tests.
            assert!(piece.is_empty());
            continue;
        }
        let fed = p.feed(piece)?;
        out.heads.extend(fed.head);
        out.body.extend(fed.body.to_vec(piece));
        if fed.done {
            out.done = true;
            out.reusable = fed.reusable;
        } else {
            assert!(!fed.reusable);
        }
    }
    if eof && !out.done {
        out.eof = Some(p.feed_eof());
    }
    Ok(out)
}

#[derive(Debug, Clone)]
enum Framing {
    Length,
    Chunked {
        sizes: Vec<usize>,
        ext: bool,
        upper: bool,
        trailers: Vec<(String, String)>,
    },
    Close,
}

/// A response to serialise, and what parsing it must give.
#[derive(Debug, Clone)]
struct Spec {
    interim: Vec<(u16, Vec<(String, String)>)>,
    minor: u8,
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    framing: Framing,
    is_head: bool,
}

fn latin1_bytes(s: &str) -> Vec<u8> {
    s.chars().map(|c| c as u32 as u8).collect()
}

impl Spec {
    fn bodiless(&self) -> bool {
        self.is_head || self.status == 204 || self.status == 304
    }

    /// The header fields as they go on the wire (spec fields plus framing fields).
    fn wire_headers(&self) -> Vec<(String, String)> {
        let mut h = self.headers.clone();
        match &self.framing {
            Framing::Length => h.push(("Content-Length".into(), self.body.len().to_string())),
            Framing::Chunked { .. } => h.push(("Transfer-Encoding".into(), "chunked".into())),
            Framing::Close => {}
        }
        if self.minor == 0 && !matches!(self.framing, Framing::Close) {
            h.push(("Connection".into(), "keep-alive".into()));
        }
        h
    }

    fn serialise(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (code, fields) in &self.interim {
            out.extend_from_slice(format!("HTTP/1.1 {code} Interim\r\n").as_bytes());
            for (n, v) in fields {
                out.extend_from_slice(n.as_bytes());
                out.extend_from_slice(b": ");
                out.extend(latin1_bytes(v));
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("HTTP/1.{} {}", self.minor, self.status).as_bytes());
        if !self.reason.is_empty() {
            out.push(b' ');
            out.extend_from_slice(self.reason.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        for (n, v) in self.wire_headers() {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend(latin1_bytes(&v));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if self.bodiless() {
            return out;
        }
        match &self.framing {
            Framing::Length | Framing::Close => out.extend_from_slice(&self.body),
            Framing::Chunked {
                sizes,
                ext,
                upper,
                trailers,
            } => {
                let mut rest = &self.body[..];
                let mut sizes = sizes.iter().cycle();
                while !rest.is_empty() {
                    let n = sizes.next().copied().unwrap_or(1).clamp(1, rest.len());
                    let size = if *upper {
                        format!("{n:X}")
                    } else {
                        format!("{n:x}")
                    };
                    out.extend_from_slice(size.as_bytes());
                    if *ext {
                        out.extend_from_slice(b" ;name=\"va;lue\";flag");
                    }
                    out.extend_from_slice(b"\r\n");
                    out.extend_from_slice(&rest[..n]);
                    out.extend_from_slice(b"\r\n");
                    rest = &rest[n..];
                }
                out.extend_from_slice(if *ext { b"0;last\r\n" } else { b"0\r\n" });
                for (n, v) in trailers {
                    out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
                }
                out.extend_from_slice(b"\r\n");
            }
        }
        out
    }

    /// HTTP/1.0 needs `Connection: keep-alive` (sent unless close-delimited); a body that
    /// ends at EOF never allows reuse.
    fn expected_keep_alive(&self) -> bool {
        let close = matches!(self.framing, Framing::Close);
        !close || (self.minor == 1 && self.bodiless())
    }
}

fn header_name() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,15}".prop_filter(
        "framing fields are generated apart",
        |n| {
            let l = n.to_ascii_lowercase();
            !matches!(
                l.as_str(),
                "content-length" | "transfer-encoding" | "connection" | "retry-after"
            )
        },
    )
}

fn header_value() -> impl Strategy<Value = String> {
    // Visible ASCII and obs-text, inner spaces/tabs only: httparse trims outer whitespace.
    prop_oneof![
        Just(String::new()),
        "[!-~\u{80}-\u{ff}]",
        "[!-~\u{80}-\u{ff}][ \t!-~\u{80}-\u{ff}]{0,30}[!-~\u{80}-\u{ff}]",
    ]
}

fn fields(max: usize) -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((header_name(), header_value()), 0..max)
}

fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        Just(Framing::Length),
        Just(Framing::Close),
        (
            prop::collection::vec(1usize..40, 1..5),
            any::<bool>(),
            any::<bool>(),
            prop::collection::vec(("X-T[a-z]{0,5}", "[a-z0-9]{0,8}"), 0..3),
        )
            .prop_map(|(sizes, ext, upper, trailers)| Framing::Chunked {
                sizes,
                ext,
                upper,
                trailers,
            }),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::collection::vec(
            (prop_oneof![Just(100u16), Just(102), Just(103)], fields(3)),
            0..3,
        ),
        0u8..2,
        prop_oneof![200u16..600, Just(204), Just(304)],
        prop_oneof![Just(String::new()), "[A-Za-z][A-Za-z ]{0,20}[A-Za-z]"],
        fields(8),
        prop::collection::vec(any::<u8>(), 0..300),
        framing(),
        any::<bool>(),
    )
        .prop_map(
            |(interim, minor, status, reason, headers, body, framing, is_head)| Spec {
                interim,
                minor,
                status,
                reason,
                headers,
                body,
                framing,
                is_head,
            },
        )
}

fn parse_whole(s: &Spec, raw: &[u8]) -> Outcome {
    let mut p = ResponseParser::default();
    p.start(s.is_head).unwrap();
    feed_split(&mut p, raw, &[], true).unwrap()
}

/// Named so that `cargo test http1` selects these too.
mod http1_response {
    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(600))]

        #[test]
        fn serialised_response_parses_back(s in spec()) {
            let raw = s.serialise();
            let out = parse_whole(&s, &raw);
            prop_assert_eq!(out.heads.len(), 1);
            let h = &out.heads[0];
            prop_assert_eq!(h.status, s.status);
            prop_assert_eq!(&h.reason, &s.reason);
            prop_assert_eq!(h.version.as_str(), if s.minor == 0 { "1.0" } else { "1.1" });
            prop_assert_eq!(&h.headers, &s.wire_headers());
            let forward: Vec<(String, String)> = s
                .wire_headers()
                .into_iter()
                .filter(|(n, _)| {
                    !n.eq_ignore_ascii_case("transfer-encoding") && !n.eq_ignore_ascii_case("connection")
                })
                .map(|(n, v)| (n.to_ascii_lowercase(), v))
                .collect();
            // Connection: keep-alive names keep-alive; no generated name is hop-by-hop only by luck.
            let forward: Vec<(String, String)> = forward
                .into_iter()
                .filter(|(n, _)| {
                    !matches!(n.as_str(), "keep-alive" | "proxy-connection" | "te" | "trailer" | "upgrade")
                })
                .collect();
            prop_assert_eq!(&h.forward, &forward);
            prop_assert_eq!(h.has_request_id, forward.iter().any(|(n, _)| n == "x-request-id"));
            if s.bodiless() {
                prop_assert!(out.body.is_empty());
                prop_assert!(out.done);
                prop_assert_eq!(out.reusable, s.expected_keep_alive());
                prop_assert_eq!(h.content_length, 0);
            } else {
                prop_assert_eq!(&out.body, &s.body);
                match s.framing {
                    Framing::Length => {
                        prop_assert_eq!(h.content_length, s.body.len() as i64);
                        prop_assert!(out.done && out.reusable);
                    }
                    Framing::Chunked { .. } => {
                        prop_assert!(h.chunked && h.content_length == -1);
                        prop_assert!(out.done && out.reusable);
                    }
                    Framing::Close => {
                        prop_assert!(h.close_delimited && !h.keep_alive && !out.done);
                        prop_assert_eq!(out.eof.clone(), Some(Ok(true)));
                    }
                }
            }
            prop_assert_eq!(h.keep_alive, s.expected_keep_alive());
        }

        #[test]
        fn any_split_gives_the_same_result(s in spec(), idx in prop::collection::vec(any::<Index>(), 0..12)) {
            let raw = s.serialise();
            let whole = parse_whole(&s, &raw);
            let mut p = ResponseParser::default();
            p.start(s.is_head).unwrap();
            let split = feed_split(&mut p, &raw, &cuts_of(raw.len(), &idx), true).unwrap();
            prop_assert_eq!(split, whole);
        }

        #[test]
        fn byte_by_byte_gives_the_same_result(s in spec()) {
            let raw = s.serialise();
            let whole = parse_whole(&s, &raw);
            let mut p = ResponseParser::default();
            p.start(s.is_head).unwrap();
            let cuts: Vec<usize> = (1..raw.len()).collect();
            prop_assert_eq!(feed_split(&mut p, &raw, &cuts, true).unwrap(), whole);
        }

        #[test]
        fn back_to_back_responses_on_one_parser(
            a in spec(),
            b in spec(),
            ia in prop::collection::vec(any::<Index>(), 0..6),
            ib in prop::collection::vec(any::<Index>(), 0..6),
        ) {
            // A close-delimited first response ends the connection, so it cannot be followed.
            prop_assume!(a.bodiless() || !matches!(a.framing, Framing::Close));
            let (ra, rb) = (a.serialise(), b.serialise());
            let mut p = ResponseParser::default();
            p.start(a.is_head).unwrap();
            let first = feed_split(&mut p, &ra, &cuts_of(ra.len(), &ia), false).unwrap();
            prop_assert_eq!(first, parse_whole(&a, &ra));
            prop_assert!(p.is_idle());
            p.start(b.is_head).unwrap();
            let second = feed_split(&mut p, &rb, &cuts_of(rb.len(), &ib), true).unwrap();
            prop_assert_eq!(second, parse_whole(&b, &rb));
        }

        #[test]
        fn trailing_bytes_make_the_connection_unusable(s in spec(), extra in prop::collection::vec(any::<u8>(), 1..20)) {
            prop_assume!(s.bodiless() || !matches!(s.framing, Framing::Close));
            let mut raw = s.serialise();
            let n = raw.len();
            raw.extend_from_slice(&extra);
            let mut p = ResponseParser::default();
            p.start(s.is_head).unwrap();
            let fed = p.feed(&raw).unwrap();
            prop_assert!(fed.done && !fed.reusable);
            prop_assert!(fed.body.iter().all(|r| r.end <= n));
        }

        #[test]
        fn random_bytes_never_panic(
            data in prop::collection::vec(any::<u8>(), 0..400),
            idx in prop::collection::vec(any::<Index>(), 0..8),
            is_head in any::<bool>(),
            max_head in 1usize..256,
            max_headers in 0usize..8,
        ) {
            let mut p = ResponseParser::new(Limits { max_head, max_headers });
            p.start(is_head).unwrap();
            let mut start = 0;
            for end in cuts_of(data.len(), &idx).into_iter().chain(std::iter::once(data.len())) {
                if let Ok(fed) = p.feed(&data[start..end]) {
                    for r in fed.body.iter() {
                        prop_assert!(r.end <= end - start);
                    }
                }
                start = end;
            }
            let _ = p.feed_eof();
        }

        #[test]
        fn mutated_responses_never_panic(
            s in spec(),
            flips in prop::collection::vec((any::<Index>(), any::<u8>()), 1..4),
            idx in prop::collection::vec(any::<Index>(), 0..6),
        ) {
            let mut raw = s.serialise();
            for (i, b) in &flips {
                let at = i.index(raw.len());
                raw[at] = *b;
            }
            let mut p = ResponseParser::default();
            p.start(s.is_head).unwrap();
            let mut start = 0;
            for end in cuts_of(raw.len(), &idx).into_iter().chain(std::iter::once(raw.len())) {
                match p.feed(&raw[start..end]) {
                    Ok(fed) if fed.done => break,
                    Ok(_) => {}
                    Err(_) => break,
                }
                start = end;
            }
            let _ = p.feed_eof();
        }
    }
}
