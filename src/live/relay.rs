//! TURN over TCP and TLS for an ICE agent that speaks TURN over UDP only.
//!
//! webrtc-rs 0.17 gathers relay candidates only for `turn:` over UDP. Behind a firewall
//! that blocks UDP, a viewer then cannot reach the camera at all. Instead of carrying a
//! fork of the ICE crate, each TCP or TLS TURN server gets a loopback UDP port here, and the
//! agent is handed `turn:127.0.0.1:<port>?transport=udp` in its place. Every agent
//! (one per viewer) that sends to that port gets its own TCP or TLS connection to the real
//! server, carrying its datagrams as the framed stream RFC 8656 §3.7 describes: STUN
//! messages as they are, ChannelData padded to four bytes. The server sees an ordinary
//! TURN client over TCP, and relays to viewers over UDP as it always does.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// A TURN server reached over a byte stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    /// `turns:` (TLS) rather than `turn:` over TCP.
    pub tls: bool,
}

/// How the ICE agent can use one ICE server URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// STUN, or TURN over UDP: the agent speaks it itself.
    Direct,
    /// TURN over TCP or TLS: through a bridge.
    Bridge(Upstream),
    /// Something the agent cannot use (TURN over DTLS, an unknown scheme).
    Unusable,
}

/// Classifies an ICE server URI (RFC 7064/7065: `turn:` defaults to UDP on 3478,
/// `turns:` to TCP on 5349).
pub fn route(uri: &str) -> Route {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Route::Unusable;
    };
    let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
    let transport = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("transport="))
        .map(str::to_ascii_lowercase);
    let tls = match (scheme, transport.as_deref()) {
        ("stun", _) | ("turn", None | Some("udp")) => return Route::Direct,
        ("turn", Some("tcp")) => false,
        ("turns", None | Some("tcp")) => true,
        _ => return Route::Unusable,
    };
    let default_port = if tls { 5349 } else { 3478 };
    match split_host_port(hostport, default_port) {
        Some((host, port)) => Route::Bridge(Upstream { host, port, tls }),
        None => Route::Unusable,
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

/// The URI the agent is given for a bridge listening on `local`.
pub fn bridged_uri(local: SocketAddr) -> String {
    format!("turn:{local}?transport=udp")
}

/// The length of the first frame in `buf` on a TURN stream, and how much of it to pass on
/// as a datagram (ChannelData loses its padding): `Ok(None)` until the whole frame is in.
pub fn frame(buf: &[u8]) -> Result<Option<(usize, usize)>, BadFrame> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let (whole, pass) = match buf[0] {
        // STUN: the two top bits are zero; a 20-byte header with the magic cookie, then
        // `len` bytes.
        0x00..=0x3f => {
            if buf.len() >= 8 && buf[4..8] != MAGIC_COOKIE {
                return Err(BadFrame(buf[0]));
            }
            (20 + len, 20 + len)
        }
        // ChannelData: channel numbers 0x4000-0x4FFF, padded to four bytes on a stream.
        0x40..=0x4f => (4 + len.next_multiple_of(4), 4 + len),
        b => return Err(BadFrame(b)),
    };
    Ok((buf.len() >= whole).then_some((whole, pass)))
}

/// STUN's magic cookie (RFC 5389), bytes 4-7 of every message.
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

/// A byte that starts neither a STUN message nor ChannelData.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a TURN frame (first byte {0:#04x})")]
pub struct BadFrame(u8);

/// A datagram from the agent as it goes on the stream: ChannelData padded to four bytes.
pub fn padded(datagram: &[u8]) -> Bytes {
    let mut out = BytesMut::from(datagram);
    if matches!(datagram.first(), Some(0x40..=0x4f)) {
        out.resize(datagram.len().next_multiple_of(4), 0);
    }
    out.freeze()
}

/// How long a connection may carry nothing before it is closed. An allocation is
/// refreshed at least every five minutes and lives ten without a refresh.
const IDLE: Duration = Duration::from_secs(11 * 60);
/// How long connecting (TCP, then TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections one bridge carries at once (a few per viewer).
const MAX_LEGS: usize = 64;
/// Datagrams waiting for a connection to be written.
const LEG_QUEUE: usize = 64;
/// The largest datagram (a full ChannelData).
const MAX_DATAGRAM: usize = 4 + 65_535;

/// The bridges in use, one per TURN server reached over TCP or TLS. Owned by the task
/// that fetches ICE servers.
pub struct Bridges {
    tls: Arc<rustls::ClientConfig>,
    open: HashMap<Upstream, (SocketAddr, CancellationToken)>,
    stop: CancellationToken,
}

