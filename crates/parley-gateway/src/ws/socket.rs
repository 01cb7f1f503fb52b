//! A WebSocket over the upgraded connection itself, without buffers of its
//! own while idle.
//!
//! actix-http keeps two 8 KiB buffers (read and write) for every connection
//! it serves, also after a WebSocket upgrade: two thirds of an idle
//! session's memory. Upgraded connections are therefore handed to
//! [`super::upgrade`] and served here: a read lands in a stack buffer and is
//! kept only while a frame is incomplete; a frame is written straight from
//! the shared event bytes (header and payload in one vectored write).
//! Frames are decoded by actix-http's WebSocket codec.

use actix_codec::Decoder;
use actix_http::ws::{CloseReason, Codec, Frame, Item, ProtocolError};
use actix_web::web::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::Stream;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};

/// The connection under a session: plain TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + 'static> Io for T {}

type BoxIo = Box<dyn Io>;

/// A read takes at most this much at once (on the stack, copied out only
/// while a frame is incomplete).
const READ_CHUNK: usize = 4096;
/// A close frame's payload is at most 125 bytes, 2 of them the code.
const MAX_CLOSE_REASON_BYTES: usize = 123;

/// The connection is closed (or was left mid-frame): nothing more can be
/// written.
#[derive(Debug)]
pub struct Closed;

/// A complete message from the client; continuation frames are joined.
#[derive(Debug)]
pub enum AggregatedMessage {
    Text(ByteString),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    Close(Option<CloseReason>),
}

