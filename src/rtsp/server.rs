//! GStreamer's RTSP server on a thread of its own: one shared media at the configured
//! path, fed by `feed` from the frame buses, digest authentication, the client cap and
//! the counters.

use std::net::SocketAddr;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp_server;
use gstreamer_rtsp_server::prelude::*;
use rtsp_server::gst_rtsp::{RTSPAuthMethod, RTSPLowerTrans};
use rtsp_server::{glib, RTSPAuth, RTSPMediaFactory, RTSPServer, RTSPSessionPool, RTSPToken};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::feed::{self, SilentAac};
use super::setup::{RtspDeps, RtspError, RtspSettings};

/// The role every authenticated client gets.
const ROLE: &str = "viewer";
/// UDP ports for RTP/RTCP when the server listens on one address (not every address).
const UDP_PORTS: (u16, u16) = (30_000, 39_999);

/// The media's launch text: H.264 as pay0 and, with sound, AAC as pay1. Nothing here
/// encodes: the `appsrc`s get the capture's own frames. A client may set up only some
/// of the streams, which leaves the others' payloaders unlinked: the `tee`s with
/// `allow-not-linked` keep that from failing the whole media.
pub fn launch_text(audio: bool) -> String {
    let video = "appsrc name=vsrc is-live=true format=time \
        caps=video/x-h264,stream-format=byte-stream,alignment=au \
        ! queue ! tee allow-not-linked=true ! rtph264pay name=pay0 pt=96 config-interval=0";
    let sound = " appsrc name=asrc is-live=true format=time \
        ! queue ! tee allow-not-linked=true ! rtpmp4gpay name=pay1 pt=97";
    format!("( {video}{} )", if audio { sound } else { "" })
}

/// Everything the server's callbacks need, cloned into each.
#[derive(Clone)]
struct Shared {
    deps: RtspDeps,
    runtime: tokio::runtime::Handle,
    stop: CancellationToken,
    silence: Option<SilentAac>,
}

/// Builds the server on `context` (this thread's) and starts listening.
pub fn build(
    settings: &RtspSettings,
    deps: RtspDeps,
    silence: Option<SilentAac>,
    runtime: tokio::runtime::Handle,
    stop: CancellationToken,
    context: &glib::MainContext,
) -> Result<(RTSPServer, u16), RtspError> {
    let server = RTSPServer::new();
    server.set_address(&settings.addr.ip().to_string());
    server.set_service(&settings.addr.port().to_string());
    let pool = RTSPSessionPool::new();
    pool.set_max_sessions(settings.max_clients);
    server.set_session_pool(Some(&pool));
    let shared = Shared {
        deps,
        runtime,
        stop,
        silence,
    };
    let factory = factory(settings, &shared)?;
    if let Some((user, password)) = &settings.credentials {
        let auth = RTSPAuth::new();
        auth.set_supported_methods(RTSPAuthMethod::Digest);
        auth.set_realm(Some("edgecam"));
        let token = RTSPToken::builder()
            .field(rtsp_server::RTSP_TOKEN_MEDIA_FACTORY_ROLE, ROLE)
            .build();
        auth.add_digest(user, password, &token);
        server.set_auth(Some(&auth));
        factory.add_role_from_structure(
            &gst::Structure::builder(ROLE)
                .field(rtsp_server::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
                .field(rtsp_server::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
                .build(),
        );
    }
    let mounts = server
        .mount_points()
        .ok_or_else(|| RtspError::Init("the server has no mount points".into()))?;
    mounts.add_factory(&format!("/{}", settings.path), factory);
    watch_clients(&server, &shared);
    let source = server
        .create_source(None::<&rtsp_server::gio::Cancellable>)
        .map_err(|e| RtspError::Bind {
            addr: settings.addr,
            message: e.message().to_owned(),
        })?;
    source.attach(Some(context));
    watch_sessions(&pool, &shared, context);
    let port = u16::try_from(server.bound_port()).unwrap_or(settings.addr.port());
    Ok((server, port))
}

fn factory(settings: &RtspSettings, shared: &Shared) -> Result<RTSPMediaFactory, RtspError> {
    let factory = RTSPMediaFactory::new();
    factory.set_launch(&launch_text(settings.audio));
    factory.set_shared(true);
    factory.set_protocols(RTSPLowerTrans::UDP | RTSPLowerTrans::TCP);
    if !settings.addr.ip().is_unspecified() {
        factory.set_address_pool(Some(&address_pool(settings.addr)?));
    }
    let shared = shared.clone();
    factory.connect_media_configure(move |_, media| configure(media, &shared));
    Ok(factory)
}

/// RTP's UDP sockets on the listen address only (without a pool they bind every
/// address, whatever the RTSP socket listens on).
fn address_pool(addr: SocketAddr) -> Result<rtsp_server::RTSPAddressPool, RtspError> {
    let pool = rtsp_server::RTSPAddressPool::new();
    let ip = addr.ip().to_string();
    pool.add_range(&ip, &ip, UDP_PORTS.0, UDP_PORTS.1, 0)
        .map_err(|e| RtspError::Init(format!("RTP address pool: {e}")))?;
    Ok(pool)
}

/// A new media (the first client's DESCRIBE): starts its feeders, stops them when the
/// media goes.
fn configure(media: &rtsp_server::RTSPMedia, shared: &Shared) {
    let Some(bin) = media.element().downcast::<gst::Bin>().ok() else {
        warn!("RTSP media is not a bin; nothing fed");
        return;
    };
    let stop = shared.stop.child_token();
    let app = |name: &str| {
        bin.by_name(name)
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
    };
    if let Some(src) = app("vsrc") {
        shared.runtime.spawn(feed::video(
            src,
            shared.deps.frames.clone(),
            shared.deps.capture.clone(),
            stop.clone(),
        ));
    }
    if let (Some(src), Some(bus)) = (app("asrc"), shared.deps.aac.clone()) {
        shared
            .runtime
            .spawn(feed::audio(src, bus, shared.silence.clone(), stop.clone()));
    }
    // Count RTP bytes once per session that receives them.
    let metrics = &shared.deps.metrics;
    for name in ["pay0", "pay1"] {
        let Some(pad) = bin.by_name(name).and_then(|p| p.static_pad("src")) else {
            continue;
        };
        let bytes = metrics.bytes.clone();
        let sessions = metrics.sessions.clone();
        pad.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
            move |_, info| {
                let size = match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) => b.size(),
                    Some(gst::PadProbeData::BufferList(l)) => l.calculate_size(),
                    _ => 0,
                };
                let n = u64::try_from(sessions.get()).unwrap_or(0);
                bytes.inc_by(size as u64 * n);
                gst::PadProbeReturn::Ok
            },
        );
    }
    media.connect_unprepared(move |_| {
        debug!("RTSP media gone; its feeders stop");
        stop.cancel();
    });
    info!("RTSP media started");
}

