//! SPDY/3.1 as Kubernetes' streaming protocols use it (port-forward from kubectl, exec and
//! attach towards containerd's CRI streaming server): frame encoding and decoding, the
//! header blocks (zlib with the SPDY/3 dictionary, one context per direction), and a
//! [`Session`] multiplexing streams over any byte stream, in either role.
//!
//! Flow control: every DATA received is acknowledged with a WINDOW_UPDATE of its size; the
//! peer's window updates are not enforced on what this side sends (as Go's spdystream).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// Frame flag: the last frame of its stream in this direction.
pub const FLAG_FIN: u8 = 0x01;
/// The largest frame payload accepted.
pub const MAX_FRAME: usize = 8 << 20;

const WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];
const TAIL: &str = "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505203 \
Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 \
Not Found500 Internal Server Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept \
Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,\
application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch\
charset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

/// The SPDY/3 header compression dictionary (1423 bytes): each of a list of words with its
/// 32-bit length, then a tail of status lines, dates and content types.
pub fn dictionary() -> Vec<u8> {
    let mut d = Vec::with_capacity(1423);
    for w in WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(TAIL.as_bytes());
    d
}

/// A protocol error.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// A malformed frame or header block.
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
    /// The transport failed.
    #[error("SPDY transport: {0}")]
    Io(#[from] std::io::Error),
}

fn proto(m: impl Into<String>) -> SpdyError {
    SpdyError::Protocol(m.into())
}

/// Header names and values (names lowercase).
pub type Headers = Vec<(String, String)>;

/// One SPDY frame (the types Kubernetes' streams use; others decode as `Other`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// DATA on a stream.
    Data {
        /// Stream.
        stream: u32,
        /// Flags ([`FLAG_FIN`]).
        flags: u8,
        /// Payload.
        data: Bytes,
    },
    /// SYN_STREAM: opens a stream.
    SynStream {
        /// Stream.
        stream: u32,
        /// Flags.
        flags: u8,
        /// Headers.
        headers: Headers,
    },
    /// SYN_REPLY: accepts a stream.
    SynReply {
        /// Stream.
        stream: u32,
        /// Flags.
        flags: u8,
        /// Headers.
        headers: Headers,
    },
    /// RST_STREAM.
    RstStream {
        /// Stream.
        stream: u32,
        /// Status code.
        status: u32,
    },
    /// PING.
    Ping(u32),
    /// GOAWAY.
    GoAway {
        /// Last stream accepted.
        last_stream: u32,
        /// Status code.
        status: u32,
    },
    /// WINDOW_UPDATE.
    WindowUpdate {
        /// Stream.
        stream: u32,
        /// Window increase.
        delta: u32,
    },
    /// SETTINGS, HEADERS and unknown control frames (ignored).
    Other(u16),
}

/// Encodes and decodes frames; holds the two zlib contexts of a session.
pub struct Codec {
    deflate: Compress,
    inflate: Decompress,
    dict: Vec<u8>,
}

impl Default for Codec {
    fn default() -> Self {
        Codec {
            deflate: Compress::new(Compression::default(), true),
            inflate: Decompress::new(true),
            dict: dictionary(),
        }
    }
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Codec")
    }
}

