//! One request/response exchange on a pooled upstream connection: answer small responses at once.
//!
//! The gateway's common case is a small, complete response to a request it could send in one
//! write. [`Exchange`] decides, from the bytes received, whether the response qualifies for that
//! fast path (final status < 500 and != 429, a Content-Length body of at most `max_buffer` bytes
//! or no body) and then buffers its body; any other response is handed over, parser state
//! included, to the caller's general streaming machinery as soon as its head is known. Statuses
//! >= 500 and 429 are handed over because the caller may retry them.

use super::response::{
    BodySpans, Error as ParseError, Limits, ResponseHead, ResponseParser, Version,
};

/// Why an exchange failed; the connection must not be reused after any of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The upstream closed the connection before the response was complete.
    #[error("upstream closed the connection: {0}")]
    Reset(ParseError),
    /// The upstream sent bytes that are not a valid response.
    #[error("invalid response from upstream: {0}")]
    Protocol(ParseError),
    /// The exchange already ended (responded, handed over or failed).
    #[error("the exchange is already finished")]
    Finished,
}

/// Body bytes produced by one feed: either spans of the slice just fed, or bytes buffered
/// across feeds. Either way the caller copies them once, into its own buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Ranges into the slice passed to this `feed` (the whole body arrived in it).
    Fed(BodySpans),
    /// Bytes accumulated across earlier feeds plus this one.
    Buffered(Vec<u8>),
}

impl Body {
    /// Number of body bytes.
    pub fn len(&self) -> usize {
        match self {
            Body::Fed(spans) => spans.len(),
            Body::Buffered(buf) => buf.len(),
        }
    }

    /// No body bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the bytes into `out` (exactly `len()` bytes); `data` is the slice just fed.
    pub fn copy_into(&self, data: &[u8], out: &mut [u8]) {
        match self {
            Body::Fed(spans) => spans.copy_into(data, out),
            Body::Buffered(buf) => {
                if let Some(dst) = out.get_mut(..buf.len()) {
                    dst.copy_from_slice(buf);
                }
            }
        }
    }

    /// The bytes as one vector; `data` is the slice just fed.
    pub fn to_vec(&self, data: &[u8]) -> Vec<u8> {
        match self {
            Body::Fed(spans) => spans.to_vec(data),
            Body::Buffered(buf) => buf.clone(),
        }
    }

    /// The single contiguous range of `data` holding the whole body, if that is what it is.
    pub fn single(&self) -> Option<std::ops::Range<usize>> {
        match self {
            Body::Fed(spans) => spans.single(),
            Body::Buffered(_) => None,
        }
    }
}

/// What the caller does after a feed.
#[derive(Debug, Clone)]
pub enum Step {
    /// Nothing yet: the head is incomplete, or a qualifying body is still arriving.
    NeedMore,
    /// The final response is complete and small: answer the client with it.
    Respond {
        /// The response head.
        head: Box<ResponseHead>,
        /// The whole body.
        body: Body,
        /// The connection may carry another request.
        reusable: bool,
    },
    /// The response does not qualify: from now on the caller reads the rest with `parser`.
    Handover {
        /// The response head.
        head: Box<ResponseHead>,
        /// Body bytes that came with the head (those of the feed that completed the head).
        body: Body,
        /// The response is already complete.
        done: bool,
        /// Done and the connection may carry another request.
        reusable: bool,
        /// The parser of this connection, in the middle of (or just after) this response.
        parser: Box<ResponseParser>,
    },
}

#[derive(Debug)]
enum Phase {
    /// Waiting for the final head.
    Head,
    /// A qualifying head arrived: collecting its body.
    Body {
        head: Box<ResponseHead>,
        buf: Vec<u8>,
    },
    /// Responded, handed over or failed.
    Finished,
}

/// The state of one request/response on one connection, from request sent to outcome.
#[derive(Debug)]
pub struct Exchange {
    parser: ResponseParser,
    max_buffer: usize,
    phase: Phase,
}

impl Exchange {
    /// A request went out (`is_head`: it was a HEAD request); bodies up to `max_buffer` bytes
    /// are buffered and answered here.
    pub fn new(is_head: bool, max_buffer: usize) -> Self {
        Self::with_limits(is_head, max_buffer, Limits::default())
    }

    /// Like [`Exchange::new`] with explicit parser caps.
    pub fn with_limits(is_head: bool, max_buffer: usize, limits: Limits) -> Self {
        let mut parser = ResponseParser::new(limits);
        // A fresh parser is idle, so start cannot fail; a failure would surface on feed anyway.
        let _ = parser.start(is_head);
        Exchange {
            parser,
            max_buffer,
            phase: Phase::Head,
        }
    }

    /// The final head is not known yet.
    pub fn waiting_head(&self) -> bool {
        matches!(self.phase, Phase::Head)
    }

