//! Reading the core's answer on a [`CoreConn`]: its final response head
//! (interim `1xx` answers are skipped) and what it says about the body and
//! the connection.

use super::pool::CoreConn;
use crate::h1::response::{self, ResponseHead};
use crate::h1::{Framing, HeadError, request::header_slots};

/// What the gateway keeps of the core's response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreResponse {
    pub status: u16,
    pub framing: Framing,
    /// Whether the connection can carry another request afterwards.
    pub reusable: bool,
}

/// Why no usable response head arrived.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("jessy-core connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The core closed the connection before a complete head (`answered`:
    /// whether any byte of an answer had arrived).
    #[error("jessy-core closed the connection before answering")]
    Closed { answered: bool },
    #[error("jessy-core sent an invalid response head: {}", .0.reason())]
    Head(HeadError),
}

/// Reads the response to a request (`head_request`: a HEAD, whose answer
/// has no body). `render` sees the final head
/// while it is still in the read buffer (the gateway writes the client's
/// head from it); the head's bytes are consumed afterwards.
pub async fn read_response_head<T>(
    conn: &mut CoreConn,
    head_request: bool,
    mut render: impl FnMut(&ResponseHead<'_, '_>, Framing) -> T,
) -> Result<(CoreResponse, T), ExchangeError> {
    loop {
        let parsed = {
            let mut slots = header_slots();
            match response::parse(conn.buf.data(), &mut slots) {
                Ok(Some(head)) if head.is_informational() => Some((head.len, None)),
                Ok(Some(head)) => {
                    let framing = head.framing(head_request).map_err(ExchangeError::Head)?;
                    let response = CoreResponse {
                        status: head.status,
                        framing,
                        reusable: head.keep_alive() && framing != Framing::UntilClose,
                    };
                    Some((head.len, Some((response, render(&head, framing)))))
                }
                Ok(None) => None,
                Err(err) => return Err(ExchangeError::Head(err)),
            }
        };
        match parsed {
            Some((len, done)) => {
                conn.buf.consume(len);
                if let Some(done) = done {
                    return Ok(done);
                }
            }
            None => {
                let answered = !conn.buf.is_empty();
                if conn.buf.read_from(&mut conn.stream).await? == 0 {
                    return Err(ExchangeError::Closed { answered });
                }
            }
        }
    }
}
