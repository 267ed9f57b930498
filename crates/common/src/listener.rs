//! [`nodelay`]: the listener every service serves on.

use axum::serve::{ListenerExt, TapIo};
use tokio::net::{TcpListener, TcpStream};

/// `listener`, with `TCP_NODELAY` set on every accepted connection: an answer leaves as soon as
/// it is written, instead of waiting under Nagle's algorithm for the peer's ACK of the previous
/// segment (which a peer delaying its ACKs holds back for tens of milliseconds) whenever an
/// answer is written in more than one piece.
pub fn nodelay(listener: TcpListener) -> TapIo<TcpListener, fn(&mut TcpStream)> {
    fn set(stream: &mut TcpStream) {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
        }
    }
    listener.tap_io(set as fn(&mut TcpStream))
}
