//! Incremental HTTP/1.1 response parsing and body framing (RFC 9112).
//!
//! One [`ResponseParser`] per upstream connection, reused across keep-alive responses. Each
//! received segment is fed once and yields everything it completed: the final head (1xx interim
//! heads are skipped), the decoded body bytes as spans into that segment (never copied here), and
//! whether the message is done and the connection may be reused.
//!
//! Line endings: the head is parsed by `httparse`, which (like hyper) accepts a bare LF as a line
//! end. The chunked framing requires CRLF after the size line, after the data and in the trailer
//! section, as llhttp does by default and as `httparse::parse_chunk_size` does; a bare LF there
//! is an error, so a body is never framed differently from what a strict peer would see.
//! Whitespace between the chunk size and `;` or CRLF is accepted (hyper does; RFC 9112 allows
//! BWS before extensions); chunk extensions are skipped unread.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::is_hop_by_hop;

/// Default cap of one response head (status line + fields), also of the trailer section.
pub const DEFAULT_MAX_HEAD: usize = 64 * 1024;
/// Default cap on the number of header fields in one head.
pub const DEFAULT_MAX_HEADERS: usize = 128;
/// Cap of one chunk size line including its extensions.
pub const MAX_CHUNK_LINE: usize = 4096;

/// Heads with at most this many fields are parsed into a stack buffer, larger caps allocate.
const STACK_HEADERS: usize = 128;

/// Why a response could not be parsed; the connection must not be reused after any of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Bytes arrived while no request was in flight.
    #[error("unsolicited bytes with no request in flight")]
    Unsolicited,
    /// `start` was called while a response was still being read.
    #[error("a response is already in progress")]
    Busy,
    /// The parser failed earlier and keeps no usable state.
    #[error("parser is unusable after an earlier error")]
    Poisoned,
    /// A 101 Switching Protocols response.
    #[error("upstream switched protocols (101); upgrade is not supported")]
    Upgrade,
    /// The head (or trailer section) is larger than the configured cap.
    #[error("response head exceeds {0} bytes")]
    HeadTooLarge(usize),
    /// More header fields than the configured cap.
    #[error("response head has more than {0} header fields")]
    TooManyHeaders(usize),
    /// The status line or a header field is malformed.
    #[error("invalid response head: {0}")]
    InvalidHead(&'static str),
    /// A status code outside 100..=999.
    #[error("invalid status code {0}")]
    InvalidStatus(u16),
    /// Content-Length that is not a (list of identical) decimal number(s).
    #[error("invalid Content-Length {0:?}")]
    InvalidContentLength(String),
    /// Content-Length headers whose values differ.
    #[error("conflicting Content-Length values {0:?} and {1:?}")]
    ConflictingContentLength(String, String),
    /// A Transfer-Encoding header with no coding in it.
    #[error("invalid Transfer-Encoding {0:?}")]
    InvalidTransferEncoding(String),
    /// A malformed chunk size line.
    #[error("invalid chunk size line: {0}")]
    InvalidChunkSize(&'static str),
    /// A chunk size line (with extensions) longer than [`MAX_CHUNK_LINE`].
    #[error("chunk size line too long (over {MAX_CHUNK_LINE} bytes)")]
    ChunkLineTooLong,
    /// Missing CRLF after chunk data or in the trailer section.
    #[error("invalid chunked body: {0}")]
    InvalidChunk(&'static str),
    /// The trailer section is larger than the head cap.
    #[error("trailer section exceeds {0} bytes")]
    TrailersTooLarge(usize),
    /// EOF before the final head was complete.
    #[error("connection closed before the response head was complete")]
    ClosedInHead,
    /// EOF inside a Content-Length or chunked body.
    #[error("connection closed in the middle of the body")]
    ClosedInBody,
}

/// Size caps of one parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum bytes of one head (each 1xx head counts on its own) and of the trailer section.
    pub max_head: usize,
    /// Maximum number of header fields in one head.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: DEFAULT_MAX_HEAD,
            max_headers: DEFAULT_MAX_HEADERS,
        }
    }
}

/// HTTP version of a response (httparse accepts only these two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0
    Http10,
    /// HTTP/1.1
    Http11,
}

impl Version {
    /// "1.0" or "1.1".
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "1.0",
            Version::Http11 => "1.1",
        }
    }
}

/// A parsed final response head with everything a proxy decides from it, computed once.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseHead {
    /// Status code (>= 200; 1xx are skipped, 101 is an error).
    pub status: u16,
    /// Reason phrase, latin-1 decoded, possibly empty.
    pub reason: String,
    /// Protocol version.
    pub version: Version,
    /// Fields as received: original name case, values latin-1 decoded and trimmed of OWS.
    pub headers: Vec<(String, String)>,
    /// Fields to pass on: lowercase names, without hop-by-hop fields and those named in Connection.
    pub forward: Vec<(String, String)>,
    /// An `x-request-id` field survives in `forward`.
    pub has_request_id: bool,
    /// Body bytes that follow: the Content-Length for a length-delimited body, 0 for a response
    /// without body (HEAD, 204, 304), -1 for a chunked or close-delimited body.
    pub content_length: i64,
    /// Retry-After in seconds when given as delta-seconds (an HTTP date gives None).
    pub retry_after: Option<f64>,
    /// The connection may carry another request after this response (framing and Connection).
    pub keep_alive: bool,
    /// The body ends when the upstream closes the connection.
    pub close_delimited: bool,
    /// The body is chunked.
    pub chunked: bool,
}

/// Decoded body bytes of one feed, as ranges into the fed slice (contiguous ones merged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodySpans {
    first: Range<usize>,
    rest: Vec<Range<usize>>,
    total: usize,
}

impl BodySpans {
    /// Total number of body bytes.
    pub fn len(&self) -> usize {
        self.total
    }

    /// No body bytes in this feed.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The single range when the body bytes are contiguous in the fed slice.
    pub fn single(&self) -> Option<Range<usize>> {
        (self.total > 0 && self.rest.is_empty()).then(|| self.first.clone())
    }

