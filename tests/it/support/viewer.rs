//! A webrtc-rs viewer, as a phone app would be: connects through LAN signaling, receives
//! RTP, depacketizes H.264 (and, when it asks for sound, Opus) and decodes it with
//! GStreamer, timing the first decoded frame.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use webrtc::api::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS};
use webrtc::ice_transport::ice_candidate::{RTCIceCandidate, RTCIceCandidateInit};
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp::codecs::h264::H264Packet;
use webrtc::rtp::codecs::opus::OpusPacket;
use webrtc::rtp::packetizer::Depacketizer;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;
use webrtc::track::track_local::TrackLocal;
use webrtc::track::track_remote::TrackRemote;

use super::sync_probe::Probe;
use edgecam::live::message;

/// What a viewer saw.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Offer sent → first decoded picture.
    pub first_frame: Option<Duration>,
    pub decoded: u64,
    /// The master refused us (its reason).
    pub refused: Option<String>,
    /// Replies on the `control` data channel.
    pub control: Vec<Value>,
    /// Decoded audio buffers, and how many of them were loud (a tick) or quiet.
    pub audio_decoded: u64,
    pub audio_loud: u64,
    pub audio_quiet: u64,
}

/// How a viewer connects.
#[derive(Default)]
pub struct Opts {
    /// Ask for sound (an audio transceiver in the offer).
    pub audio: bool,
    /// Leave out the `control` data channel (and so SCTP), as a plain media player does.
    pub no_control: bool,
    /// Name the data channel this instead of `control` (an app's own channel).
    pub channel: Option<&'static str>,
    /// Send both tracks to a lip-sync probe instead of the decoders.
    pub probe: Option<Probe>,
    /// `Authorization: Bearer` on the signaling socket's upgrade request.
    pub token: Option<String>,
    /// `Cookie` on the signaling socket's upgrade request (a logged-in page).
    pub cookie: Option<String>,
    /// Offer to send sound (a microphone track) for talking through the camera.
    pub talk: bool,
}

pub struct Viewer {
    pub pc: Arc<RTCPeerConnection>,
    pub seen: watch::Receiver<Seen>,
    decoded: Arc<AtomicU64>,
    control: Option<Arc<webrtc::data_channel::RTCDataChannel>>,
    /// The SSRC of the camera's video track, once it arrived.
    video_ssrc: Arc<AtomicU32>,
    _decoder: gst::Pipeline,
    _audio_decoder: Option<gst::Pipeline>,
    /// The microphone track, when the viewer offered to talk.
    pub mic: Option<Arc<TrackLocalStaticSample>>,
    /// When the next 20 ms packet is due, so that consecutive `speak` calls go on at
    /// exactly real time (a sender that runs fast piles up in the receiver's buffer).
    next_packet: Mutex<Option<tokio::time::Instant>>,
    /// The signaling socket's writer and reader; closing the viewer closes the socket,
    /// as a browser tab does.
    signaling: Vec<tokio::task::JoinHandle<()>>,
}

fn decoder(
    seen: watch::Sender<Seen>,
    started: Instant,
    decoded: Arc<AtomicU64>,
) -> (gst::Pipeline, gst_app::AppSrc) {
    let (pipeline, src, out) = super::h264_decoder(true);
    out.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let _ = sink.pull_sample();
                let n = decoded.fetch_add(1, Ordering::Relaxed) + 1;
                seen.send_modify(|s| {
                    s.decoded = n;
                    s.first_frame.get_or_insert(started.elapsed());
                });
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    (pipeline, src)
}

/// `appsrc ! opusdec ! appsink`, counting decoded buffers by loudness.
fn audio_decoder(seen: watch::Sender<Seen>) -> (gst::Pipeline, gst_app::AppSrc) {
    let (pipeline, src, out) = super::appsrc_pipeline(
        "appsrc name=src is-live=true do-timestamp=true format=time \
           caps=audio/x-opus,channel-mapping-family=0,rate=48000,channels=2 \
         ! opusdec ! audioconvert ! audio/x-raw,format=S16LE \
         ! appsink name=out sync=false",
    );
    out.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let peak = sample
                    .buffer()
                    .and_then(|b| b.map_readable().ok())
                    .map(|m| {
                        m.as_slice()
                            .chunks_exact(2)
                            .map(|s| i16::from_le_bytes([s[0], s[1]]).unsigned_abs())
                            .max()
                            .unwrap_or(0)
                    })
                    .unwrap_or(0);
                seen.send_modify(|s| {
                    s.audio_decoded += 1;
                    if peak > 3000 {
                        s.audio_loud += 1;
                    } else if peak < 300 {
                        s.audio_quiet += 1;
                    }
                });
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    (pipeline, src)
}