impl Bridges {
    pub fn new(stop: CancellationToken) -> Self {
        Self {
            tls: crate::tls::public_client_config(),
            open: HashMap::new(),
            stop,
        }
    }

    /// The loopback address of the bridge to `up`, started when new.
    pub fn local(&mut self, up: &Upstream) -> std::io::Result<SocketAddr> {
        if let Some((addr, _)) = self.open.get(up) {
            return Ok(*addr);
        }
        let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        socket.set_nonblocking(true)?;
        let socket = Arc::new(UdpSocket::from_std(socket)?);
        let addr = socket.local_addr()?;
        let retire = self.stop.child_token();
        info!(server = %up.host, port = up.port, tls = up.tls, bridge = %addr, "TURN over a stream");
        tokio::spawn(serve(
            socket,
            up.clone(),
            Arc::clone(&self.tls),
            retire.clone(),
            self.stop.clone(),
        ));
        self.open.insert(up.clone(), (addr, retire));
        Ok(addr)
    }

    /// Retires the bridges of servers no longer handed out; each ends once the viewers
    /// still using it are gone.
    pub fn keep_only(&mut self, used: &HashSet<Upstream>) {
        self.open.retain(|up, (_, retire)| {
            let keep = used.contains(up);
            if !keep {
                retire.cancel();
            }
            keep
        });
    }
}

/// One bridge: datagrams from each agent's port go over that agent's own connection.
async fn serve(
    socket: Arc<UdpSocket>,
    up: Upstream,
    tls: Arc<rustls::ClientConfig>,
    retire: CancellationToken,
    stop: CancellationToken,
) {
    let mut legs: HashMap<SocketAddr, mpsc::Sender<Bytes>> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        legs.retain(|_, tx| !tx.is_closed());
        if retire.is_cancelled() && legs.is_empty() {
            break;
        }
        let (n, from) = tokio::select! {
            () = stop.cancelled() => break,
            () = retire.cancelled(), if !retire.is_cancelled() => continue,
            // A retired bridge with viewers on it wakes now and then to see them go.
            () = tokio::time::sleep(Duration::from_secs(30)), if retire.is_cancelled() => continue,
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    debug!(error = %e, "bridge receive");
                    continue;
                }
            },
        };
        // Only the ICE agents in this process may use the bridge.
        if !from.ip().is_loopback() {
            continue;
        }
        let datagram = padded(&buf[..n]);
        if let Some(tx) = legs.get(&from).filter(|tx| !tx.is_closed()) {
            // Like UDP, a full queue loses the datagram; TURN retransmits what matters.
            let _ = tx.try_send(datagram);
            continue;
        }
        if retire.is_cancelled() || legs.len() >= MAX_LEGS {
            continue;
        }
        let (tx, rx) = mpsc::channel(LEG_QUEUE);
        let _ = tx.try_send(datagram);
        legs.insert(from, tx);
        let leg = Leg {
            socket: Arc::clone(&socket),
            agent: from,
            up: up.clone(),
        };
        tokio::spawn(leg.run(Arc::clone(&tls), rx, stop.clone()));
    }
    debug!(server = %up.host, port = up.port, "TURN bridge closed");
}

/// One agent's connection to the TURN server.
struct Leg {
    socket: Arc<UdpSocket>,
    agent: SocketAddr,
    up: Upstream,
}

impl Leg {
    async fn run(
        self,
        tls: Arc<rustls::ClientConfig>,
        rx: mpsc::Receiver<Bytes>,
        stop: CancellationToken,
    ) {
        let ended = tokio::select! {
            () = stop.cancelled() => Ok(()),
            r = self.connect_and_carry(tls, rx) => r,
        };
        match ended {
            Ok(()) => {}
            // The server closes the connection once the agent frees its allocation.
            Err(LegError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                debug!(server = %self.up.host, "TURN server closed the connection");
            }
            Err(e) => {
                warn!(server = %self.up.host, port = self.up.port, tls = self.up.tls, error = %e, "TURN over a stream failed")
            }
        }
    }

