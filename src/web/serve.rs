//! The local server's accept loop: plain HTTP or HTTPS, at most `web.max_connections`
//! connections at once, and no client that can hold one without using it.
//!
//! - A client has `HEADER_TIMEOUT` to send a request's headers, counted from the moment
//!   the server waits for them: on a new connection, and again between requests on a
//!   kept-alive one. A slowloris (headers a byte at a time) or an idle socket is closed.
//! - When every place is taken, a newcomer takes the place of the oldest connection that
//!   is not in the middle of a request (`Slots::admit`). Idle sockets can delay the owner
//!   by nothing, and the file descriptors they hold stay bounded.
//! - On shutdown, connections finish the request in hand (for up to `DRAIN`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::metrics::WebMetrics;

/// Time a client has to send a request's headers (also the idle time of a kept-alive
/// connection).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors): no busy loop.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How long shutdown waits for requests in hand.
const DRAIN: Duration = Duration::from_secs(5);
/// Most bytes buffered per connection (a request's headers must fit).
const MAX_BUFFER: usize = 32 * 1024;
/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;
/// How long a newcomer waits for the connection it displaced to be closed, so the
/// sockets held stay at `max_connections` however busy the machine is.
const DISPLACED_WAIT: Duration = Duration::from_millis(250);

/// How the server treats its connections.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

/// Serves `app` on `listener` until `cancel` fires.
pub async fn run(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: Limits,
    metrics: WebMetrics,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Slots::new(limits.max_connections, metrics));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let tasks = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept an HTTP connection");
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        let Some(mut place) = Slots::admit(&slots) else {
            // Every connection is in the middle of a request: this one waits its turn
            // nowhere, it is closed at once.
            continue;
        };
        if let Some(gone) = place.displaced.take() {
            let _ = tokio::time::timeout(DISPLACED_WAIT, gone.notified()).await;
        }
        let conn = Connection {
            app: app.clone(),
            peer,
            place,
            header_timeout: limits.header_timeout,
            cancel: cancel.clone(),
        };
        tasks.spawn(conn.serve(stream, acceptor.clone()));
    }
    tasks.close();
    if tokio::time::timeout(DRAIN, tasks.wait()).await.is_err() {
        tracing::warn!(
            open = tasks.len(),
            "HTTP connections still open at shutdown"
        );
    }
    Ok(())
}

/// One accepted connection.
struct Connection {
    app: Router,
    peer: SocketAddr,
    place: Place,
    header_timeout: Duration,
    cancel: CancellationToken,
}

impl Connection {
    async fn serve(self, stream: TcpStream, acceptor: Option<tokio_rustls::TlsAcceptor>) {
        let _ = stream.set_nodelay(true);
        let evicted = self.place.evicted.clone();
        let Some(acceptor) = acceptor else {
            return self.http(stream).await;
        };
        let mut first = [0u8; 1];
        let handshake = async {
            if stream.peek(&mut first).await.ok()? == 1 && first[0] != TLS_HANDSHAKE {
                return Some(Err(stream));
            }
            acceptor.accept(stream).await.ok().map(Ok)
        };
        let shaken = tokio::select! {
            () = evicted.cancelled() => return,
            shaken = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake) => shaken,
        };
        match shaken {
            Ok(Some(Ok(tls))) => self.http(tls).await,
            Ok(Some(Err(plain))) => plain_http_on_https(plain).await,
            _ => tracing::debug!(client = %self.peer, "TLS handshake failed or timed out"),
        }
    }

    async fn http<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            app,
            peer,
            place,
            header_timeout,
            cancel,
        } = self;
        let busy = Arc::clone(&place.busy);
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let request = Busy::start(&busy);
            let app = app.clone();
            async move {
                let response = match app.oneshot(req.map(axum::body::Body::new)).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                // The connection counts as busy until the response body is sent.
                let (parts, body) = response.into_parts();
                let body = body.map_frame(move |frame| {
                    let _in_hand = &request;
                    frame
                });
                Ok::<_, Infallible>(hyper::Response::from_parts(
                    parts,
                    axum::body::Body::new(body),
                ))
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_buf_size(MAX_BUFFER);
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        tokio::pin!(conn);
        let ended = tokio::select! {
            ended = conn.as_mut() => ended,
            () = place.evicted.cancelled() => return,
            () = cancel.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = ended {
            tracing::debug!(client = %peer, error = %e, "HTTP connection ended");
        }
    }
}

/// A plain-HTTP request on the HTTPS port gets a short answer saying where to go.
async fn plain_http_on_https(mut stream: TcpStream) {
    let body = "This camera speaks HTTPS: use https:// in the address.\n";
    let reply = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.write_all(reply.as_bytes())).await;
}

