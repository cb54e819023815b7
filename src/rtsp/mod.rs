//! The camera's RTSP server (`[rtsp]`): NVRs, Home Assistant, Frigate and VLC read the
//! one encode, and its AAC sound, from `rtsp://<camera>:8554/<path>`.
//!
//! GStreamer's RTSP server library runs on a thread of its own with its own GLib main
//! loop. One shared media serves every client: its `appsrc`s are fed from the frame
//! buses (`feed`), nothing is encoded again. The media exists while someone watches; a
//! client's PLAY forces a keyframe, so it starts on a picture at once.

mod feed;
mod server;
mod setup;

use std::time::Duration;

use gstreamer_rtsp_server::glib;
use gstreamer_rtsp_server::prelude::*;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use feed::Timing;
pub use server::launch_text;
pub use setup::{RtspDeps, RtspError, RtspSettings};

/// Starts the server and returns once it listens (or could not). Its task stops it on
/// `stop`: every client is closed and the media goes.
pub async fn start(
    settings: RtspSettings,
    deps: RtspDeps,
    stop: CancellationToken,
) -> Result<Vec<JoinHandle<()>>, RtspError> {
    let silence = match settings.audio {
        true => silence(settings.sample_rate, settings.channels).await,
        false => None,
    };
    let (ready_tx, ready_rx) = oneshot::channel();
    let runtime = tokio::runtime::Handle::current();
    let report = deps.report.clone();
    let thread_settings = settings.clone();
    let feed_stop = stop.child_token();
    let thread = std::thread::Builder::new()
        .name("rtsp".into())
        .spawn(move || run(thread_settings, deps, silence, runtime, feed_stop, ready_tx))
        .map_err(|e| RtspError::Init(format!("cannot start its thread: {e}")))?;
    let (port, context, main_loop) = ready_rx
        .await
        .map_err(|_| RtspError::Init("its thread ended before listening".into()))??;
    let url = settings.url(port);
    info!(url = %url, auth = settings.credentials.is_some(), "RTSP server listening");
    report.send_modify(|r| {
        r.enabled = true;
        r.url = Some(url);
    });
    let task = tokio::spawn(async move {
        stop.cancelled().await;
        context.invoke(move || main_loop.quit());
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    });
    Ok(vec![task])
}

type Ready = Result<(u16, glib::MainContext, glib::MainLoop), RtspError>;

/// The server thread: builds the server on a main context of its own and runs it until
/// told to quit, then closes every client.
fn run(
    settings: RtspSettings,
    deps: RtspDeps,
    silence: Option<feed::SilentAac>,
    runtime: tokio::runtime::Handle,
    stop: CancellationToken,
    ready: oneshot::Sender<Ready>,
) {
    let context = glib::MainContext::new();
    let main_loop = glib::MainLoop::new(Some(&context), false);
    let built = context.with_thread_default(|| {
        server::build(&settings, deps, silence, runtime, stop.clone(), &context)
    });
    let server = match built {
        Ok(Ok((server, port))) => {
            let _ = ready.send(Ok((port, context.clone(), main_loop.clone())));
            server
        }
        Ok(Err(e)) => {
            let _ = ready.send(Err(e));
            return;
        }
        Err(e) => {
            let _ = ready.send(Err(RtspError::Init(e.to_string())));
            return;
        }
    };
    let _ = context.with_thread_default(|| main_loop.run());
    stop.cancel();
    server.client_filter(Some(&mut |_, _| {
        gstreamer_rtsp_server::RTSPFilterResult::Remove
    }));
    // Let the closing clients and the media finish on this context.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while context.iteration(false) && std::time::Instant::now() < deadline {}
    info!("RTSP server stopped");
}

/// One AAC frame of silence in the camera's format, for a media whose microphone has
/// not spoken yet.
async fn silence(rate: u32, channels: u32) -> Option<feed::SilentAac> {
    let made = tokio::task::spawn_blocking(move || crate::capture::audio::silence(rate, channels))
        .await
        .ok()?;
    match made {
        Ok((frame, format)) => Some(feed::SilentAac {
            frame,
            duration: Duration::from_secs_f64(1024.0 / f64::from(format.rate.max(1))),
            format,
        }),
        Err(e) => {
            warn!(error = %e, "no AAC silence for RTSP; a media waits for the microphone");
            None
        }
    }
}