    async fn connect_and_carry(
        &self,
        tls: Arc<rustls::ClientConfig>,
        rx: mpsc::Receiver<Bytes>,
    ) -> Result<(), LegError> {
        let addr = (self.up.host.as_str(), self.up.port);
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| LegError::Timeout)??;
        tcp.set_nodelay(true)?;
        if !self.up.tls {
            return self.carry(tcp, rx).await;
        }
        let name = rustls::pki_types::ServerName::try_from(self.up.host.clone())
            .map_err(|_| LegError::Name(self.up.host.clone()))?;
        let connector = tokio_rustls::TlsConnector::from(tls);
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
            .await
            .map_err(|_| LegError::Timeout)??;
        self.carry(stream, rx).await
    }

    async fn carry<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        mut rx: mpsc::Receiver<Bytes>,
    ) -> Result<(), LegError> {
        let (mut read, mut write) = tokio::io::split(stream);
        let mut inbound = BytesMut::with_capacity(4096);
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(d) => write.write_all(&d).await?,
                    None => return Ok(()),
                },
                n = read.read_buf(&mut inbound) => {
                    if n? == 0 {
                        return Ok(());
                    }
                    while let Some((whole, pass)) = frame(&inbound)? {
                        self.socket.send_to(&inbound[..pass], self.agent).await?;
                        inbound.advance(whole);
                    }
                }
                () = tokio::time::sleep(IDLE) => return Ok(()),
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum LegError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("connecting took more than 5 s")]
    Timeout,
    #[error("{0:?} is not a name TLS can check")]
    Name(String),
    #[error(transparent)]
    Frame(#[from] BadFrame),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge(host: &str, port: u16, tls: bool) -> Route {
        Route::Bridge(Upstream {
            host: host.into(),
            port,
            tls,
        })
    }

    #[test]
    fn uris_are_routed_by_scheme_and_transport() {
        let host = "1-2-3-4.t-1.kinesisvideo.eu-west-1.amazonaws.com";
        assert_eq!(route(&format!("stun:{host}:443")), Route::Direct);
        assert_eq!(
            route(&format!("turn:{host}:443?transport=udp")),
            Route::Direct
        );
        assert_eq!(route(&format!("turn:{host}:443")), Route::Direct);
        assert_eq!(
            route(&format!("turn:{host}:443?transport=tcp")),
            bridge(host, 443, false)
        );
        assert_eq!(
            route(&format!("turns:{host}:443?transport=tcp")),
            bridge(host, 443, true)
        );
        // RFC 7065 defaults: turns is TLS over TCP on 5349, turn over TCP on 3478.
        assert_eq!(
            route("turns:example.com"),
            bridge("example.com", 5349, true)
        );
        assert_eq!(
            route("turn:[::1]?transport=TCP"),
            bridge("::1", 3478, false)
        );
        assert_eq!(
            route("turn:[::1]:80?transport=tcp"),
            bridge("::1", 80, false)
        );
        // TURN over DTLS, nonsense and empty hosts cannot be used.
        assert_eq!(
            route(&format!("turns:{host}:443?transport=udp")),
            Route::Unusable
        );
        assert_eq!(route("turn:host:99999?transport=tcp"), Route::Unusable);
        assert_eq!(route("turn::1?transport=tcp"), Route::Unusable);
        assert_eq!(route("http://x"), Route::Unusable);
        assert_eq!(route("nothing"), Route::Unusable);
    }

    #[test]
    fn stream_frames_are_cut_at_their_length() {
        // A STUN Binding request: type 0x0001, length 8, magic cookie, transaction id,
        // then 8 bytes of attributes.
        let mut stun = vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
        stun.extend([7u8; 12]); // transaction id
        stun.extend([0u8; 8]); // attributes
        assert_eq!(frame(&stun[..27]), Ok(None), "one byte short");
        assert_eq!(frame(&stun), Ok(Some((28, 28))));
        // ChannelData on channel 0x4001 with 5 bytes of data, padded to 8 on a stream:
        // the datagram passed on is the 9 unpadded bytes.
        let chan = [0x40, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0];
        assert_eq!(frame(&chan[..9]), Ok(None), "padding not in yet");
        assert_eq!(frame(&chan), Ok(Some((12, 9))));
        assert_eq!(frame(&[0x40, 0x01]), Ok(None));
        // TLS or HTTP from a wrong port is neither.
        assert_eq!(
            frame(&[0x16, 0x03, 0x01, 0x00, 0x10, 0x01, 0, 0]),
            Err(BadFrame(0x16))
        );
        assert_eq!(frame(b"<html>\r\n"), Err(BadFrame(b'<')));
        assert_eq!(frame(&[0x80, 0, 0, 0]), Err(BadFrame(0x80)));
    }

    #[test]
    fn channel_data_is_padded_and_stun_is_not() {
        assert_eq!(
            &padded(&[0x40, 0x01, 0x00, 0x01, 9])[..],
            &[0x40, 0x01, 0, 1, 9, 0, 0, 0]
        );
        assert_eq!(padded(&[0x40, 0x01, 0x00, 0x04, 1, 2, 3, 4]).len(), 8);
        let stun = [0x01, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        assert_eq!(&padded(&stun)[..], &stun);
    }
}