    /// The ranges in order.
    pub fn iter(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        std::iter::once(self.first.clone())
            .filter(|r| !r.is_empty())
            .chain(self.rest.iter().cloned())
    }

    /// Copies the body bytes out of `data` (the slice that was fed) into `out` (len() bytes).
    pub fn copy_into(&self, data: &[u8], out: &mut [u8]) {
        let mut at = 0;
        for r in self.iter() {
            let n = r.len();
            if let (Some(dst), Some(src)) = (out.get_mut(at..at + n), data.get(r)) {
                dst.copy_from_slice(src);
            }
            at += n;
        }
    }

    /// The body bytes copied out of `data` (the slice that was fed).
    pub fn to_vec(&self, data: &[u8]) -> Vec<u8> {
        let mut out = vec![0; self.total];
        self.copy_into(data, &mut out);
        out
    }

    fn push(&mut self, r: Range<usize>) {
        if r.is_empty() {
            return;
        }
        self.total += r.len();
        if self.first.is_empty() {
            self.first = r;
            return;
        }
        match self.rest.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            Some(_) => self.rest.push(r),
            None if self.first.end == r.start => self.first.end = r.end,
            None => self.rest.push(r),
        }
    }
}

/// What one feed produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fed {
    /// The final head, if it completed in this feed.
    pub head: Option<ResponseHead>,
    /// Decoded body bytes of this feed.
    pub body: BodySpans,
    /// The response is complete.
    pub done: bool,
    /// Done, keep-alive, and nothing followed the response in this feed: the connection can be
    /// reused. False whenever `done` is false.
    pub reusable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    LineStart,
    LineStartCr,
    InLine,
}

/// Finds the end of a head across feeds, so httparse runs once per head, not once per feed.
#[derive(Debug, Clone, Copy)]
struct HeadScan {
    at: Scan,
    seen_line: bool,
}

impl HeadScan {
    const NEW: HeadScan = HeadScan {
        at: Scan::LineStart,
        seen_line: false,
    };