impl Codec {
    fn compress(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let mut raw = Vec::new();
        raw.put_u32(headers.len() as u32);
        for (k, v) in headers {
            raw.put_u32(k.len() as u32);
            raw.extend_from_slice(k.to_ascii_lowercase().as_bytes());
            raw.put_u32(v.len() as u32);
            raw.extend_from_slice(v.as_bytes());
        }
        if self.deflate.total_in() == 0 && self.deflate.total_out() == 0 {
            self.deflate.set_dictionary(&self.dict).map_err(|e| proto(format!("zlib dictionary: {e}")))?;
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input: &[u8] = &raw;
        loop {
            out.reserve(256);
            let before_in = self.deflate.total_in();
            self.deflate.compress_vec(input, &mut out, FlushCompress::Sync).map_err(|e| proto(format!("zlib: {e}")))?;
            input = &input[(self.deflate.total_in() - before_in) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    fn decompress(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let mut out: Vec<u8> = Vec::with_capacity(block.len() * 4 + 256);
        let mut input = block;
        loop {
            if out.len() == out.capacity() {
                if out.len() > 1 << 20 {
                    return Err(proto("header block over 1 MiB"));
                }
                out.reserve(out.len());
            }
            let before_in = self.inflate.total_in();
            let before_out = out.len();
            match self.inflate.decompress_vec(input, &mut out, FlushDecompress::Sync) {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate.set_dictionary(&self.dict).map_err(|e| proto(format!("zlib dictionary: {e}")))?;
                }
                Err(e) => return Err(proto(format!("zlib: {e}"))),
            }
            input = &input[(self.inflate.total_in() - before_in) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            if input.is_empty() && out.len() == before_out {
                break;
            }
        }
        parse_headers(&out)
    }

    /// Appends the encoding of `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), SpdyError> {
        let control = |out: &mut BytesMut, kind: u16, flags: u8, payload: &[u8]| {
            out.put_u16(0x8003);
            out.put_u16(kind);
            out.put_u32(((flags as u32) << 24) | payload.len() as u32);
            out.extend_from_slice(payload);
        };
        match frame {
            Frame::Data { stream, flags, data } => {
                out.put_u32(stream & 0x7fff_ffff);
                out.put_u32(((*flags as u32) << 24) | data.len() as u32);
                out.extend_from_slice(data);
            }
            Frame::SynStream { stream, flags, headers } => {
                let mut p = Vec::new();
                p.put_u32(*stream);
                p.put_u32(0);
                p.put_u16(0);
                p.extend_from_slice(&self.compress(headers)?);
                control(out, 1, *flags, &p);
            }
            Frame::SynReply { stream, flags, headers } => {
                let mut p = Vec::new();
                p.put_u32(*stream);
                p.extend_from_slice(&self.compress(headers)?);
                control(out, 2, *flags, &p);
            }
            Frame::RstStream { stream, status } => {
                control(out, 3, 0, &[stream.to_be_bytes(), status.to_be_bytes()].concat())
            }
            Frame::Ping(id) => control(out, 6, 0, &id.to_be_bytes()),
            Frame::GoAway { last_stream, status } => {
                control(out, 7, 0, &[last_stream.to_be_bytes(), status.to_be_bytes()].concat())
            }
            Frame::WindowUpdate { stream, delta } => {
                control(out, 9, 0, &[stream.to_be_bytes(), delta.to_be_bytes()].concat())
            }
            Frame::Other(kind) => return Err(proto(format!("cannot encode control frame type {kind}"))),
        }
        Ok(())
    }

    /// Decodes one frame from the front of `buf` when it holds a whole one.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let len = (u32::from_be_bytes([0, buf[5], buf[6], buf[7]])) as usize;
        if len > MAX_FRAME {
            return Err(proto(format!("frame of {len} bytes")));
        }
        if buf.len() < 8 + len {
            return Ok(None);
        }
        let head = buf.split_to(8);
        let mut p = buf.split_to(len).freeze();
        let first = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let flags = head[4];
        if first & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data { stream: first, flags, data: p }));
        }
        let version = (first >> 16) & 0x7fff;
        if version != 3 {
            return Err(proto(format!("SPDY version {version}")));
        }
        let need = |p: &Bytes, n: usize| if p.len() < n { Err(proto("truncated control frame")) } else { Ok(()) };
        let frame = match first & 0xffff {
            1 => {
                need(&p, 10)?;
                let stream = p.get_u32() & 0x7fff_ffff;
                p.advance(6);
                Frame::SynStream { stream, flags, headers: self.decompress(&p)? }
            }
            2 => {
                need(&p, 4)?;
                let stream = p.get_u32() & 0x7fff_ffff;
                Frame::SynReply { stream, flags, headers: self.decompress(&p)? }
            }
            3 => {
                need(&p, 8)?;
                Frame::RstStream { stream: p.get_u32() & 0x7fff_ffff, status: p.get_u32() }
            }
            6 => {
                need(&p, 4)?;
                Frame::Ping(p.get_u32())
            }
            7 => {
                need(&p, 8)?;
                Frame::GoAway { last_stream: p.get_u32() & 0x7fff_ffff, status: p.get_u32() }
            }
            8 => {
                need(&p, 4)?;
                p.advance(4);
                // Headers must still go through the shared zlib context.
                self.decompress(&p)?;
                Frame::Other(8)
            }
            9 => {
                need(&p, 8)?;
                Frame::WindowUpdate { stream: p.get_u32() & 0x7fff_ffff, delta: p.get_u32() & 0x7fff_ffff }
            }
            other => Frame::Other(other as u16),
        };
        Ok(Some(frame))
    }
}

