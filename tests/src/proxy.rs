//! [`Proxy`]: a TCP proxy in front of one process, to partition it from whoever reaches it
//! through the proxy (`tc netem` is not available here; this needs no privileges).
//!
//! While cut, it severs the connections it carries and holds new ones open without
//! forwarding a byte (packets lost, as in a real partition: callers wait for their deadlines);
//! healed, it forwards again.

use anyhow::Result;
use parking_lot::Mutex;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

pub struct Proxy {
    /// `http://127.0.0.1:<port>`: what callers use instead of the target's URL.
    pub url: String,
    addr: SocketAddr,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    cut: AtomicBool,
    stop: AtomicBool,
    /// Both ends of every forwarded connection, to sever them on a cut.
    open: Mutex<Vec<TcpStream>>,
    /// Connections accepted while cut, held without forwarding.
    held: Mutex<Vec<TcpStream>>,
}

impl Proxy {
    /// A proxy to `target` (`http://host:port`).
    pub fn start(target: &str) -> Result<Proxy> {
        let target: SocketAddr =
            target.trim_start_matches("http://").trim_end_matches('/').parse()?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let s = state.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if s.cut.load(Ordering::SeqCst) {
                    s.held.lock().push(client);
                    continue;
                }
                let Ok(upstream) = TcpStream::connect(target) else { continue };
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                let mut open = s.open.lock();
                open.retain(|c| c.peer_addr().is_ok());
                for c in [&client, &upstream] {
                    if let Ok(c) = c.try_clone() {
                        open.push(c);
                    }
                }
                drop(open);
                pump(&client, &upstream);
                pump(&upstream, &client);
            }
        });
        Ok(Proxy { url: format!("http://{addr}"), addr, state })
    }

    /// Partitions the target from the proxy's callers.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        for c in self.state.open.lock().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Ends the partition (connections held meanwhile are closed; callers reconnect).
    pub fn heal(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
        for c in self.state.held.lock().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

/// Copies `from` to `to` on a thread of its own until either end closes.
fn pump(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else { return };
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.heal();
        self.cut();
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(self.addr);
    }
}