    /// Index just past the empty line that ends the head, if it is in `data`.
    fn find_end(&mut self, data: &[u8]) -> Option<usize> {
        for (i, &b) in data.iter().enumerate() {
            match (self.at, b) {
                (Scan::LineStart | Scan::LineStartCr, b'\n') => {
                    // httparse skips empty lines before the status line, so only an empty
                    // line after a non-empty one ends the head.
                    if self.seen_line {
                        return Some(i + 1);
                    }
                    self.at = Scan::LineStart;
                }
                (Scan::LineStart, b'\r') => self.at = Scan::LineStartCr,
                (_, b'\n') => self.at = Scan::LineStart,
                _ => {
                    self.seen_line = true;
                    self.at = Scan::InLine;
                }
            }
        }
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SizeAt {
    Digits,
    Space,
    Ext,
    Lf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrailerAt {
    LineStart,
    EndLf,
    InLine,
    LineLf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Head,
    Length(u64),
    ChunkSize {
        size: u64,
        digits: u8,
        line: usize,
        at: SizeAt,
    },
    ChunkData(u64),
    ChunkDataCr,
    ChunkDataLf,
    Trailers {
        bytes: usize,
        at: TrailerAt,
    },
    Close,
    Failed,
}

const CHUNK_SIZE: State = State::ChunkSize {
    size: 0,
    digits: 0,
    line: 0,
    at: SizeAt::Digits,
};

enum HeadStep {
    NeedMore,
    Interim(usize),
    Final(usize, Box<ResponseHead>),
}

enum Parsed {
    Partial,
    Interim(usize),
    Final(usize, Box<ResponseHead>),
}

/// Incremental parser of the responses on one connection (one response per `start`).
#[derive(Debug, Clone)]
pub struct ResponseParser {
    limits: Limits,
    state: State,
    is_head: bool,
    keep_alive: bool,
    head_buf: Vec<u8>,
    scan: HeadScan,
}

impl Default for ResponseParser {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl ResponseParser {
    /// A parser with no request in flight.
    pub fn new(limits: Limits) -> Self {
        ResponseParser {
            limits,
            state: State::Idle,
            is_head: false,
            keep_alive: false,
            head_buf: Vec::new(),
            scan: HeadScan::NEW,
        }
    }

    /// The caps this parser enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// No request in flight (before the first `start`, or after a response completed).
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle
    }

    /// A request went out: expect its response. A HEAD request's response has no body.
    pub fn start(&mut self, is_head_request: bool) -> Result<(), Error> {
        match self.state {
            State::Idle => {}
            State::Failed => return Err(Error::Poisoned),
            _ => return Err(Error::Busy),
        }
        self.state = State::Head;
        self.is_head = is_head_request;
        self.keep_alive = false;
        self.head_buf.clear();
        self.scan = HeadScan::NEW;
        Ok(())
    }

    /// Parses one received segment; any split of the same bytes gives the same result.
    pub fn feed(&mut self, data: &[u8]) -> Result<Fed, Error> {
        let result = self.feed_inner(data);
        if result.is_err() {
            self.fail();
        }
        result
    }

    /// The upstream closed: true when this ended a close-delimited body, false when idle.
    pub fn feed_eof(&mut self) -> Result<bool, Error> {
        let result = match self.state {
            State::Idle => return Ok(false),
            State::Close => {
                self.state = State::Idle;
                return Ok(true);
            }
            State::Failed => Err(Error::Poisoned),
            State::Head => Err(Error::ClosedInHead),
            _ => Err(Error::ClosedInBody),
        };
        self.fail();
        result
    }

    fn fail(&mut self) {
        self.state = State::Failed;
        self.head_buf = Vec::new();
    }

    fn feed_inner(&mut self, data: &[u8]) -> Result<Fed, Error> {
        let mut fed = Fed::default();
        match self.state {
            State::Idle if data.is_empty() => return Ok(fed),
            State::Idle => return Err(Error::Unsolicited),
            State::Failed => return Err(Error::Poisoned),
            _ => {}
        }
        let mut pos = 0;
        loop {
            if self.state == State::Idle {
                // Done: bytes after the message mean the upstream is out of step with us.
                fed.done = true;
                fed.reusable = self.keep_alive && pos == data.len();
                return Ok(fed);
            }
            let Some(rest) = data.get(pos..).filter(|r| !r.is_empty()) else {
                return Ok(fed);
            };
            match self.state {
                State::Head => match self.head_step(rest)? {
                    HeadStep::NeedMore => return Ok(fed),
                    HeadStep::Interim(n) => pos += n,
                    HeadStep::Final(n, head) => {
                        pos += n;
                        self.keep_alive = head.keep_alive;
                        self.state = if head.chunked {
                            CHUNK_SIZE
                        } else if head.close_delimited {
                            State::Close
                        } else if head.content_length > 0 {
                            State::Length(head.content_length.unsigned_abs())
                        } else {
                            State::Idle
                        };
                        fed.head = Some(*head);
                    }
                },
                State::Length(remaining) => {
                    let take = usize::try_from(remaining).map_or(rest.len(), |r| r.min(rest.len()));
                    fed.body.push(pos..pos + take);
                    pos += take;
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::Idle
                    } else {
                        State::Length(left)
                    };
                }
                State::Close => {
                    fed.body.push(pos..data.len());
                    return Ok(fed);
                }
                State::ChunkData(remaining) => {
                    let take = usize::try_from(remaining).map_or(rest.len(), |r| r.min(rest.len()));
                    fed.body.push(pos..pos + take);
                    pos += take;
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::ChunkDataCr
                    } else {
                        State::ChunkData(left)
                    };
                }
                _ => pos += self.framing_step(rest)?,
            }
        }
    }

    /// Advances through chunk size lines, CRLFs after data and trailers; returns bytes used.
    fn framing_step(&mut self, rest: &[u8]) -> Result<usize, Error> {
        for (i, &b) in rest.iter().enumerate() {
            match self.state {
                State::ChunkSize {
                    mut size,
                    mut digits,
                    mut line,
                    mut at,
                } => {
                    line += 1;
                    if line > MAX_CHUNK_LINE {
                        return Err(Error::ChunkLineTooLong);
                    }
                    match (at, b) {
                        (SizeAt::Digits, _) if b.is_ascii_hexdigit() => {
                            if digits >= 16 {
                                return Err(Error::InvalidChunkSize("more than 16 hex digits"));
                            }
                            digits += 1;
                            // 16 hex digits fit in a u64, so this cannot overflow.
                            size = (size << 4) | u64::from(hex_value(b));
                        }
                        (SizeAt::Digits, _) if digits == 0 => {
                            return Err(Error::InvalidChunkSize("missing chunk size"));
                        }
                        (SizeAt::Digits | SizeAt::Space, b' ' | b'\t') => at = SizeAt::Space,
                        (SizeAt::Digits | SizeAt::Space, b';') => at = SizeAt::Ext,
                        (SizeAt::Digits | SizeAt::Space | SizeAt::Ext, b'\r') => at = SizeAt::Lf,
                        (SizeAt::Digits | SizeAt::Space | SizeAt::Ext, b'\n') => {
                            return Err(Error::InvalidChunkSize("bare LF, CRLF required"));
                        }
                        (SizeAt::Digits | SizeAt::Space, _) => {
                            return Err(Error::InvalidChunkSize("invalid character after size"));
                        }
                        (SizeAt::Ext, _) => {}
                        (SizeAt::Lf, b'\n') => {
                            self.state = if size == 0 {
                                State::Trailers {
                                    bytes: 0,
                                    at: TrailerAt::LineStart,
                                }
                            } else {
                                State::ChunkData(size)
                            };
                            return Ok(i + 1);
                        }
                        (SizeAt::Lf, _) => {
                            return Err(Error::InvalidChunkSize("CR not followed by LF"));
                        }
                    }
                    self.state = State::ChunkSize {
                        size,
                        digits,
                        line,
                        at,
                    };
                }
                State::ChunkDataCr => {
                    if b != b'\r' {
                        return Err(Error::InvalidChunk("expected CRLF after chunk data"));
                    }
                    self.state = State::ChunkDataLf;
                }
                State::ChunkDataLf => {
                    if b != b'\n' {
                        return Err(Error::InvalidChunk("expected CRLF after chunk data"));
                    }
                    self.state = CHUNK_SIZE;
                    return Ok(i + 1);
                }
                State::Trailers { mut bytes, at } => {
                    bytes += 1;
                    if bytes > self.limits.max_head {
                        return Err(Error::TrailersTooLarge(self.limits.max_head));
                    }
                    let at = match (at, b) {
                        (TrailerAt::LineStart, b'\r') => TrailerAt::EndLf,
                        (TrailerAt::EndLf, b'\n') => {
                            self.state = State::Idle;
                            return Ok(i + 1);
                        }
                        (TrailerAt::InLine, b'\r') => TrailerAt::LineLf,
                        (TrailerAt::LineLf, b'\n') => TrailerAt::LineStart,
                        (TrailerAt::EndLf | TrailerAt::LineLf, _) => {
                            return Err(Error::InvalidChunk("CR not followed by LF in trailers"));
                        }
                        (_, b'\n') => {
                            return Err(Error::InvalidChunk("bare LF in trailers, CRLF required"));
                        }
                        _ => TrailerAt::InLine,
                    };
                    self.state = State::Trailers { bytes, at };
                }
                // Other states are handled by feed_inner before calling here.
                _ => return Ok(i),
            }
        }
        Ok(rest.len())
    }

    /// Consumes head bytes from `rest`: parses in place when no earlier bytes are buffered.
    fn head_step(&mut self, rest: &[u8]) -> Result<HeadStep, Error> {
        let max = self.limits.max_head;
        if self.head_buf.is_empty() {
            match parse_head(rest, &self.limits, self.is_head)? {
                Parsed::Final(n, _) | Parsed::Interim(n) if n > max => {
                    return Err(Error::HeadTooLarge(max))
                }
                Parsed::Final(n, head) => return Ok(HeadStep::Final(n, head)),
                Parsed::Interim(n) => return Ok(HeadStep::Interim(n)),
                Parsed::Partial => {}
            }
            if rest.len() > max {
                return Err(Error::HeadTooLarge(max));
            }
            if self.scan.find_end(rest).is_some() {
                // httparse saw no end where the scanner did: a line ending httparse rejects.
                return Err(Error::InvalidHead("malformed line ending"));
            }
            self.head_buf.extend_from_slice(rest);
            return Ok(HeadStep::NeedMore);
        }
        let Some(end) = self.scan.find_end(rest) else {
            if self.head_buf.len() + rest.len() > max {
                return Err(Error::HeadTooLarge(max));
            }
            self.head_buf.extend_from_slice(rest);
            return Ok(HeadStep::NeedMore);
        };
        if self.head_buf.len() + end > max {
            return Err(Error::HeadTooLarge(max));
        }
        self.head_buf
            .extend_from_slice(rest.get(..end).unwrap_or(rest));
        let parsed = parse_head(&self.head_buf, &self.limits, self.is_head)?;
        let total = self.head_buf.len();
        self.head_buf.clear();
        self.scan = HeadScan::NEW;
        match parsed {
            Parsed::Final(n, head) if n == total => Ok(HeadStep::Final(end, head)),
            Parsed::Interim(n) if n == total => Ok(HeadStep::Interim(end)),
            _ => Err(Error::InvalidHead("malformed line ending")),
        }
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

/// Each byte one char (ISO-8859-1), as llhttp users decode header bytes.
fn latin1(bytes: &[u8]) -> String {
    if bytes.is_ascii() {
        if let Ok(s) = std::str::from_utf8(bytes) {
            return s.to_owned();
        }
    }
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_ows(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_ows(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// Non-empty elements of a comma-separated list, trimmed.
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|s| !s.is_empty())
}

/// `Content-Length` per RFC 9110 §8.6: digits, or a list of identical values.
pub(crate) fn parse_content_length(value: &[u8]) -> Result<u64, Error> {
    let invalid = || Error::InvalidContentLength(latin1(value));
    let mut result: Option<u64> = None;
    for item in value.split(|&b| b == b',').map(trim_ows) {
        if item.is_empty() || !item.iter().all(u8::is_ascii_digit) {
            return Err(invalid());
        }
        let n = item.iter().try_fold(0u64, |acc, &d| {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        });
        let n = n
            .filter(|&n| i64::try_from(n).is_ok())
            .ok_or_else(invalid)?;
        match result {
            Some(prev) if prev != n => {
                return Err(Error::ConflictingContentLength(
                    prev.to_string(),
                    n.to_string(),
                ))
            }
            _ => result = Some(n),
        }
    }
    result.ok_or_else(invalid)
}

fn parse_retry_after(value: &[u8]) -> Option<f64> {
    let v = trim_ows(value);
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse::<f64>().ok()
}

/// The reason phrase as bytes (httparse drops a reason with obs-text, we keep it as latin-1).
fn reason_bytes(buf: &[u8]) -> &[u8] {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line = buf.get(start..).unwrap_or_default();
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    let mut line = line.get(..end).unwrap_or_default();
    if let [rest @ .., b'\r'] = line {
        line = rest;
    }
    // "HTTP/1.1 200 " is 13 bytes; anything after it is the reason.
    line.get(13..).unwrap_or_default()
}

fn head_error(err: httparse::Error, buf: &[u8], limits: &Limits) -> Error {
    match err {
        httparse::Error::TooManyHeaders => Error::TooManyHeaders(limits.max_headers),
        httparse::Error::HeaderName | httparse::Error::Token
            if buf.windows(2).any(|w| w == b"\n " || w == b"\n\t") =>
        {
            Error::InvalidHead("obsolete line folding is not allowed")
        }
        httparse::Error::HeaderName => Error::InvalidHead("invalid header name"),
        httparse::Error::HeaderValue => Error::InvalidHead("invalid header value"),
        httparse::Error::NewLine => Error::InvalidHead("invalid line ending"),
        httparse::Error::Status => Error::InvalidHead("invalid status line"),
        httparse::Error::Token => Error::InvalidHead("invalid token"),
        httparse::Error::Version => Error::InvalidHead("invalid HTTP version (1.0 or 1.1 only)"),
    }
}

fn parse_head(buf: &[u8], limits: &Limits, is_head: bool) -> Result<Parsed, Error> {
    let mut stack = [MaybeUninit::<httparse::Header<'_>>::uninit(); STACK_HEADERS];
    let mut heap;
    let slots: &mut [MaybeUninit<httparse::Header<'_>>] = if limits.max_headers <= STACK_HEADERS {
        stack.get_mut(..limits.max_headers).unwrap_or_default()
    } else {
        heap = vec![MaybeUninit::uninit(); limits.max_headers];
        &mut heap
    };
    let mut resp = httparse::Response::new(&mut []);
    let n = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, slots)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(e) => return Err(head_error(e, buf, limits)),
    };
    let status = resp.code.unwrap_or(0);
    match status {
        101 => return Err(Error::Upgrade),
        100..=199 => return Ok(Parsed::Interim(n)),
        200..=999 => {}
        _ => return Err(Error::InvalidStatus(status)),
    }
    let version = if resp.version == Some(0) {
        Version::Http10
    } else {
        Version::Http11
    };
    let fields: &[httparse::Header<'_>] = resp.headers;
    let mut headers = Vec::with_capacity(fields.len());
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut conn_tokens: Vec<String> = Vec::new();
    let mut content_length: Option<u64> = None;
    let mut te_final: Option<&[u8]> = None;
    let mut te_seen = false;
    let mut retry_after = None;
    let mut retry_seen = false;
    for h in fields {
        let name = h.name;
        match name.len() {
            10 if name.eq_ignore_ascii_case("connection") => {
                for token in list_items(h.value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        conn_close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        conn_keep_alive = true;
                    }
                    conn_tokens.push(latin1(token).to_ascii_lowercase());
                }
            }
            14 if name.eq_ignore_ascii_case("content-length") => {
                let n = parse_content_length(h.value)?;
                match content_length {
                    Some(prev) if prev != n => {
                        return Err(Error::ConflictingContentLength(
                            prev.to_string(),
                            n.to_string(),
                        ))
                    }
                    _ => content_length = Some(n),
                }
            }
            17 if name.eq_ignore_ascii_case("transfer-encoding") => {
                te_seen = true;
                match list_items(h.value).last() {
                    Some(last) => te_final = Some(last),
                    None => return Err(Error::InvalidTransferEncoding(latin1(h.value))),
                }
            }
            11 if !retry_seen && name.eq_ignore_ascii_case("retry-after") => {
                retry_seen = true;
                retry_after = parse_retry_after(h.value);
            }
            _ => {}
        }
        headers.push((name.to_owned(), latin1(h.value)));
    }
    let mut forward = Vec::with_capacity(headers.len());
    let mut has_request_id = false;
    for (name, value) in &headers {
        let lower = name.to_ascii_lowercase();
        if is_hop_by_hop(&lower) || conn_tokens.contains(&lower) {
            continue;
        }
        has_request_id |= lower == "x-request-id";
        forward.push((lower, value.clone()));
    }
    let chunked_te = te_final.is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
    let mut keep_alive = match version {
        Version::Http11 => !conn_close,
        Version::Http10 => conn_keep_alive && !conn_close,
    };
    if te_seen && content_length.is_some() {
        // Ambiguous framing (RFC 9112 §6.3 item 3): TE wins, the connection is not reused.
        keep_alive = false;
    }
    let bodiless = is_head || status == 204 || status == 304;
    let (chunked, close_delimited, length) = if bodiless {
        (false, false, 0)
    } else if te_seen {
        (chunked_te, !chunked_te, -1)
    } else if let Some(n) = content_length {
        (false, false, i64::try_from(n).unwrap_or(i64::MAX))
    } else {
        (false, true, -1)
    };
    if close_delimited {
        keep_alive = false;
    }
    Ok(Parsed::Final(
        n,
        Box::new(ResponseHead {
            status,
            reason: latin1(reason_bytes(buf)),
            version,
            headers,
            forward,
            has_request_id,
            content_length: length,
            retry_after,
            keep_alive,
            close_delimited,
            chunked,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `parts` after one `start` and collects (heads, body, done, last reusable).
    fn run(
        parts: &[&[u8]],
        is_head: bool,
    ) -> Result<(Vec<ResponseHead>, Vec<u8>, bool, bool), Error> {
        let mut p = ResponseParser::default();
        p.start(is_head)?;
        let mut heads = Vec::new();
        let mut body = Vec::new();
        let mut done = false;
        let mut reusable = false;
        for part in parts {
            let fed = p.feed(part)?;
            heads.extend(fed.head);
            body.extend(fed.body.to_vec(part));
            done |= fed.done;
            reusable = fed.reusable;
        }
        Ok((heads, body, done, reusable))
    }

    fn one(raw: &[u8]) -> (ResponseHead, Vec<u8>, bool, bool) {
        let (mut heads, body, done, reusable) = run(&[raw], false).unwrap();
        assert_eq!(heads.len(), 1);
        (heads.remove(0), body, done, reusable)
    }

    fn err(raw: &[u8]) -> Error {
        run(&[raw], false).unwrap_err()
    }

    #[test]
    fn content_length_response() {
        let (h, body, done, reusable) = one(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nX-Request-Id: abc\r\n\r\nhello",
        );
        assert_eq!(h.status, 200);
        assert_eq!(h.reason, "OK");
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.content_length, 5);
        assert!(h.keep_alive && !h.chunked && !h.close_delimited && h.has_request_id);
        assert_eq!(h.headers[0], ("Content-Type".into(), "text/plain".into()));
        assert_eq!(h.forward[2], ("x-request-id".into(), "abc".into()));
        assert_eq!(body, b"hello");
        assert!(done && reusable);
    }

    #[test]
    fn body_in_pieces_is_not_copied() {
        let mut p = ResponseParser::default();
        p.start(false).unwrap();
        let f = p
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n012")
            .unwrap();
        assert!(f.head.is_some() && !f.done && !f.reusable);
        assert_eq!(f.body.single(), Some(39..42));
        let f = p.feed(b"3456789").unwrap();
        assert_eq!(f.body.single(), Some(0..7));
        assert!(f.done && f.reusable);
        assert!(p.is_idle());
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        // From llhttp test/response/transfer-encoding.md "Chunk extensions".
        let raw = b"HTTP/1.1 200 OK\r\nHost: localhost\r\nTransfer-encoding: chunked\r\n\r\n\
5;ilovew3;somuchlove=aretheseparametersfor\r\nhello\r\n6;blahblah;blah\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n";
        let (h, body, done, reusable) = one(raw);
        assert!(h.chunked && !h.close_delimited && h.content_length == -1 && h.keep_alive);
        assert!(h.forward.iter().all(|(n, _)| n != "transfer-encoding"));
        assert_eq!(body, b"hello world");
        assert!(done && reusable);
        let mut p = ResponseParser::default();
        p.start(false).unwrap();
        let f = p.feed(raw).unwrap();
        assert_eq!(f.body.iter().count(), 2);
    }

    #[test]
    fn chunked_quoted_extension_and_bws() {
        // From llhttp test/response/transfer-encoding.md "Chunk extensions quoting".
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
5;ilovew3=\"I love; extensions\";somuchlove=\"aretheseparametersfor\";blah;foo=bar\r\nhello\r\n6 ;x\r\n world\r\n0  \r\n\r\n";
        let (_, body, done, _) = one(raw);
        assert_eq!(body, b"hello world");
        assert!(done);
    }

    #[test]
    fn chunk_size_errors() {
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let with = |tail: &[u8]| {
            let mut raw = head.clone();
            raw.extend_from_slice(tail);
            err(&raw)
        };
        // llhttp transfer-encoding.md "No semicolon before chunk extensions".
        assert!(matches!(
            with(b"2 erfrferferf\r\naa\r\n0\r\n\r\n"),
            Error::InvalidChunkSize(_)
        ));
        assert!(matches!(with(b"\r\n"), Error::InvalidChunkSize(_)));
        assert!(matches!(with(b"x\r\n"), Error::InvalidChunkSize(_)));
        assert!(matches!(
            with(b"10000000000000000\r\n"),
            Error::InvalidChunkSize(_)
        ));
        assert!(matches!(
            with(b"5\nhello\r\n0\r\n\r\n"),
            Error::InvalidChunkSize(_)
        ));
        assert!(matches!(with(b"5\r\nhelloX"), Error::InvalidChunk(_)));
        assert!(matches!(with(b"5\r\nhello\n"), Error::InvalidChunk(_)));
        assert!(matches!(with(b"0\r\nA: b\n"), Error::InvalidChunk(_)));
        let mut long = b"1;".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_CHUNK_LINE));
        assert_eq!(with(&long), Error::ChunkLineTooLong);
    }

    #[test]
    fn largest_chunk_size_is_accepted() {
        let mut p = ResponseParser::default();
        p.start(false).unwrap();
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\nabc";
        let f = p.feed(raw).unwrap();
        assert_eq!(f.body.to_vec(raw), b"abc");
        assert!(!f.done);
        assert_eq!(p.feed_eof(), Err(Error::ClosedInBody));
    }

    #[test]
    fn trailers_are_capped() {
        let mut p = ResponseParser::new(Limits {
            max_head: 64,
            max_headers: 8,
        });
        p.start(false).unwrap();
        p.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n")
            .unwrap();
        let e = p.feed(&[b'a'; 65]).unwrap_err();
        assert_eq!(e, Error::TrailersTooLarge(64));
        assert_eq!(e.to_string(), "trailer section exceeds 64 bytes");
        assert_eq!(p.feed(b"x"), Err(Error::Poisoned));
    }

    #[test]
    fn te_not_chunked_is_close_delimited() {
        // llhttp transfer-encoding.md "`chunked` before other transfer-encoding".
        let mut p = ResponseParser::default();
        p.start(false).unwrap();
        let f = p
            .feed(b"HTTP/1.1 200 OK\r\nAccept: */*\r\nTransfer-Encoding: chunked, deflate\r\n\r\nWorld")
            .unwrap();
        let h = f.head.unwrap();
        assert!(h.close_delimited && !h.chunked && !h.keep_alive);
        assert_eq!(f.body.to_vec(b"HTTP/1.1 200 OK\r\nAccept: */*\r\nTransfer-Encoding: chunked, deflate\r\n\r\nWorld"), b"World");
        assert!(!f.done);
        assert_eq!(p.feed_eof(), Ok(true));
        assert_eq!(p.feed_eof(), Ok(false));
        // llhttp transfer-encoding.md "multiple transfer-encoding where chunked is not the last one"
        let (h, body, _, _) = one(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\nWorld",
        );
        assert!(h.close_delimited);
        assert_eq!(body, b"World");
        // llhttp transfer-encoding.md "`chunkedchunked` transfer-encoding does not enable chunked"
        let (h, _, _, _) =
            one(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunkedchunked\r\n\r\n2\r\nOK");
        assert!(h.close_delimited && !h.chunked);
        // llhttp content-length.md "Content-Length-X" (not a Content-Length).
        let (h, body, done, _) = one(
            b"HTTP/1.1 200 OK\r\nContent-Length-X: 0\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nOK\r\n0\r\n\r\n",
        );
        assert!(h.chunked && done);
        assert_eq!(body, b"OK");
    }

    #[test]
    fn empty_transfer_encoding_is_an_error() {
        // llhttp transfer-encoding.md "Empty `Transfer-Encoding` with `Content-Length`".
        let e = err(b"HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(e, Error::InvalidTransferEncoding(String::new()));
    }

    #[test]
    fn te_with_content_length_te_wins_not_reusable() {
        let (h, body, done, reusable) = one(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        );
        assert!(h.chunked && !h.keep_alive && done && !reusable);
        assert_eq!(body, b"hello");
    }

    #[test]
    fn content_length_rules() {
        let (h, _, _, _) =
            one(b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc");
        assert_eq!(h.content_length, 3);
        // llhttp content-length.md "Tabs in `Content-Length` (surrounding)".
        let mut p = ResponseParser::default();
        p.start(false).unwrap();
        let f = p
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length:\t42\t\r\n\r\n")
            .unwrap();
        assert_eq!(f.head.unwrap().content_length, 42);
        let e = err(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n");
        assert_eq!(e.to_string(), "invalid Content-Length \"abc\"");
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n"),
            Error::ConflictingContentLength(..)
        ));
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Error::ConflictingContentLength(..)
        ));
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n"),
            Error::InvalidContentLength(_)
        ));
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
            Error::InvalidContentLength(_)
        ));
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n"),
            Error::InvalidContentLength(_)
        ));
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: 1,\r\n\r\n"),
            Error::InvalidContentLength(_)
        ));
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n"),
            Error::InvalidContentLength(_)
        ));
        let (h, body, done, reusable) = one(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(h.content_length == 0 && body.is_empty() && done && reusable);
    }

    #[test]
    fn bodiless_responses() {
        for raw in [
            &b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"[..],
            b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            let (h, body, done, reusable) = one(raw);
            assert!(body.is_empty() && done && reusable && h.content_length == 0);
            assert!(!h.chunked && !h.close_delimited);
        }
        let (heads, body, done, reusable) =
            run(&[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"], true).unwrap();
        assert_eq!(heads[0].content_length, 0);
        assert!(body.is_empty() && done && reusable);
        // llhttp content-length.md "Content-Length reset when no body is received" (skipBody).
        let mut p = ResponseParser::default();
        for cl in ["123", "456"] {
            p.start(true).unwrap();
            let f = p
                .feed(format!("HTTP/1.1 200 OK\r\nContent-Length: {cl}\r\n\r\n").as_bytes())
                .unwrap();
            assert!(f.done && f.reusable);
        }
    }

    #[test]
    fn interim_responses_are_skipped() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        let (h, body, done, reusable) = one(raw);
        assert_eq!(h.status, 200);
        assert_eq!(h.headers.len(), 1);
        assert_eq!(body, b"hi");
        assert!(done && reusable);
        let parts: Vec<&[u8]> = raw.chunks(1).collect();
        let (heads, body2, done2, _) = run(&parts, false).unwrap();
        assert_eq!(heads, vec![h]);
        assert_eq!(body2, b"hi");
        assert!(done2);
    }

    #[test]
    fn upgrade_is_an_error() {
        let e = err(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
        assert_eq!(e, Error::Upgrade);
        assert_eq!(
            e.to_string(),
            "upstream switched protocols (101); upgrade is not supported"
        );
    }

    #[test]
    fn status_line_variants() {
        // llhttp sample.md "No reason phrase" and "Empty reason phrase after space".
        for raw in [&b"HTTP/1.1 301\r\n\r\n"[..], b"HTTP/1.1 200 \r\n\r\n"] {
            let mut p = ResponseParser::default();
            p.start(false).unwrap();
            let h = p.feed(raw).unwrap().head.unwrap();
            assert_eq!(h.reason, "");
            assert!(h.close_delimited);
        }
        // llhttp invalid.md "Extra space between status code and reason".
        let mut p = ResponseParser::default();
        p.start(false).unwrap();
        assert_eq!(
            p.feed(b"HTTP/1.1 200  OK\r\n\r\n")
                .unwrap()
                .head
                .unwrap()
                .reason,
            " OK"
        );
        // obs-text in the reason stays, latin-1 decoded.
        let (h, _, _, _) = one(b"HTTP/1.1 200 Gr\xfc\xdfe\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.reason, "Gr\u{fc}\u{df}e");
        // llhttp invalid.md: bad versions, tab after version, one-digit status, bad protocol.
        for raw in [
            &b"HTP/1.1 200 OK\r\n\r\n"[..],
            b"HTTP/01.1 200 OK\r\n\r\n",
            b"HTTP/11.1 200 OK\r\n\r\n",
            b"HTTP/1.01 200 OK\r\n\r\n",
            b"HTTP/1.1\t200 OK\r\n\r\n",
            b"\rHTTP/1.1\t200 OK\r\n\r\n",
            b"HTTP/5.6 200 OK\r\n\r\n",
            b"HTTP/1.1  200 OK\r\n\r\n",
            b"HTTP/1.1 2 OK\r\n\r\n",
            b"HTTPER/1.1 200 OK\r\n\r\n",
            b"RTSP/1.1 200 OK\r\n\r\n",
            b"HTTP/2.0 200 OK\r\n\r\n",
        ] {
            assert!(
                matches!(err(raw), Error::InvalidHead(_)),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        assert_eq!(err(b"HTTP/1.1 099 X\r\n\r\n"), Error::InvalidStatus(99));
    }

    #[test]
    fn header_errors() {
        // llhttp invalid.md "Headers separated by CR".
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nFoo: 1\rBar: 2\r\n\r\n"),
            Error::InvalidHead(_)
        ));
        // llhttp invalid.md "Invalid space after start line".
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\n Host: foo\r\n\r\n"),
            Error::InvalidHead(_)
        ));
        let e = err(b"HTTP/1.1 200 OK\r\nA: b\r\n  c\r\n\r\n");
        assert_eq!(
            e,
            Error::InvalidHead("obsolete line folding is not allowed")
        );
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nA b: c\r\n\r\n"),
            Error::InvalidHead(_)
        ));
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nA : c\r\n\r\n"),
            Error::InvalidHead(_)
        ));
        let mut p = ResponseParser::new(Limits {
            max_head: 1024,
            max_headers: 2,
        });
        p.start(false).unwrap();
        assert_eq!(
            p.feed(b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"),
            Err(Error::TooManyHeaders(2))
        );
    }

    #[test]
    fn bare_lf_head_is_accepted() {
        // llhttp sample.md "No carriage ret" (accepted by httparse, as by llhttp's lenient mode).
        let raw = b"HTTP/1.1 200 OK\nContent-Type: text/html; charset=utf-8\nConnection: close\n\nthese headers are from http://news.ycombinator.com/";
        let (h, body, done, _) = one(raw);
        assert!(h.close_delimited && !h.keep_alive && !done);
        assert_eq!(body.len(), 51);
        let parts: Vec<&[u8]> = raw.chunks(1).collect();
        let (heads, body2, _, _) = run(&parts, false).unwrap();
        assert_eq!(heads, vec![h]);
        assert_eq!(body2, body);
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        let raw = b"\r\n\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";
        let (h, body, _, _) = one(raw);
        assert_eq!(h.reason, "OK");
        assert_eq!(body, b"x");
        let parts: Vec<&[u8]> = raw.chunks(1).collect();
        assert_eq!(run(&parts, false).unwrap().1, b"x");
    }

    #[test]
    fn connection_and_forwarding() {
        let (h, _, _, _) = one(
            b"HTTP/1.1 200 OK\r\nConnection: X-Foo, Keep-Alive\r\nKeep-Alive: timeout=5\r\nX-Foo: 1\r\n\
Proxy-Connection: x\r\nTE: t\r\nTrailer: y\r\nUpgrade: h2c\r\nX-Bar: 2\r\nContent-Length: 0\r\nRetry-After: 120\r\n\r\n",
        );
        assert_eq!(
            h.forward,
            vec![
                ("x-bar".to_string(), "2".to_string()),
                ("content-length".to_string(), "0".to_string()),
                ("retry-after".to_string(), "120".to_string()),
            ]
        );
        assert!(h.keep_alive && !h.has_request_id);
        assert_eq!(h.retry_after, Some(120.0));
        // Connection naming x-request-id removes it.
        let (h, _, _, _) = one(b"HTTP/1.1 200 OK\r\nConnection: x-request-id\r\nX-Request-ID: 1\r\nContent-Length: 0\r\n\r\n");
        assert!(!h.has_request_id && h.forward.len() == 1);
        let (h, _, done, reusable) =
            one(b"HTTP/1.1 200 OK\r\nConnection: foo, CLOSE\r\nContent-Length: 0\r\n\r\n");
        assert!(!h.keep_alive && done && !reusable);
        let (h, _, _, _) = one(b"HTTP/1.1 503 Busy\r\nRetry-After: Fri, 31 Dec 1999 23:59:59 GMT\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.retry_after, None);
    }

    #[test]
    fn http10_keep_alive_rules() {
        // llhttp sample.md "bonjourmadame.fr": HTTP/1.0 with Connection: keep-alive and an empty value.
        let (h, _, done, reusable) = one(
            b"HTTP/1.0 301 Moved Permanently\r\nDate: Thu, 03 Jun 2010 09:56:32 GMT\r\nServer: Apache/2.2.3 (Red Hat)\r\n\
Cache-Control: public\r\nPragma: \r\nLocation: http://www.bonjourmadame.fr/\r\nVary: Accept-Encoding\r\n\
Content-Length: 0\r\nContent-Type: text/html; charset=UTF-8\r\nConnection: keep-alive\r\n\r\n",
        );
        assert_eq!(h.version, Version::Http10);
        assert_eq!(h.headers[3], ("Pragma".into(), "".into()));
        assert_eq!(h.headers.len(), 9);
        assert!(h.keep_alive && done && reusable);
        let (h, _, done, reusable) = one(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(!h.keep_alive && done && !reusable);
    }

    #[test]
    fn latin1_values() {
        let (h, _, _, _) =
            one(b"HTTP/1.1 200 OK\r\nX-Name: caf\xe9 \xff\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.headers[0].1, "caf\u{e9} \u{ff}");
        assert_eq!(h.forward[0].1, "caf\u{e9} \u{ff}");
    }

    #[test]
    fn leftover_bytes_make_it_not_reusable() {
        let (_, body, done, reusable) =
            one(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(body, b"hi");
        assert!(done && !reusable);
        let (_, _, done, reusable) = one(b"HTTP/1.1 204 No Content\r\n\r\ngarbage");
        assert!(done && !reusable);
    }

    #[test]
    fn unsolicited_busy_and_eof() {
        let mut p = ResponseParser::default();
        assert_eq!(p.feed(b"x"), Err(Error::Unsolicited));
        let mut p = ResponseParser::default();
        assert_eq!(p.feed(b"").unwrap(), Fed::default());
        assert_eq!(p.feed_eof(), Ok(false));
        p.start(false).unwrap();
        assert_eq!(p.start(false), Err(Error::Busy));
        assert_eq!(p.feed_eof(), Err(Error::ClosedInHead));
        assert_eq!(
            Error::ClosedInHead.to_string(),
            "connection closed before the response head was complete"
        );
        assert_eq!(p.start(false), Err(Error::Poisoned));
        let mut p = ResponseParser::default();
        p.start(false).unwrap();
        let f = p
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        assert!(f.done);
        assert_eq!(p.feed(b"x"), Err(Error::Unsolicited));
        let mut p = ResponseParser::default();
        p.start(false).unwrap();
        p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
            .unwrap();
        assert_eq!(p.feed_eof(), Err(Error::ClosedInBody));
    }

    #[test]
    fn head_cap() {
        let limits = Limits {
            max_head: 64,
            max_headers: 16,
        };
        let mut big = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 60));
        big.extend_from_slice(b"\r\n\r\n");
        let mut p = ResponseParser::new(limits);
        p.start(false).unwrap();
        assert_eq!(p.feed(&big), Err(Error::HeadTooLarge(64)));
        let mut p = ResponseParser::new(limits);
        p.start(false).unwrap();
        let mut result = Ok(Fed::default());
        for b in big.chunks(1) {
            result = p.feed(b);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(Error::HeadTooLarge(64)));
        assert_eq!(
            Error::HeadTooLarge(65536).to_string(),
            "response head exceeds 65536 bytes"
        );
        // Each interim head counts on its own.
        let mut p = ResponseParser::new(limits);
        p.start(false).unwrap();
        let interim = b"HTTP/1.1 100 Continue\r\nX: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        let mut raw = interim.to_vec();
        raw.extend_from_slice(interim);
        raw.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(raw.len() > 64);
        assert!(p.feed(&raw).unwrap().done);
    }

    #[test]
    fn many_headers_above_stack_buffer() {
        let mut raw = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..200 {
            raw.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
        }
        raw.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        let mut p = ResponseParser::new(Limits {
            max_head: 1 << 20,
            max_headers: 300,
        });
        p.start(false).unwrap();
        assert_eq!(p.feed(&raw).unwrap().head.unwrap().headers.len(), 201);
        let mut p = ResponseParser::default();
        p.start(false).unwrap();
        assert_eq!(p.feed(&raw), Err(Error::TooManyHeaders(128)));
    }

    #[test]
    fn one_byte_feeds_are_linear() {
        // 64 KiB head one byte at a time: httparse runs once, not once per byte.
        let mut raw = b"HTTP/1.1 200 OK\r\n".to_vec();
        while raw.len() < 60_000 {
            raw.extend_from_slice(
                b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
        }
        raw.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        let mut p = ResponseParser::new(Limits {
            max_head: 65536,
            max_headers: 1024,
        });
        p.start(false).unwrap();
        let mut done = false;
        for b in raw.chunks(1) {
            done = p.feed(b).unwrap().done;
        }
        assert!(done);
    }
}