/// Splits an upgraded connection into the session's writer and its stream
/// of messages; `early` holds bytes the client sent right behind its
/// upgrade request, read already.
pub fn split(io: BoxIo, early: BytesMut, max_frame_bytes: usize) -> (Session, MessageStream) {
    let (read, write) = tokio::io::split(io);
    let session = Session {
        io: write,
        state: WriteState::Open,
        queued: Vec::new(),
    };
    let stream = MessageStream {
        io: read,
        buf: early,
        codec: Codec::new().max_size(max_frame_bytes),
        max_size: max_frame_bytes,
        parts: Vec::new(),
        parts_len: 0,
        parts_text: false,
        done: false,
    };
    (session, stream)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WriteState {
    Open,
    /// A write was abandoned midway (a timeout dropped it): another frame
    /// would be read as the rest of that one.
    Torn,
    Closed,
}

/// Writes frames to the client.
pub struct Session {
    io: WriteHalf<BoxIo>,
    state: WriteState,
    /// Text frames queued by [`Session::queue`], written together by
    /// [`Session::flush`] (empty, and unallocated, between batches).
    queued: Vec<ByteString>,
}

/// Slices given to one `writev` at most (well under the system's IOV_MAX).
const MAX_SLICES: usize = 64;

impl Session {
    pub async fn text(&mut self, text: ByteString) -> Result<(), Closed> {
        if !self.queued.is_empty() {
            self.queue(text);
            return self.flush().await;
        }
        self.frame(OP_TEXT, text.as_bytes()).await
    }

    /// Queues a text frame; nothing is written before [`Session::flush`].
    pub fn queue(&mut self, text: ByteString) {
        self.queued.push(text);
    }

    /// Writes the queued frames, as many per system call as fit.
    pub async fn flush(&mut self) -> Result<(), Closed> {
        if self.queued.is_empty() {
            return Ok(());
        }
        if self.state != WriteState::Open {
            return Err(Closed);
        }
        let texts = std::mem::take(&mut self.queued);
        let heads: Vec<([u8; 10], usize)> = texts
            .iter()
            .map(|t| {
                let mut h = [0u8; 10];
                let n = header(OP_TEXT, t.len(), &mut h);
                (h, n)
            })
            .collect();
        let mut parts: Vec<&[u8]> = Vec::with_capacity(texts.len() * 2);
        for ((h, n), t) in heads.iter().zip(&texts) {
            parts.push(&h[..*n]);
            parts.push(t.as_bytes());
        }
        self.state = WriteState::Torn;
        // The first part not fully written, and how much of it was.
        let (mut first, mut done) = (0, 0);
        while first < parts.len() {
            let slices: Vec<IoSlice<'_>> = parts[first..]
                .iter()
                .take(MAX_SLICES)
                .enumerate()
                .map(|(k, p)| IoSlice::new(if k == 0 { &p[done..] } else { p }))
                .collect();
            let mut n = match self.io.write_vectored(&slices).await {
                Ok(0) | Err(_) => return Err(Closed),
                Ok(n) => n,
            };
            while n > 0 {
                let left = parts[first].len() - done;
                if n >= left {
                    n -= left;
                    first += 1;
                    done = 0;
                } else {
                    done += n;
                    n = 0;
                }
            }
            while first < parts.len() && parts[first].len() == done {
                first += 1;
                done = 0;
            }
        }
        self.io.flush().await.map_err(|_| Closed)?;
        self.state = WriteState::Open;
        Ok(())
    }

    pub async fn ping(&mut self, payload: &[u8]) -> Result<(), Closed> {
        self.frame(OP_PING, control(payload)).await
    }

    pub async fn pong(&mut self, payload: &[u8]) -> Result<(), Closed> {
        self.frame(OP_PONG, control(payload)).await
    }

    /// Sends the close frame and ends the writing side.
    pub async fn close(mut self, reason: Option<CloseReason>) -> Result<(), Closed> {
        let mut payload = Vec::new();
        if let Some(r) = reason {
            payload.extend_from_slice(&u16::from(r.code).to_be_bytes());
            if let Some(d) = r.description {
                let mut end = d.len().min(MAX_CLOSE_REASON_BYTES);
                while !d.is_char_boundary(end) {
                    end -= 1;
                }
                payload.extend_from_slice(&d.as_bytes()[..end]);
            }
        }
        self.frame(OP_CLOSE, &payload).await?;
        self.state = WriteState::Closed;
        self.io.shutdown().await.map_err(|_| Closed)
    }

    /// One frame: header and payload in one vectored write, then a flush
    /// (TLS holds records until then).
    async fn frame(&mut self, op: u8, payload: &[u8]) -> Result<(), Closed> {
        // What was queued goes first: frames leave in the order given.
        self.flush().await?;
        if self.state != WriteState::Open {
            return Err(Closed);
        }
        let mut head = [0u8; 10];
        let head_len = header(op, payload.len(), &mut head);
        // Marked torn until the whole frame is out: a caller that gives up
        // on a slow client drops this future midway.
        self.state = WriteState::Torn;
        let mut head = &head[..head_len];
        let mut body = payload;
        while !head.is_empty() || !body.is_empty() {
            let bufs = [IoSlice::new(head), IoSlice::new(body)];
            let n = match self.io.write_vectored(&bufs).await {
                Ok(0) | Err(_) => return Err(Closed),
                Ok(n) => n,
            };
            let from_head = n.min(head.len());
            head = &head[from_head..];
            body = &body[n - from_head..];
        }
        self.io.flush().await.map_err(|_| Closed)?;
        self.state = WriteState::Open;
        Ok(())
    }
}

const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// A control frame carries at most 125 bytes (RFC 6455 §5.5).
fn control(payload: &[u8]) -> &[u8] {
    &payload[..payload.len().min(125)]
}

/// A server frame's header (final, unmasked) into `out`; returns its length.
fn header(op: u8, len: usize, out: &mut [u8; 10]) -> usize {
    out[0] = 0x80 | op;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// The client's messages, continuation frames joined up to the frame size
/// limit.
pub struct MessageStream {
    io: ReadHalf<BoxIo>,
    /// Bytes of an incomplete frame (empty, and unallocated, while idle).
    buf: BytesMut,
    codec: Codec,
    max_size: usize,
    /// A fragmented message so far.
    parts: Vec<Bytes>,
    parts_len: usize,
    parts_text: bool,
    done: bool,
}

impl MessageStream {
    /// Joins a continuation frame; a message once complete.
    fn join(&mut self, item: Item) -> Option<Result<AggregatedMessage, ProtocolError>> {
        let (bytes, last) = match item {
            Item::FirstText(b) => {
                self.parts_text = true;
                (b, false)
            }
            Item::FirstBinary(b) => {
                self.parts_text = false;
                (b, false)
            }
            Item::Continue(b) => (b, false),
            Item::Last(b) => (b, true),
        };
        self.parts_len += bytes.len();
        if self.parts_len > self.max_size {
            self.done = true;
            return Some(Err(ProtocolError::Overflow));
        }
        if !bytes.is_empty() {
            self.parts.push(bytes);
        }
        if !last {
            return None;
        }
        let mut whole = BytesMut::with_capacity(self.parts_len);
        for p in self.parts.drain(..) {
            whole.extend_from_slice(&p);
        }
        self.parts = Vec::new();
        self.parts_len = 0;
        Some(if self.parts_text {
            text(whole.freeze())
        } else {
            Ok(AggregatedMessage::Binary(whole.freeze()))
        })
    }

    /// The next message in what was read, if complete.
    fn decode(&mut self) -> Option<Result<AggregatedMessage, ProtocolError>> {
        while !self.buf.is_empty() {
            let frame = match self.codec.decode(&mut self.buf) {
                Ok(Some(f)) => f,
                Ok(None) => return None,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            if self.buf.is_empty() {
                // Idle again: give the memory back.
                self.buf = BytesMut::new();
            }
            let msg = match frame {
                Frame::Text(b) => text(b),
                Frame::Binary(b) => Ok(AggregatedMessage::Binary(b)),
                Frame::Ping(b) => Ok(AggregatedMessage::Ping(b)),
                Frame::Pong(b) => Ok(AggregatedMessage::Pong(b)),
                Frame::Close(r) => {
                    self.done = true;
                    Ok(AggregatedMessage::Close(r))
                }
                Frame::Continuation(item) => match self.join(item) {
                    Some(m) => m,
                    None => continue,
                },
            };
            return Some(msg);
        }
        None
    }
}

fn text(b: Bytes) -> Result<AggregatedMessage, ProtocolError> {
    ByteString::try_from(b)
        .map(AggregatedMessage::Text)
        .map_err(|e| ProtocolError::Io(io::Error::new(io::ErrorKind::InvalidData, e)))
}

impl Stream for MessageStream {
    type Item = Result<AggregatedMessage, ProtocolError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(msg) = this.decode() {
                return Poll::Ready(Some(msg));
            }
            if this.done {
                return Poll::Ready(None);
            }
            // Nothing held while waiting: the chunk is on the stack.
            let mut chunk = [0u8; READ_CHUNK];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.io).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(ProtocolError::Io(e))));
                }
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(())) => this.buf.extend_from_slice(rb.filled()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio::io::AsyncReadExt;

    /// A client frame: final, masked with `mask`.
    fn client_frame(op: u8, fin: bool, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | op];
        if payload.len() < 126 {
            out.push(0x80 | payload.len() as u8);
        } else {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn pair(early: &[u8], max: usize) -> (Session, MessageStream, tokio::io::DuplexStream) {
        let (server, client) = tokio::io::duplex(64 * 1024);
        let (s, m) = split(Box::new(server), BytesMut::from(early), max);
        (s, m, client)
    }

    #[tokio::test]
    async fn reads_early_bytes_fragments_and_control_frames() {
        let early = client_frame(OP_TEXT, true, b"{\"a\":1}", [1, 2, 3, 4]);
        let (_s, mut m, mut client) = pair(&early, 1024);
        let mut more = client_frame(OP_TEXT, false, b"hel", [9, 8, 7, 6]);
        more.extend(client_frame(OP_PING, true, b"p", [5, 5, 5, 5]));
        more.extend(client_frame(0x0, true, b"lo", [1, 1, 1, 1]));
        client.write_all(&more).await.expect("write");
        match m.next().await {
            Some(Ok(AggregatedMessage::Text(t))) => assert_eq!(&*t, "{\"a\":1}"),
            other => panic!("{other:?}"),
        }
        match m.next().await {
            Some(Ok(AggregatedMessage::Ping(p))) => assert_eq!(&p[..], b"p"),
            other => panic!("{other:?}"),
        }
        match m.next().await {
            Some(Ok(AggregatedMessage::Text(t))) => assert_eq!(&*t, "hello"),
            other => panic!("{other:?}"),
        }
        assert_eq!(m.buf.capacity(), 0, "nothing kept while idle");
        drop(client);
        assert!(m.next().await.is_none());
    }

    #[tokio::test]
    async fn refuses_oversized_frames_and_joined_messages() {
        let (_s, mut m, mut client) = pair(&[], 8);
        client
            .write_all(&client_frame(OP_TEXT, true, b"123456789", [1, 2, 3, 4]))
            .await
            .expect("write");
        assert!(matches!(m.next().await, Some(Err(ProtocolError::Overflow))));
        assert!(m.next().await.is_none());

        let (_s, mut m, mut client) = pair(&[], 8);
        let mut parts = client_frame(OP_TEXT, false, b"12345", [1, 2, 3, 4]);
        parts.extend(client_frame(0x0, true, b"6789", [1, 2, 3, 4]));
        client.write_all(&parts).await.expect("write");
        assert!(matches!(m.next().await, Some(Err(ProtocolError::Overflow))));
    }

    #[tokio::test]
    async fn refuses_unmasked_frames_and_bad_utf8() {
        let (_s, mut m, mut client) = pair(&[], 1024);
        client.write_all(&[0x81, 0x01, b'a']).await.expect("write");
        assert!(matches!(m.next().await, Some(Err(_))));

        let (_s, mut m, mut client) = pair(&[], 1024);
        client
            .write_all(&client_frame(OP_TEXT, true, &[0xff, 0xfe], [1, 2, 3, 4]))
            .await
            .expect("write");
        assert!(matches!(m.next().await, Some(Err(ProtocolError::Io(_)))));
    }

    #[tokio::test]
    async fn queued_frames_leave_together_and_in_order_through_short_writes() {
        // A pipe of 7 bytes: every write is cut short.
        let (server, mut client) = tokio::io::duplex(7);
        let (mut s, _m) = split(Box::new(server), BytesMut::new(), 1024);
        let texts: Vec<String> = (0..100)
            .map(|i| format!("frame {i} {}", "y".repeat(i)))
            .collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.expect("read");
            got
        });
        for t in &texts[..99] {
            s.queue(ByteString::from(t.clone()));
        }
        s.flush().await.expect("flush");
        s.queue(ByteString::from(texts[99].clone()));
        s.close(None).await.expect("close");
        let got = reader.await.expect("reader");
        let mut at = 0;
        for t in &texts {
            let mut head = [0u8; 10];
            let n = header(OP_TEXT, t.len(), &mut head);
            assert_eq!(&got[at..at + n], &head[..n]);
            at += n;
            assert_eq!(&got[at..at + t.len()], t.as_bytes());
            at += t.len();
        }
        assert_eq!(&got[at..], &[0x88, 0], "the close frame last");
    }

    #[tokio::test]
    async fn writes_frames_of_every_length_class_and_a_close() {
        let (mut s, _m, mut client) = pair(&[], 1024);
        let long = "x".repeat(300);
        s.text(ByteString::from("hi")).await.expect("text");
        s.text(ByteString::from(long.clone())).await.expect("text");
        s.close(Some(CloseReason {
            code: 4008u16.into(),
            description: Some("é".repeat(100)),
        }))
        .await
        .expect("close");
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("read");
        assert_eq!(&got[..4], &[0x81, 2, b'h', b'i']);
        assert_eq!(&got[4..8], &[0x81, 126, 1, 44]);
        assert_eq!(&got[8..308], long.as_bytes());
        let close = &got[308..];
        assert_eq!(close[0], 0x88);
        let len = usize::from(close[1]);
        assert!(len <= 125, "{len}");
        assert_eq!(&close[2..4], &4008u16.to_be_bytes());
        assert!(
            std::str::from_utf8(&close[4..2 + len]).is_ok(),
            "cut on a char boundary"
        );
    }
}
