use std::io;

/// Errors raised while encoding or decoding frames.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The underlying stream failed.
    #[error("I/O error on the SmolVM channel: {0}")]
    Io(#[from] io::Error),
    /// A frame declared a payload larger than [`crate::MAX_PAYLOAD`].
    #[error("frame payload of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge {
        /// Declared payload length.
        len: usize,
        /// Largest payload accepted.
        max: usize,
    },
    /// A frame carried a kind byte this version does not know.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// A JSON control message could not be encoded or decoded.
    #[error("malformed control message: {0}")]
    Json(#[from] serde_json::Error),
    /// A frame of one kind was used where another was required.
    #[error("expected a {expected} frame, got {got:?}")]
    UnexpectedKind {
        /// What the reader wanted.
        expected: &'static str,
        /// What it got.
        got: crate::FrameKind,
    },
}