/// Marks its connection busy while a request is in hand.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(count))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The open connections, oldest first.
struct Slots {
    max: usize,
    metrics: WebMetrics,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    next: u64,
    by_age: BTreeMap<u64, Entry>,
}

struct Entry {
    busy: Arc<AtomicUsize>,
    evicted: CancellationToken,
    /// Told when its connection is closed.
    gone: Arc<tokio::sync::Notify>,
}

/// A connection's place; dropping it (once its socket is closed) frees the place.
struct Place {
    id: u64,
    slots: Arc<Slots>,
    busy: Arc<AtomicUsize>,
    evicted: CancellationToken,
    gone: Arc<tokio::sync::Notify>,
    /// The connection this one displaced: told when that one is closed.
    displaced: Option<Arc<tokio::sync::Notify>>,
}

impl Slots {
    fn new(max: usize, metrics: WebMetrics) -> Self {
        Self {
            max,
            metrics,
            open: Mutex::new(Open::default()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Open) -> T) -> T {
        // A poisoned lock only means a connection task panicked; the map stays usable.
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut open)
    }

    /// A place for a new connection: a free one, else the oldest connection not in the
    /// middle of a request is closed to make room; `None` when all are busy.
    fn admit(slots: &Arc<Slots>) -> Option<Place> {
        let place = slots.with(|open| {
            let mut displaced = None;
            if open.by_age.len() >= slots.max {
                let oldest_idle = open
                    .by_age
                    .iter()
                    .find(|(_, e)| e.busy.load(Ordering::Relaxed) == 0)
                    .map(|(id, _)| *id);
                let Some(victim) = oldest_idle else {
                    slots.metrics.refused.inc();
                    return None;
                };
                if let Some(entry) = open.by_age.remove(&victim) {
                    entry.evicted.cancel();
                    slots.metrics.evicted.inc();
                    displaced = Some(entry.gone);
                }
            }
            let id = open.next;
            open.next += 1;
            let entry = Entry {
                busy: Arc::new(AtomicUsize::new(0)),
                evicted: CancellationToken::new(),
                gone: Arc::new(tokio::sync::Notify::new()),
            };
            let place = Place {
                id,
                slots: Arc::clone(slots),
                busy: Arc::clone(&entry.busy),
                evicted: entry.evicted.clone(),
                gone: Arc::clone(&entry.gone),
                displaced,
            };
            open.by_age.insert(id, entry);
            Some(place)
        })?;
        slots.metrics.connections.set(slots.len() as i64);
        Some(place)
    }

    fn len(&self) -> usize {
        self.with(|open| open.by_age.len())
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.slots.with(|open| open.by_age.remove(&self.id));
        self.slots.metrics.connections.set(self.slots.len() as i64);
        // A permit is kept if nobody waits yet.
        self.gone.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newcomer_takes_the_place_of_the_oldest_idle_connection_never_a_busy_one() {
        let metrics = WebMetrics::default();
        let slots = Arc::new(Slots::new(3, metrics.clone()));
        let places: Vec<Place> = (0..3).map(|_| Slots::admit(&slots).unwrap()).collect();
        assert_eq!(metrics.connections.get(), 3);
        let _busy = Busy::start(&places[0].busy);

        let fourth = Slots::admit(&slots).unwrap();
        assert!(
            fourth.displaced.is_some(),
            "it waits for the one it displaced"
        );
        assert!(!places[0].evicted.is_cancelled(), "busy: kept");
        assert!(places[1].evicted.is_cancelled(), "oldest idle: closed");
        assert!(!places[2].evicted.is_cancelled());
        assert_eq!((metrics.evicted.get(), metrics.connections.get()), (1, 3));

        let _b2 = Busy::start(&places[2].busy);
        let _b4 = Busy::start(&fourth.busy);
        assert!(Slots::admit(&slots).is_none(), "every one busy");
        assert_eq!(metrics.refused.get(), 1);

        drop(fourth);
        assert_eq!(metrics.connections.get(), 2);
        assert!(Slots::admit(&slots).is_some(), "a freed place is reused");
    }

    #[test]
    fn a_finished_request_makes_the_connection_idle_again() {
        let slots = Arc::new(Slots::new(1, WebMetrics::default()));
        let first = Slots::admit(&slots).unwrap();
        let request = Busy::start(&first.busy);
        assert!(Slots::admit(&slots).is_none());
        drop(request);
        assert!(Slots::admit(&slots).is_some());
        assert!(first.evicted.is_cancelled());
    }
}