/// Reads Opus RTP and feeds the decoder, one packet a buffer.
async fn receive_audio(track: Arc<TrackRemote>, src: gst_app::AppSrc) {
    let mut depacketizer = OpusPacket;
    while let Ok((packet, _)) = track.read_rtp().await {
        if let Ok(frame) = depacketizer.depacketize(&packet.payload) {
            if src.push_buffer(gst::Buffer::from_slice(frame)).is_err() {
                return;
            }
        }
    }
}

/// Reads RTP, rebuilds access units (marker bit ends one) and feeds the decoder.
async fn receive(track: Arc<TrackRemote>, src: gst_app::AppSrc) {
    let mut depacketizer = H264Packet::default();
    let mut au = BytesMut::new();
    while let Ok((packet, _)) = track.read_rtp().await {
        if let Ok(nals) = depacketizer.depacketize(&packet.payload) {
            au.extend_from_slice(&nals);
        }
        if packet.header.marker && !au.is_empty() {
            let data: Bytes = au.split().freeze();
            if src.push_buffer(gst::Buffer::from_slice(data)).is_err() {
                return;
            }
        }
    }
}

impl Viewer {
    /// Connects to the daemon at `addr` as `client_id`, with `token` as the bearer
    /// credential of the signaling socket.
    pub async fn connect(addr: SocketAddr, client_id: &str, token: Option<&str>) -> Viewer {
        let url = format!("ws://{addr}/signaling?clientId={client_id}");
        let opts = Opts {
            token: token.map(str::to_owned),
            ..Opts::default()
        };
        Self::connect_with(&url, opts).await
    }

    /// Like `connect`, asking for sound as well (as a browser does).
    pub async fn connect_with_audio(addr: SocketAddr, client_id: &str) -> Viewer {
        let url = format!("ws://{addr}/signaling?clientId={client_id}");
        Self::connect_opts(&url, true).await
    }

    /// The daemon's `/signaling` URL for `client_id`.
    pub fn lan_url(addr: SocketAddr, client_id: &str) -> String {
        format!("ws://{addr}/signaling?clientId={client_id}")
    }

    /// Connects through any signaling WebSocket that speaks the LAN viewer messages
    /// (the daemon's `/signaling`, or the fake KVS service's viewer side).
    pub async fn connect_url(url: &str) -> Viewer {
        Self::connect_opts(url, false).await
    }

    /// Like `connect_with_audio`, with both tracks going to a lip-sync `Probe` instead
    /// of the usual decoders.
    pub async fn connect_probed(addr: SocketAddr, client_id: &str) -> (Viewer, Probe) {
        let url = format!("ws://{addr}/signaling?clientId={client_id}");
        let probe = Probe::default();
        let opts = Opts {
            audio: true,
            probe: Some(probe.clone()),
            ..Opts::default()
        };
        let v = Self::connect_with(&url, opts).await;
        (v, probe)
    }

    /// Like `connect_url`, asking for sound as well.
    pub async fn connect_url_with_audio(url: &str) -> Viewer {
        Self::connect_opts(url, true).await
    }

    async fn connect_opts(url: &str, audio: bool) -> Viewer {
        let opts = Opts {
            audio,
            ..Opts::default()
        };
        Self::connect_with(url, opts).await
    }