fn parse_headers(mut b: &[u8]) -> Result<Headers, SpdyError> {
    let take = |n: usize, b: &mut &[u8]| -> Result<Vec<u8>, SpdyError> {
        if b.len() < n {
            return Err(proto("truncated header block"));
        }
        let (h, t) = b.split_at(n);
        *b = t;
        Ok(h.to_vec())
    };
    let count = u32::from_be_bytes(take(4, &mut b)?.try_into().unwrap_or_default());
    if count > 1000 {
        return Err(proto("too many headers"));
    }
    let mut out = Vec::new();
    for _ in 0..count {
        let n = u32::from_be_bytes(take(4, &mut b)?.try_into().unwrap_or_default()) as usize;
        let name = String::from_utf8_lossy(&take(n, &mut b)?).to_ascii_lowercase();
        let n = u32::from_be_bytes(take(4, &mut b)?.try_into().unwrap_or_default()) as usize;
        let value = String::from_utf8_lossy(&take(n, &mut b)?).into_owned();
        out.push((name, value));
    }
    Ok(out)
}

/// A header's value (names compare case-insensitively).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

enum Out {
    Frame(Frame),
    Close,
}

struct StreamState {
    data: mpsc::UnboundedSender<Bytes>,
    reply: Option<oneshot::Sender<()>>,
}

type Streams = Arc<Mutex<HashMap<u32, StreamState>>>;

/// One stream of a session: its headers, incoming data (ends at the peer's FIN or reset)
/// and a writer.
pub struct Stream {
    /// Stream id.
    pub id: u32,
    /// The headers it was opened with.
    pub headers: Headers,
    /// Incoming data.
    pub rx: mpsc::UnboundedReceiver<Bytes>,
    /// Sends on this stream.
    pub writer: StreamWriter,
}

/// The sending half of a stream.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    out: mpsc::UnboundedSender<Out>,
}

impl StreamWriter {
    /// Sends data; false once the session is gone.
    pub fn send(&self, data: Bytes) -> bool {
        self.out.send(Out::Frame(Frame::Data { stream: self.id, flags: 0, data })).is_ok()
    }

    /// Half-closes the stream (DATA with FIN).
    pub fn finish(&self) {
        let _ = self.out.send(Out::Frame(Frame::Data { stream: self.id, flags: FLAG_FIN, data: Bytes::new() }));
    }

    /// Resets the stream.
    pub fn reset(&self) {
        let _ = self.out.send(Out::Frame(Frame::RstStream { stream: self.id, status: 5 }));
    }
}

/// A SPDY session over a byte stream; `incoming` yields the streams the peer opens.
pub struct Session {
    out: mpsc::UnboundedSender<Out>,
    streams: Streams,
    next_id: Mutex<u32>,
    /// Streams opened by the peer (already answered with SYN_REPLY).
    pub incoming: mpsc::UnboundedReceiver<Stream>,
}

