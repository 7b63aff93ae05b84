//! Length-prefixed binary framing.
//!
//! Layout (little endian): `len: u32` (bytes that follow the length field), `id: u64`,
//! `kind: u8`, then `len - 9` payload bytes.

use std::io::{self, Read, Write};

use crate::{AgentRequest, ProtocolError, Request, Response, WireRequest};

/// Bytes of header after the length field: id (8) + kind (1).
const ID_KIND_LEN: usize = 9;
/// Total header size, length field included.
pub const HEADER_LEN: usize = 4 + ID_KIND_LEN;
/// Largest payload a frame may carry. Large transfers are split into chunks well below it;
/// the limit keeps a corrupt length from making the reader allocate gigabytes.
pub const MAX_PAYLOAD: usize = 16 << 20;

/// What a frame's payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// A JSON [`Request`].
    Request = 1,
    /// A JSON [`Response`]: the final answer to the request with the same id.
    Response = 2,
    /// Raw bytes a command wrote to stdout.
    Stdout = 3,
    /// Raw bytes a command wrote to stderr.
    Stderr = 4,
    /// Raw bytes for a command's stdin; an empty payload closes stdin.
    Stdin = 5,
    /// A signal number (4 bytes, little endian) to deliver to a running command's process group.
    Signal = 6,
    /// Raw bytes echoed back unchanged by the agent (channel benchmark).
    Echo = 7,
    /// New terminal size of a command running on a PTY: rows then columns (u16 each, little
    /// endian).
    Resize = 8,
    /// Flow control: the sender may now receive this many more bytes (u32, little endian) of
    /// the request's data — output (`Stdout`/`Stderr`) when sent by the host, input (`Stdin`)
    /// when sent by the agent. See [`crate::OUTPUT_WINDOW`].
    Credit = 9,
}

impl FrameKind {
    fn from_byte(byte: u8) -> Result<Self, ProtocolError> {
        Ok(match byte {
            1 => Self::Request,
            2 => Self::Response,
            3 => Self::Stdout,
            4 => Self::Stderr,
            5 => Self::Stdin,
            6 => Self::Signal,
            7 => Self::Echo,
            8 => Self::Resize,
            9 => Self::Credit,
            other => return Err(ProtocolError::UnknownKind(other)),
        })
    }
}

/// One message on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Id of the request this frame belongs to.
    pub id: u64,
    /// What the payload is.
    pub kind: FrameKind,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

impl Frame {
    /// A frame carrying `request` (an [`AgentRequest`], a [`crate::SupervisorRequest`] or
    /// either as a [`Request`]) as JSON.
    pub fn request(id: u64, request: &impl WireRequest) -> Result<Self, ProtocolError> {
        Ok(Self {
            id,
            kind: FrameKind::Request,
            payload: serde_json::to_vec(request)?,
        })
    }

    /// A frame carrying `response` as JSON.
    pub fn response(id: u64, response: &Response) -> Result<Self, ProtocolError> {
        Ok(Self {
            id,
            kind: FrameKind::Response,
            payload: serde_json::to_vec(response)?,
        })
    }

    /// A raw data frame.
    pub fn data(id: u64, kind: FrameKind, payload: Vec<u8>) -> Self {
        Self { id, kind, payload }
    }

    /// A frame asking for `signal` to be delivered to request `id`'s command.
    pub fn signal(id: u64, signal: i32) -> Self {
        Self::data(id, FrameKind::Signal, signal.to_le_bytes().to_vec())
    }

    /// A frame granting `bytes` more of request `id`'s data to its sender.
    pub fn credit(id: u64, bytes: u32) -> Self {
        Self::data(id, FrameKind::Credit, bytes.to_le_bytes().to_vec())
    }

    /// Decodes the byte count of a [`FrameKind::Credit`] frame.
    pub fn to_credit(&self) -> Result<u32, ProtocolError> {
        Ok(u32::from_le_bytes(
            self.four_bytes(FrameKind::Credit, "credit")?,
        ))
    }

    /// A frame resizing request `id`'s terminal.
    pub fn resize(id: u64, rows: u16, cols: u16) -> Self {
        let mut payload = rows.to_le_bytes().to_vec();
        payload.extend_from_slice(&cols.to_le_bytes());
        Self::data(id, FrameKind::Resize, payload)
    }