    pub async fn connect_with(url: &str, opts: Opts) -> Viewer {
        let Opts {
            audio,
            no_control,
            channel,
            probe,
            token,
            cookie,
            talk,
        } = opts;
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let api = edgecam::live::api(&["127.0.0.1".parse().unwrap()]).unwrap();
        let pc = Arc::new(
            api.new_peer_connection(RTCConfiguration::default())
                .await
                .unwrap(),
        );
        pc.add_transceiver_from_kind(
            RTPCodecType::Video,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                send_encodings: vec![],
            }),
        )
        .await
        .unwrap();
        let mic = if talk {
            let track = Arc::new(TrackLocalStaticSample::new(
                edgecam::live::opus(),
                "mic".to_owned(),
                "viewer".to_owned(),
            ));
            pc.add_transceiver_from_track(
                Arc::clone(&track) as Arc<dyn TrackLocal + Send + Sync>,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendrecv,
                    send_encodings: vec![],
                }),
            )
            .await
            .unwrap();
            Some(track)
        } else {
            if audio {
                pc.add_transceiver_from_kind(
                    RTPCodecType::Audio,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Recvonly,
                        send_encodings: vec![],
                    }),
                )
                .await
                .unwrap();
            }
            None
        };
        let control = if no_control {
            None
        } else {
            let label = channel.unwrap_or("control");
            Some(pc.create_data_channel(label, None).await.unwrap())
        };
        let video_ssrc = Arc::new(AtomicU32::new(0));
        let ssrc_of_video = Arc::clone(&video_ssrc);
        let (seen_tx, seen) = watch::channel(Seen::default());
        let started = Instant::now();
        let decoded = Arc::new(AtomicU64::new(0));
        let (pipeline, src) = decoder(seen_tx.clone(), started, Arc::clone(&decoded));
        let src = Mutex::new(Some(src));
        let (audio_pipeline, audio_src) = if audio {
            let (p, s) = audio_decoder(seen_tx.clone());
            (Some(p), Some(s))
        } else {
            (None, None)
        };
        let audio_src = Mutex::new(audio_src);
        pc.on_track(Box::new(move |track, receiver, _| {
            let mime = track.codec().capability.mime_type;
            if mime == MIME_TYPE_H264 {
                ssrc_of_video.store(track.ssrc(), Ordering::Relaxed);
            }
            if let Some(probe) = &probe {
                probe.on_track(track, receiver, mime == MIME_TYPE_OPUS);
            } else if mime == MIME_TYPE_H264 {
                if let Some(src) = src.lock().unwrap().take() {
                    tokio::spawn(receive(track, src));
                }
            } else if mime == MIME_TYPE_OPUS {
                if let Some(src) = audio_src.lock().unwrap().take() {
                    tokio::spawn(receive_audio(track, src));
                }
            }
            Box::pin(async {})
        }));
        if let Some(control) = &control {
            let replies = seen_tx.clone();
            control.on_message(Box::new(move |msg| {
                let v: Value = serde_json::from_slice(&msg.data).unwrap_or(Value::Null);
                replies.send_modify(|s| s.control.push(v));
                Box::pin(async {})
            }));
        }

        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request().unwrap();
        if let Some(t) = token {
            let bearer = format!("Bearer {t}").parse().unwrap();
            request.headers_mut().insert("authorization", bearer);
        }
        if let Some(c) = cookie {
            request.headers_mut().insert("cookie", c.parse().unwrap());
        }
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("signaling connects");
        let (mut ws_tx, mut ws_rx) = ws.split();
        let (out_tx, mut out_rx) = mpsc::channel::<String>(64);
        let writer = tokio::spawn(async move {
            while let Some(text) = out_rx.recv().await {
                if ws_tx.send(Message::text(text)).await.is_err() {
                    return;
                }
            }
        });
        let candidates = out_tx.clone();
        pc.on_ice_candidate(Box::new(move |c: Option<RTCIceCandidate>| {
            let candidates = candidates.clone();
            Box::pin(async move {
                if let Some(init) = c.and_then(|c| c.to_json().ok()) {
                    let payload = json!({ "candidate": init.candidate, "sdpMid": init.sdp_mid, "sdpMLineIndex": init.sdp_mline_index });
                    let _ = candidates.send(message::from_viewer("ICE_CANDIDATE", &payload)).await;
                }
            })
        }));
        let offer = pc.create_offer(None).await.unwrap();
        pc.set_local_description(offer.clone()).await.unwrap();
        out_tx
            .send(message::from_viewer(
                "SDP_OFFER",
                &json!({ "type": "offer", "sdp": offer.sdp }),
            ))
            .await
            .unwrap();
        let weak = Arc::downgrade(&pc);
        let refusals = seen_tx;
        let reader = tokio::spawn(async move {
            while let Some(Ok(Message::Text(text))) = ws_rx.next().await {
                let Ok((kind, payload)) = message::viewer_payload(&text) else {
                    continue;
                };
                let Some(pc) = weak.upgrade() else { return };
                match kind.as_str() {
                    "SDP_ANSWER" => {
                        let sdp = payload["sdp"].as_str().unwrap_or_default().to_owned();
                        pc.set_remote_description(RTCSessionDescription::answer(sdp).unwrap())
                            .await
                            .unwrap();
                    }
                    "ICE_CANDIDATE" => {
                        let init: RTCIceCandidateInit = serde_json::from_value(payload).unwrap();
                        let _ = pc.add_ice_candidate(init).await;
                    }
                    _ => {
                        let reason = payload["description"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned();
                        refusals.send_modify(|s| s.refused = Some(reason));
                    }
                }
            }
        });
        Viewer {
            pc,
            seen,
            decoded,
            control,
            video_ssrc,
            _decoder: pipeline,
            _audio_decoder: audio_pipeline,
            mic,
            next_packet: Mutex::new(None),
            signaling: vec![writer, reader],
        }
    }

    /// Waits until `f` holds for what this viewer saw, or `limit` passes.
    pub async fn wait(&mut self, limit: Duration, f: impl Fn(&Seen) -> bool) -> Seen {
        let _ = tokio::time::timeout(limit, self.seen.wait_for(|s| f(s))).await;
        self.seen.borrow().clone()
    }

    /// Waits for the first decoded picture; fails the test, naming `what`, when the
    /// viewer was refused or got no video within 10 s.
    pub async fn expect_playing(&mut self, what: &str) {
        let seen = self
            .wait(Duration::from_secs(10), |s| {
                s.decoded >= 1 || s.refused.is_some()
            })
            .await;
        assert!(seen.refused.is_none(), "{what} refused: {:?}", seen.refused);
        assert!(seen.decoded >= 1, "{what} got no video");
    }

    pub fn decoded(&self) -> u64 {
        self.decoded.load(Ordering::Relaxed)
    }

    /// Sends Opus packets (20 ms each) on the microphone track at real-time pace;
    /// returns when each was handed to the transport, in order.
    pub async fn speak(&self, packets: &[Bytes]) -> Vec<Instant> {
        let mic = self.mic.as_ref().expect("viewer offered to talk");
        let frame = Duration::from_millis(20);
        let now = tokio::time::Instant::now();
        let due = *self.next_packet.lock().unwrap();
        // Go on from the last call's schedule unless the viewer paused for a while.
        let mut at = due.filter(|d| *d + frame * 5 > now).unwrap_or(now);
        let mut sent = Vec::with_capacity(packets.len());
        for p in packets {
            tokio::time::sleep_until(at).await;
            at += frame;
            sent.push(Instant::now());
            let sample = webrtc::media::Sample {
                data: p.clone(),
                duration: Duration::from_millis(20),
                ..Default::default()
            };
            let _ = mic.write_sample(&sample).await;
        }
        *self.next_packet.lock().unwrap() = Some(at);
        sent
    }

    /// Sends a command on the `control` data channel.
    pub async fn command(&self, body: &str) {
        let control = self.control.as_ref().expect("viewer has a control channel");
        control.send_text(body.to_owned()).await.unwrap();
    }

    /// Says goodbye as RFC 3550 §6.6 has it: a compound RTCP packet, a receiver report
    /// about the camera's video followed by a BYE.
    pub async fn say_bye(&self) {
        use webrtc::rtcp::goodbye::Goodbye;
        use webrtc::rtcp::receiver_report::ReceiverReport;
        use webrtc::rtcp::reception_report::ReceptionReport;
        const OURS: u32 = 0x5EE_0B1E;
        let theirs = self.video_ssrc.load(Ordering::Relaxed);
        assert_ne!(theirs, 0, "say_bye before the video track arrived");
        let rr = ReceiverReport {
            ssrc: OURS,
            reports: vec![ReceptionReport {
                ssrc: theirs,
                ..Default::default()
            }],
            ..Default::default()
        };
        let bye = Goodbye {
            sources: vec![OURS],
            reason: "leaving".into(),
        };
        self.pc
            .write_rtcp(&[Box::new(rr), Box::new(bye)])
            .await
            .unwrap();
    }

    /// Closes only the signaling socket, leaving the peer connection as it is.
    pub fn close_signaling(&self) {
        for t in &self.signaling {
            t.abort();
        }
    }

    pub async fn close(self) {
        let _ = self.pc.close().await;
        for t in &self.signaling {
            t.abort();
        }
    }
}
