//! The receiving end of a watch, shared by both backends.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::mpsc;

use crate::{MetaError, WatchEvent};

/// How many events a watcher may have pending before the backend gives up on it. A local
/// watcher that falls this far behind gets [`MetaError::Compacted`] (like an etcd watcher
/// that cannot catch up) and must list again. Above the local history length, so a replay
/// always fits.
pub(crate) const WATCH_BUFFER: usize = 16_384;

/// A stream of [`WatchEvent`]s in revision order. An `Err` item ends the stream; `None` means
/// the store went away. Dropping it cancels the watch.
#[derive(Debug)]
pub struct WatchStream {
    rx: mpsc::Receiver<Result<WatchEvent, MetaError>>,
    /// Set by the sender side when it dropped this watcher for being too slow.
    lagged: Arc<AtomicBool>,
    done: bool,
}

impl WatchStream {
    /// A stream and the sending half that feeds it.
    pub(crate) fn channel() -> (WatchSender, WatchStream) {
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let lagged = Arc::new(AtomicBool::new(false));
        let sender = WatchSender { tx, lagged: lagged.clone() };
        let stream = WatchStream { rx, lagged, done: false };
        (sender, stream)
    }

    /// The next event; `None` when the stream has ended.
    pub async fn next(&mut self) -> Option<Result<WatchEvent, MetaError>> {
        futures::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for WatchStream {
    type Item = Result<WatchEvent, MetaError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.done = true;
                if self.lagged.load(Ordering::Acquire) {
                    Poll::Ready(Some(Err(MetaError::Compacted)))
                } else {
                    Poll::Ready(None)
                }
            }
            other => other,
        }
    }
}

/// The backend's end of one watcher.
#[derive(Debug)]
pub(crate) struct WatchSender {
    pub(crate) tx: mpsc::Sender<Result<WatchEvent, MetaError>>,
    lagged: Arc<AtomicBool>,
}

impl WatchSender {
    /// Queues an event without waiting. Returns false when the watcher is gone or fell too
    /// far behind (it is then marked lagged); the caller drops this sender either way.
    pub(crate) fn offer(&self, event: WatchEvent) -> bool {
        match self.tx.try_send(Ok(event)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.lagged.store(true, Ordering::Release);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}