/// Counts connections; a client's PLAY asks capture for a keyframe, so a client that
/// joins the shared media mid-GOP gets a picture at once.
fn watch_clients(server: &RTSPServer, shared: &Shared) {
    let metrics = shared.deps.metrics.clone();
    let capture = shared.deps.capture.clone();
    server.connect_client_connected(move |_, client| {
        metrics.clients.inc();
        metrics.connections.inc();
        let clients = metrics.clients.clone();
        client.connect_closed(move |_| {
            clients.dec();
        });
        let capture = capture.clone();
        client.connect_play_request(move |_, _| capture.force_keyframe());
    });
}

/// Every second: drops expired sessions (clients that went without TEARDOWN) and
/// publishes the counts.
fn watch_sessions(pool: &RTSPSessionPool, shared: &Shared, context: &glib::MainContext) {
    let (pool, metrics, report) = (
        pool.clone(),
        shared.deps.metrics.clone(),
        shared.deps.report.clone(),
    );
    let source = glib::timeout_source_new(
        Duration::from_secs(1),
        Some("edgecam-rtsp-sessions"),
        glib::Priority::DEFAULT,
        move || {
            pool.cleanup();
            metrics.sessions.set(i64::from(pool.n_sessions()));
            report.send_modify(|r| {
                r.clients = u64::try_from(metrics.clients.get()).unwrap_or(0);
                r.sessions = u64::try_from(metrics.sessions.get()).unwrap_or(0);
                r.bytes = metrics.bytes.get();
            });
            glib::ControlFlow::Continue
        },
    );
    source.attach(Some(context));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_media_payloads_the_capture_and_encodes_nothing() {
        let text = launch_text(true);
        assert!(
            text.contains("name=pay0") && text.contains("name=pay1"),
            "{text}"
        );
        for encoder in ["x264enc", "voaacenc", "avenc", "v4l2h264enc"] {
            assert!(!text.contains(encoder), "{text}");
        }
        assert!(!launch_text(false).contains("pay1"));
        gst::init().unwrap();
        let bin = gst::parse::launch(&text).unwrap();
        assert!(bin
            .downcast::<gst::Bin>()
            .unwrap()
            .by_name("vsrc")
            .is_some());
    }
}