impl Session {
    /// Runs a session over `io`; `client` picks odd stream ids for the streams this side opens.
    pub fn start<T: AsyncRead + AsyncWrite + Send + 'static>(io: T, client: bool) -> Session {
        let (mut reader, mut writer) = tokio::io::split(io);
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Out>();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let streams: Streams = Arc::default();
        tokio::spawn(async move {
            // Each direction has its own zlib context: this task's codec only compresses.
            let mut enc = Codec::default();
            while let Some(msg) = out_rx.recv().await {
                let Out::Frame(f) = msg else { break };
                let mut buf = BytesMut::new();
                if enc.encode(&f, &mut buf).is_err() || writer.write_all(&buf).await.is_err() {
                    break;
                }
            }
            let _ = writer.shutdown().await;
        });
        let (rstreams, rout) = (streams.clone(), out_tx.clone());
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(16 << 10);
            let mut dec = Codec::default();
            loop {
                let frame = match dec.decode(&mut buf) {
                    Ok(Some(f)) => f,
                    Ok(None) => match reader.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => continue,
                    },
                    Err(e) => {
                        tracing::debug!(error = %e, "SPDY session");
                        break;
                    }
                };
                match frame {
                    Frame::SynStream { stream, flags, headers } => {
                        let (tx, rx) = mpsc::unbounded_channel();
                        if flags & FLAG_FIN != 0 {
                            drop(tx);
                        } else if let Ok(mut s) = rstreams.lock() {
                            s.insert(stream, StreamState { data: tx, reply: None });
                        }
                        let _ = rout.send(Out::Frame(Frame::SynReply { stream, flags: 0, headers: Vec::new() }));
                        let writer = StreamWriter { id: stream, out: rout.clone() };
                        let _ = in_tx.send(Stream { id: stream, headers, rx, writer });
                    }
                    Frame::SynReply { stream, flags, .. } => {
                        if let Ok(mut s) = rstreams.lock() {
                            if let Some(st) = s.get_mut(&stream)
                                && let Some(r) = st.reply.take()
                            {
                                let _ = r.send(());
                            }
                            if flags & FLAG_FIN != 0 {
                                s.remove(&stream);
                            }
                        }
                    }
                    Frame::Data { stream, flags, data } => {
                        if !data.is_empty() {
                            let delta = data.len() as u32;
                            let _ = rout.send(Out::Frame(Frame::WindowUpdate { stream, delta }));
                        }
                        if let Ok(mut s) = rstreams.lock() {
                            if let Some(st) = s.get(&stream)
                                && !data.is_empty()
                            {
                                let _ = st.data.send(data);
                            }
                            if flags & FLAG_FIN != 0 {
                                s.remove(&stream);
                            }
                        }
                    }
                    Frame::RstStream { stream, .. } => {
                        if let Ok(mut s) = rstreams.lock() {
                            s.remove(&stream);
                        }
                    }
                    Frame::Ping(id) => {
                        let _ = rout.send(Out::Frame(Frame::Ping(id)));
                    }
                    Frame::GoAway { .. } => break,
                    Frame::WindowUpdate { .. } | Frame::Other(_) => {}
                }
            }
            if let Ok(mut s) = rstreams.lock() {
                s.clear();
            }
            let _ = rout.send(Out::Close);
        });
        Session { out: out_tx, streams, next_id: Mutex::new(if client { 1 } else { 2 }), incoming: in_rx }
    }

    /// Opens a stream with `headers` and waits for the peer's SYN_REPLY.
    pub async fn open(&self, headers: Headers) -> Result<Stream, SpdyError> {
        let id = {
            let mut n = self.next_id.lock().map_err(|_| proto("poisoned"))?;
            let id = *n;
            *n += 2;
            id
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (reply_tx, reply_rx) = oneshot::channel();
        self.streams.lock().map_err(|_| proto("poisoned"))?.insert(id, StreamState { data: tx, reply: Some(reply_tx) });
        let syn = Frame::SynStream { stream: id, flags: 0, headers: headers.clone() };
        self.out.send(Out::Frame(syn)).map_err(|_| proto("session closed"))?;
        reply_rx.await.map_err(|_| proto("stream refused or session closed"))?;
        Ok(Stream { id, headers, rx, writer: StreamWriter { id, out: self.out.clone() } })
    }

    /// Sends GOAWAY and closes the transport once queued frames are written.
    pub fn close(&self) {
        let _ = self.out.send(Out::Frame(Frame::GoAway { last_stream: 0, status: 0 }));
        let _ = self.out.send(Out::Close);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adler32(d: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for x in d {
            a = (a + *x as u32) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    #[test]
    fn the_dictionary_is_the_spdy3_one() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert_eq!(adler32(&d), 0xe3c6_a7c2);
    }

    #[test]
    fn frames_round_trip_with_headers_sharing_one_zlib_context() {
        let (mut a, mut b) = (Codec::default(), Codec::default());
        let frames = vec![
            Frame::SynStream {
                stream: 1,
                flags: 0,
                headers: vec![("streamtype".into(), "error".into()), ("port".into(), "8080".into())],
            },
            Frame::SynStream { stream: 3, flags: 0, headers: vec![("streamtype".into(), "data".into())] },
            Frame::SynReply { stream: 3, flags: 0, headers: vec![] },
            Frame::Data { stream: 3, flags: FLAG_FIN, data: Bytes::from_static(b"hello") },
            Frame::RstStream { stream: 1, status: 5 },
            Frame::Ping(7),
            Frame::WindowUpdate { stream: 3, delta: 5 },
            Frame::GoAway { last_stream: 3, status: 0 },
        ];
        let mut wire = BytesMut::new();
        for f in &frames {
            a.encode(f, &mut wire).unwrap();
        }
        // Fed one byte at a time, frames come out whole and in order.
        let mut got = Vec::new();
        let mut buf = BytesMut::new();
        for byte in wire.iter() {
            buf.put_u8(*byte);
            while let Some(f) = b.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
    }

    #[test]
    fn bad_frames_are_refused() {
        let mut c = Codec::default();
        let mut v2 = BytesMut::from(&[0x80u8, 0x02, 0, 1, 0, 0, 0, 0][..]);
        assert!(c.decode(&mut v2).is_err());
        let mut huge = BytesMut::from(&[0u8, 0, 0, 1, 0, 0xff, 0xff, 0xff][..]);
        assert!(c.decode(&mut huge).is_err());
        let mut short_syn = BytesMut::from(&[0x80u8, 0x03, 0, 1, 0, 0, 0, 2, 0, 0][..]);
        assert!(c.decode(&mut short_syn).is_err());
        let mut garbage_headers = BytesMut::from(&[0x80u8, 0x03, 0, 2, 0, 0, 0, 6, 0, 0, 0, 1, 0xde, 0xad][..]);
        assert!(c.decode(&mut garbage_headers).is_err());
        assert!(c.decode(&mut BytesMut::from(&[0u8, 0, 0][..])).unwrap().is_none());
    }

    #[tokio::test]
    async fn sessions_open_streams_carry_data_and_half_close() {
        let (x, y) = tokio::io::duplex(1 << 16);
        let client = Session::start(x, true);
        let mut server = Session::start(y, false);
        let mut s = client.open(vec![("streamtype".into(), "stdin".into())]).await.unwrap();
        let mut peer = server.incoming.recv().await.unwrap();
        assert_eq!(header(&peer.headers, "streamType"), Some("stdin"));
        assert_eq!(peer.id, 1);
        assert!(s.writer.send(Bytes::from_static(b"ping")));
        s.writer.finish();
        assert_eq!(peer.rx.recv().await.unwrap(), Bytes::from_static(b"ping"));
        assert!(peer.rx.recv().await.is_none(), "FIN ends the stream");
        peer.writer.send(Bytes::from_static(b"pong"));
        peer.writer.finish();
        assert_eq!(s.rx.recv().await.unwrap(), Bytes::from_static(b"pong"));
        assert!(s.rx.recv().await.is_none());
        client.close();
    }
}
