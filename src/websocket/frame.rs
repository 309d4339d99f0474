//! Text frames from the gateway to a client, written straight to the socket. A fan-out
//! event is the client's prefix and the shared bytes; writing them as one vectored
//! write (header, prefix, shared) copies neither, where a websocket library would first
//! copy both into a buffer it then keeps for the connection's life: at 10,000 clients
//! that buffer alone would be 10 KB each.

use std::io::{self, IoSlice};

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The header of an unmasked, final text frame of `len` bytes (RFC 6455 §5.2).
fn header(len: usize, out: &mut [u8; 10]) -> usize {
    out[0] = 0x81;
    match len {
        0..=125 => {
            out[1] = len as u8;
            2
        }
        126..=0xffff => {
            out[1] = 126;
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            out[1] = 127;
            out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    }
}

/// The most parts one frame is written from: an event is at most five (the node's
/// bytes around the client's id and query).
const MAX_PARTS: usize = 7;

/// Writes `parts` as one text frame. The caller has flushed its websocket library
/// first, so that no frame of its own is half-written underneath. The slices live on
/// the stack: a fan-out writes one frame per client per event.
pub(crate) async fn write_text<'p, W>(
    io: &mut W,
    parts: impl IntoIterator<Item = &'p [u8]>,
) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut held: [&[u8]; MAX_PARTS] = [&[]; MAX_PARTS];
    let mut n = 0;
    for part in parts.into_iter().filter(|p| !p.is_empty()) {
        let slot = held.get_mut(n).ok_or(io::ErrorKind::InvalidInput)?;
        *slot = part;
        n += 1;
    }
    let len = held[..n].iter().map(|p| p.len()).sum();
    let mut head = [0u8; 10];
    let head_len = header(len, &mut head);
    let mut slices = [IoSlice::new(&[]); MAX_PARTS + 1];
    slices[0] = IoSlice::new(&head[..head_len]);
    for (slot, part) in slices[1..].iter_mut().zip(&held[..n]) {
        *slot = IoSlice::new(part);
    }
    let mut slices = &mut slices[..=n];
    while !slices.is_empty() {
        let n = io.write_vectored(slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    io.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::WebSocketStream;

    /// A websocket client library reads what was written as the text it was made of.
    #[tokio::test]
    async fn a_client_reads_each_size_class_as_one_message() {
        for len in [0usize, 1, 125, 126, 65_535, 65_536, 200_000] {
            let (mut server, client) = tokio::io::duplex(1 << 20);
            let body = "x".repeat(len);
            let (a, b) = body.split_at(len / 3);
            write_text(&mut server, [a.as_bytes(), b"", b.as_bytes()])
                .await
                .unwrap();
            let mut client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
            match client.next().await {
                Some(Ok(Message::Text(text))) => assert_eq!(text.as_str(), body, "{len}"),
                other => panic!("{len}: {other:?}"),
            }
        }
    }
}