    /// Decodes the rows and columns of a [`FrameKind::Resize`] frame.
    pub fn to_resize(&self) -> Result<(u16, u16), ProtocolError> {
        self.expect(FrameKind::Resize, "resize")?;
        match self.payload.as_slice() {
            [r0, r1, c0, c1] => Ok((
                u16::from_le_bytes([*r0, *r1]),
                u16::from_le_bytes([*c0, *c1]),
            )),
            _ => Err(ProtocolError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                "resize frame must be 4 bytes",
            ))),
        }
    }

    /// Decodes the payload of a [`FrameKind::Request`] frame sent to the supervisor.
    pub fn to_request(&self) -> Result<Request, ProtocolError> {
        self.expect(FrameKind::Request, "request")?;
        Ok(serde_json::from_slice(&self.payload)?)
    }

    /// Decodes the payload of a [`FrameKind::Request`] frame sent to the guest agent (which
    /// understands agent requests only).
    pub fn to_agent_request(&self) -> Result<AgentRequest, ProtocolError> {
        self.expect(FrameKind::Request, "request")?;
        Ok(serde_json::from_slice(&self.payload)?)
    }

    /// Decodes the payload of a [`FrameKind::Response`] frame.
    pub fn to_response(&self) -> Result<Response, ProtocolError> {
        self.expect(FrameKind::Response, "response")?;
        Ok(serde_json::from_slice(&self.payload)?)
    }

    /// Decodes the signal number of a [`FrameKind::Signal`] frame.
    pub fn to_signal(&self) -> Result<i32, ProtocolError> {
        Ok(i32::from_le_bytes(
            self.four_bytes(FrameKind::Signal, "signal")?,
        ))
    }

    /// The 4-byte payload of a `kind` frame.
    fn four_bytes(&self, kind: FrameKind, name: &'static str) -> Result<[u8; 4], ProtocolError> {
        self.expect(kind, name)?;
        self.payload.as_slice().try_into().map_err(|_| {
            ProtocolError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{name} frame must be 4 bytes"),
            ))
        })
    }

    fn expect(&self, kind: FrameKind, name: &'static str) -> Result<(), ProtocolError> {
        if self.kind == kind {
            Ok(())
        } else {
            Err(ProtocolError::UnexpectedKind {
                expected: name,
                got: self.kind,
            })
        }
    }

    /// Serialises the frame into one buffer, so that a single `write_all` puts it on the wire
    /// and concurrent writers sharing a lock never interleave partial frames.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        if self.payload.len() > MAX_PAYLOAD {
            return Err(ProtocolError::FrameTooLarge {
                len: self.payload.len(),
                max: MAX_PAYLOAD,
            });
        }
        let len = (ID_KIND_LEN + self.payload.len()) as u32;
        let mut buf = Vec::with_capacity(HEADER_LEN + self.payload.len());
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&self.id.to_le_bytes());
        buf.push(self.kind as u8);
        buf.extend_from_slice(&self.payload);
        Ok(buf)
    }
}

/// Writes one frame. Callers sharing `writer` between threads must hold a lock around the call.
pub fn write_frame<W: Write>(writer: &mut W, frame: &Frame) -> Result<(), ProtocolError> {
    writer.write_all(&frame.encode()?)?;
    writer.flush()?;
    Ok(())
}

/// Reads one frame. Returns `Ok(None)` on a clean end of stream (EOF before any header byte).
pub fn read_frame<R: Read>(reader: &mut R) -> Result<Option<Frame>, ProtocolError> {
    let mut len_buf = [0u8; 4];
    let mut filled = 0;
    while filled < len_buf.len() {
        match reader.read(&mut len_buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_le_bytes(len_buf) as usize;
    if len < ID_KIND_LEN {
        return Err(
            io::Error::new(io::ErrorKind::InvalidData, "frame shorter than its header").into(),
        );
    }
    let payload_len = len - ID_KIND_LEN;
    if payload_len > MAX_PAYLOAD {
        return Err(ProtocolError::FrameTooLarge {
            len: payload_len,
            max: MAX_PAYLOAD,
        });
    }
    let mut head = [0u8; ID_KIND_LEN];
    reader.read_exact(&mut head)?;
    let id = u64::from_le_bytes(head[..8].try_into().expect("8-byte slice"));
    let kind = FrameKind::from_byte(head[8])?;
    let mut payload = vec![0u8; payload_len];
    reader.read_exact(&mut payload)?;
    Ok(Some(Frame { id, kind, payload }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn frames_round_trip_back_to_back() {
        let frames = vec![
            Frame::request(1, &AgentRequest::EnvList).unwrap(),
            Frame::data(2, FrameKind::Stdout, vec![0, 159, 146, 150, 255]),
            Frame::data(3, FrameKind::Stdin, Vec::new()),
            Frame::signal(4, 9),
            Frame::resize(5, 24, 80),
            Frame::credit(6, 1 << 20),
        ];
        let mut wire = Vec::new();
        for f in &frames {
            write_frame(&mut wire, f).unwrap();
        }
        let mut cursor = Cursor::new(wire);
        for f in &frames {
            assert_eq!(read_frame(&mut cursor).unwrap().as_ref(), Some(f));
        }
        assert!(read_frame(&mut cursor).unwrap().is_none());
        assert_eq!(frames[3].to_signal().unwrap(), 9);
        assert_eq!(frames[4].to_resize().unwrap(), (24, 80));
        assert_eq!(frames[5].to_credit().unwrap(), 1 << 20);
        assert!(frames[0].to_credit().is_err());
    }

    #[test]
    fn truncated_frame_is_an_error_not_eof() {
        let mut wire = Frame::data(7, FrameKind::Echo, vec![1; 100])
            .encode()
            .unwrap();
        wire.truncate(50);
        assert!(read_frame(&mut Cursor::new(wire)).is_err());
        // A cut inside the length field is an error too.
        assert!(read_frame(&mut Cursor::new(vec![5u8, 0])).is_err());
    }

    #[test]
    fn oversized_and_unknown_frames_are_rejected() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&((MAX_PAYLOAD + ID_KIND_LEN + 1) as u32).to_le_bytes());
        wire.extend_from_slice(&[0; 9]);
        assert!(matches!(
            read_frame(&mut Cursor::new(wire)),
            Err(ProtocolError::FrameTooLarge { .. })
        ));

        let mut wire = Frame::data(1, FrameKind::Echo, vec![]).encode().unwrap();
        wire[12] = 200;
        assert!(matches!(
            read_frame(&mut Cursor::new(wire)),
            Err(ProtocolError::UnknownKind(200))
        ));
    }

    #[test]
    fn decoding_the_wrong_kind_names_both() {
        let frame = Frame::data(1, FrameKind::Stdout, b"x".to_vec());
        let err = frame.to_response().unwrap_err().to_string();
        assert!(err.contains("response") && err.contains("Stdout"), "{err}");
    }
}