    /// The exchange ended (responded, handed over or failed).
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished)
    }

    /// The response with this head can be answered from a buffer.
    fn qualifies(&self, head: &ResponseHead) -> bool {
        head.status < 500
            && head.status != 429
            && !head.chunked
            && !head.close_delimited
            && usize::try_from(head.content_length).is_ok_and(|n| n <= self.max_buffer)
    }

    /// Processes one received segment.
    pub fn feed(&mut self, data: &[u8]) -> Result<Step, Error> {
        if self.is_finished() {
            return Err(Error::Finished);
        }
        let fed = match self.parser.feed(data) {
            Ok(fed) => fed,
            Err(e) => {
                self.phase = Phase::Finished;
                return Err(Error::Protocol(e));
            }
        };
        if let Some(head) = fed.head {
            let head = Box::new(head);
            let reusable = fed.reusable && head.version == Version::Http11;
            if !self.qualifies(&head) {
                self.phase = Phase::Finished;
                let parser = Box::new(std::mem::take(&mut self.parser));
                return Ok(Step::Handover {
                    head,
                    body: Body::Fed(fed.body),
                    done: fed.done,
                    reusable,
                    parser,
                });
            }
            if fed.done {
                self.phase = Phase::Finished;
                return Ok(Step::Respond {
                    head,
                    body: Body::Fed(fed.body),
                    reusable,
                });
            }
            // Sized once from the Content-Length (capped by max_buffer), so no regrowth.
            let mut buf = Vec::with_capacity(usize::try_from(head.content_length).unwrap_or(0));
            fed.body.iter().for_each(|r| {
                buf.extend_from_slice(data.get(r).unwrap_or_default());
            });
            self.phase = Phase::Body { head, buf };
            return Ok(Step::NeedMore);
        }
        let Phase::Body { buf, .. } = &mut self.phase else {
            return Ok(Step::NeedMore);
        };
        fed.body.iter().for_each(|r| {
            buf.extend_from_slice(data.get(r).unwrap_or_default());
        });
        if !fed.done {
            return Ok(Step::NeedMore);
        }
        match std::mem::replace(&mut self.phase, Phase::Finished) {
            Phase::Body { head, buf } => {
                let reusable = fed.reusable && head.version == Version::Http11;
                Ok(Step::Respond {
                    head,
                    body: Body::Buffered(buf),
                    reusable,
                })
            }
            // Unreachable: the phase was Body just above.
            _ => Err(Error::Finished),
        }
    }

    /// The upstream closed the connection (EOF or lost).
    pub fn eof(&mut self) -> Result<Step, Error> {
        if self.is_finished() {
            return Err(Error::Finished);
        }
        self.phase = Phase::Finished;
        match self.parser.feed_eof() {
            // Qualifying responses are never close-delimited, so EOF never completes one here.
            Ok(_) => Err(Error::Reset(ParseError::ClosedInBody)),
            Err(e @ (ParseError::ClosedInHead | ParseError::ClosedInBody)) => Err(Error::Reset(e)),
            Err(e) => Err(Error::Protocol(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The outcome of feeding `parts` then EOF (if still undecided), made independent of the
    /// split: Respond/Handover bodies are completed by draining the handed-over parser.
    #[derive(Debug, PartialEq)]
    pub(super) enum Outcome {
        Respond {
            status: u16,
            body: Vec<u8>,
            reusable: bool,
        },
        Handover {
            status: u16,
            body: Vec<u8>,
            done: bool,
            reusable: bool,
        },
        Failed(Error),
        Pending,
    }

    pub(super) fn drive(parts: &[&[u8]], is_head: bool, max_buffer: usize, eof: bool) -> Outcome {
        let mut ex = Exchange::new(is_head, max_buffer);
        let mut iter = parts.iter();
        for part in iter.by_ref() {
            match ex.feed(part) {
                Ok(Step::NeedMore) => {}
                Ok(Step::Respond {
                    head,
                    body,
                    reusable,
                }) => {
                    // Bytes after a complete response make the connection unusable either way.
                    let more = iter.any(|p| !p.is_empty());
                    return Outcome::Respond {
                        status: head.status,
                        body: body.to_vec(part),
                        reusable: reusable && !more,
                    };
                }
                Ok(Step::Handover {
                    head,
                    body,
                    mut done,
                    mut reusable,
                    mut parser,
                }) => {
                    let mut all = body.to_vec(part);
                    for rest in iter.by_ref() {
                        if done && rest.is_empty() {
                            continue;
                        }
                        if done {
                            reusable = false;
                            break;
                        }
                        match parser.feed(rest) {
                            Ok(fed) => {
                                all.extend(fed.body.to_vec(rest));
                                done = fed.done;
                                reusable = fed.reusable && head.version == Version::Http11;
                            }
                            Err(e) => return Outcome::Failed(Error::Protocol(e)),
                        }
                    }
                    if !done && eof {
                        match parser.feed_eof() {
                            Ok(true) => done = true,
                            Ok(false) => {}
                            Err(e) => return Outcome::Failed(Error::Reset(e)),
                        }
                    }
                    return Outcome::Handover {
                        status: head.status,
                        body: all,
                        done,
                        reusable,
                    };
                }
                Err(e) => return Outcome::Failed(e),
            }
        }
        if eof {
            match ex.eof() {
                Err(e) => Outcome::Failed(e),
                Ok(_) => Outcome::Pending,
            }
        } else {
            Outcome::Pending
        }
    }

    fn whole(raw: &[u8]) -> Outcome {
        drive(&[raw], false, 1024, true)
    }

    #[test]
    fn small_response_in_one_segment() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\nConnection: x-a\r\n\r\nhello";
        let mut ex = Exchange::new(false, 1024);
        match ex.feed(raw).unwrap() {
            Step::Respond {
                head,
                body,
                reusable,
            } => {
                assert_eq!(head.status, 200);
                assert_eq!(head.forward, vec![("content-length".into(), "5".into())]);
                assert!(matches!(body, Body::Fed(_)));
                assert_eq!(body.single(), Some(raw.len() - 5..raw.len()));
                assert_eq!(body.to_vec(raw), b"hello");
                assert!(reusable);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(ex.is_finished());
        assert!(matches!(ex.feed(b"x"), Err(Error::Finished)));
        assert!(matches!(ex.eof(), Err(Error::Finished)));
    }

    #[test]
    fn body_across_segments_is_buffered() {
        let mut ex = Exchange::new(false, 1024);
        assert!(matches!(
            ex.feed(b"HTTP/1.1 201 Created\r\nContent-Length: 10\r\n\r\n0123"),
            Ok(Step::NeedMore)
        ));
        assert!(!ex.waiting_head() && !ex.is_finished());
        assert!(matches!(ex.feed(b"45"), Ok(Step::NeedMore)));
        match ex.feed(b"6789").unwrap() {
            Step::Respond {
                head,
                body,
                reusable,
            } => {
                assert_eq!(head.status, 201);
                assert_eq!(body, Body::Buffered(b"0123456789".to_vec()));
                assert_eq!(body.len(), 10);
                let mut out = [0u8; 10];
                body.copy_into(b"", &mut out);
                assert_eq!(&out, b"0123456789");
                assert!(reusable);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn head_split_before_body() {
        let mut ex = Exchange::new(false, 1024);
        assert!(matches!(
            ex.feed(b"HTTP/1.1 200 OK\r\nConte"),
            Ok(Step::NeedMore)
        ));
        assert!(ex.waiting_head());
        assert!(matches!(
            ex.feed(b"nt-Length: 2\r\n\r\n"),
            Ok(Step::NeedMore)
        ));
        assert!(!ex.waiting_head());
        assert!(matches!(ex.feed(b"ok"), Ok(Step::Respond { .. })));
    }

    #[test]
    fn bodiless_responses() {
        for (raw, is_head) in [
            (&b"HTTP/1.1 204 No Content\r\n\r\n"[..], false),
            (b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n", false),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", true),
            (
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                false,
            ),
        ] {
            assert_eq!(
                drive(&[raw], is_head, 16, true),
                Outcome::Respond {
                    status: raw[9..12]
                        .iter()
                        .fold(0, |a, d| a * 10 + u16::from(d - b'0')),
                    body: vec![],
                    reusable: true
                },
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn interim_heads_are_skipped() {
        assert_eq!(
            whole(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"),
            Outcome::Respond {
                status: 200,
                body: b"x".to_vec(),
                reusable: true
            }
        );
    }

    #[test]
    fn not_reusable() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx"[..],
            b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
            // HTTP/1.0 keep-alive is never reused, as the Python client does.
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
            // Bytes after the response in the same segment.
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxy",
        ] {
            assert_eq!(
                whole(raw),
                Outcome::Respond {
                    status: 200,
                    body: b"x".to_vec(),
                    reusable: false
                },
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn handover_cases() {
        type Case = (&'static [u8], u16, &'static [u8], bool, bool);
        let cases: [Case; 6] = [
            (
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy",
                503,
                b"busy",
                true,
                true,
            ),
            (
                b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n",
                429,
                b"",
                true,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
                200,
                b"abc",
                false,
                false,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\nabc", 200, b"abc", false, false),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\nabc",
                200,
                b"abc",
                false,
                false,
            ),
            (
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 9\r\n\r\n",
                502,
                b"",
                false,
                false,
            ),
        ];
        for (raw, status, want, want_done, want_reusable) in cases {
            let mut ex = Exchange::new(false, 1024);
            match ex.feed(raw).unwrap() {
                Step::Handover {
                    head,
                    body,
                    done,
                    reusable,
                    parser,
                } => {
                    assert_eq!(head.status, status);
                    assert_eq!(body.to_vec(raw), want);
                    assert_eq!((done, reusable), (want_done, want_reusable));
                    assert_eq!(parser.is_idle(), done);
                }
                other => panic!("unexpected {other:?}"),
            }
            assert!(ex.is_finished());
            assert!(matches!(ex.feed(b""), Err(Error::Finished)));
        }
    }

    #[test]
    fn handed_over_parser_continues_the_stream() {
        let mut ex = Exchange::new(false, 1024);
        let Ok(Step::Handover {
            done: false,
            mut parser,
            ..
        }) = ex.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\nda")
        else {
            panic!("expected a handover")
        };
        let fed = parser.feed(b"ta: x\r\n0\r\n\r\n").unwrap();
        assert_eq!(fed.body.to_vec(b"ta: x\r\n0\r\n\r\n"), b"ta: x");
        assert!(fed.done && fed.reusable && parser.is_idle());
        // The same parser carries the next request on the connection.
        parser.start(false).unwrap();
        assert!(
            parser
                .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .unwrap()
                .done
        );
    }

    #[test]
    fn max_buffer_is_inclusive() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd";
        assert!(matches!(
            drive(&[raw], false, 4, true),
            Outcome::Respond { .. }
        ));
        assert!(matches!(
            drive(&[raw], false, 3, true),
            Outcome::Handover { .. }
        ));
    }

    #[test]
    fn errors() {
        assert!(matches!(
            whole(b"garbage\r\n\r\n"),
            Outcome::Failed(Error::Protocol(ParseError::InvalidHead(_)))
        ));
        assert_eq!(
            whole(b"HTTP/1.1 101 Switching Protocols\r\n\r\n"),
            Outcome::Failed(Error::Protocol(ParseError::Upgrade))
        );
        assert_eq!(
            whole(b"HTTP/1.1 200 OK\r\nContent"),
            Outcome::Failed(Error::Reset(ParseError::ClosedInHead))
        );
        assert_eq!(
            whole(b""),
            Outcome::Failed(Error::Reset(ParseError::ClosedInHead))
        );
        assert_eq!(
            whole(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"),
            Outcome::Failed(Error::Reset(ParseError::ClosedInBody))
        );
        let mut ex = Exchange::new(false, 16);
        assert!(ex
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")
            .is_err());
        assert!(matches!(ex.feed(b"x"), Err(Error::Finished)));
        assert_eq!(
            Error::Reset(ParseError::ClosedInHead).to_string(),
            "upstream closed the connection: connection closed before the response head was complete"
        );
    }
}

#[cfg(test)]
mod props {
    use super::tests::drive;
    use proptest::prelude::*;

    const RESPONSES: &[(&[u8], bool)] = &[
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world", false),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n", true),
        (b"HTTP/1.1 204 No Content\r\nDate: x\r\n\r\n", false),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nabc", false),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ndata\r\n6;x=y\r\n: ping\r\n0\r\nT: 1\r\n\r\n", false),
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\ndata: 2\n\n", false),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n0123456789012345678901234567890123456789", false),
        (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 4\r\n\r\nbusy", false),
        (b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 2\r\n\r\nno", false),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", false),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", false),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\ntrunc", false),
        (b"HTTP/1.1 200 OK\r\nContent-Le", false),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", false),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ndataXX", false),
    ];

    proptest! {
        #[test]
        fn any_split_same_outcome(
            idx in 0..RESPONSES.len(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
            eof in any::<bool>(),
        ) {
            let (raw, is_head) = RESPONSES[idx];
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(raw.len() + 1)).collect();
            at.sort_unstable();
            let mut parts: Vec<&[u8]> = Vec::new();
            let mut prev = 0;
            for &c in &at {
                parts.push(&raw[prev..c]);
                prev = c;
            }
            parts.push(&raw[prev..]);
            let expected = drive(&[raw], is_head, 32, eof);
            prop_assert_eq!(drive(&parts, is_head, 32, eof), expected);
        }

        #[test]
        fn byte_by_byte_same_outcome(idx in 0..RESPONSES.len(), max_buffer in 0usize..64) {
            let (raw, is_head) = RESPONSES[idx];
            let parts: Vec<&[u8]> = raw.chunks(1).collect();
            prop_assert_eq!(
                drive(&parts, is_head, max_buffer, true),
                drive(&[raw], is_head, max_buffer, true)
            );
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256), cut in any::<prop::sample::Index>()) {
            let c = cut.index(data.len() + 1);
            let (a, b) = data.split_at(c);
            let _ = drive(&[a, b], false, 64, true);
        }
    }
}
