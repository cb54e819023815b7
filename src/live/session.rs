//! One viewer: its peer connection, its own video track fed from its own frame-bus
//! subscription (so a slow viewer only loses its own frames), PLI handling and the
//! `control` data channel. All webrtc-rs use stays in `live/`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::debug;
use webrtc::api::API;
use webrtc::data_channel::data_channel_message::DataChannelMessage;
use webrtc::data_channel::RTCDataChannel;
use webrtc::ice_transport::ice_candidate::{RTCIceCandidate, RTCIceCandidateInit};
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTPCodecType};
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;
use webrtc::track::track_local::TrackLocal;

use super::events::{EventSender, Goodbye, SessionEvent};
use super::message::Candidate;
use super::pump::{drain_rtcp, pump, pump_audio, read_rtcp};
use super::{talk, LiveDeps};
use crate::commands::{self, Command, Reply};
use crate::events::TriggerKind;
use crate::speaker::SpeakerHandle;

pub struct Session {
    pub serial: u64,
    pub client_id: String,
    pc: Arc<RTCPeerConnection>,
    stop: CancellationToken,
    /// The speaker, told when this viewer leaves (it may hold the floor).
    speaker: Option<SpeakerHandle>,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("webrtc: {0}")]
    WebRtc(#[from] webrtc::Error),
    #[error("no local description after creating the answer")]
    NoAnswer,
}

impl Session {
    /// Creates the peer connection for `offer` and returns the session and its answer.
    /// A refused offer leaves nothing behind: unreadable SDP is refused before any peer
    /// connection exists, and one that fails later is closed with its tasks.
    pub async fn answer(
        api: &API,
        config: RTCConfiguration,
        client_id: &str,
        serial: u64,
        offer: String,
        deps: LiveDeps,
        events: EventSender,
    ) -> Result<(Self, String), SessionError> {
        let offered_at = Instant::now();
        let description = RTCSessionDescription::offer(offer)?;
        let session = Self {
            serial,
            client_id: client_id.to_owned(),
            pc: Arc::new(api.new_peer_connection(config).await?),
            stop: CancellationToken::new(),
            speaker: deps.speaker.clone(),
        };
        match session
            .negotiate(description, deps, events, offered_at)
            .await
        {
            Ok(sdp) => Ok((session, sdp)),
            Err(e) => {
                drop(session.close());
                Err(e)
            }
        }
    }

    /// Adds the tracks, starts their tasks and answers `offer`.
    async fn negotiate(
        &self,
        offer: RTCSessionDescription,
        deps: LiveDeps,
        events: EventSender,
        offered_at: Instant,
    ) -> Result<String, SessionError> {
        let (pc, serial, stop) = (&self.pc, self.serial, &self.stop);
        let track = Arc::new(TrackLocalStaticSample::new(
            RTCRtpCodecCapability {
                mime_type: webrtc::api::media_engine::MIME_TYPE_H264.to_owned(),
                clock_rate: 90_000,
                ..Default::default()
            },
            "video".to_owned(),
            "edgecam".to_owned(),
        ));
        let sender = pc
            .add_track(Arc::clone(&track) as Arc<dyn TrackLocal + Send + Sync>)
            .await?;
        let (connected_tx, connected) = watch::channel(false);
        // Sound goes to viewers whose offer asks for it, in the same stream as the
        // picture, so their player keeps the two in sync (RTCP sender reports map both
        // to one clock).
        let wants_audio = offers_audio(&offer.sdp);
        if let (Some(bus), true) = (&deps.audio, wants_audio) {
            let audio = Arc::new(TrackLocalStaticSample::new(
                super::opus(),
                "audio".to_owned(),
                "edgecam".to_owned(),
            ));
            let audio_sender = pc
                .add_track(Arc::clone(&audio) as Arc<dyn TrackLocal + Send + Sync>)
                .await?;
            let bye = (events.clone(), serial);
            tokio::spawn(drain_rtcp(audio_sender, bye, stop.clone()));
            tokio::spawn(pump_audio(
                audio,
                bus.clone(),
                connected.clone(),
                stop.clone(),
            ));
        }
        // The viewer may talk through the speaker: receive its audio. (The microphone's
        // track above is send-and-receive already; without one, a receive-only one.)
        if let (Some(speaker), true) = (&deps.speaker, wants_audio) {
            if deps.audio.is_none() {
                pc.add_transceiver_from_kind(
                    RTPCodecType::Audio,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Recvonly,
                        send_encodings: Vec::new(),
                    }),
                )
                .await?;
            }
            talk::receive(pc, serial, speaker.clone(), stop.clone());
        }
        let who = (serial, self.client_id.clone());
        wire_callbacks(pc, who, events.clone(), connected_tx, deps.clone());
        let bye = (events.clone(), serial);
        tokio::spawn(read_rtcp(sender, deps.clone(), bye, stop.clone()));
        tokio::spawn(pump(
            track,
            deps,
            connected,
            events,
            serial,
            offered_at,
            stop.clone(),
        ));

        pc.set_remote_description(offer).await?;
        let answer = pc.create_answer(None).await?;
        pc.set_local_description(answer).await?;
        let sdp = pc
            .local_description()
            .await
            .ok_or(SessionError::NoAnswer)?
            .sdp;
        Ok(sdp)
    }

    pub async fn add_candidate(&self, c: Candidate) -> Result<(), SessionError> {
        let init = RTCIceCandidateInit {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_mline_index,
            username_fragment: c.username_fragment,
        };
        self.pc.add_ice_candidate(init).await?;
        Ok(())
    }

    /// The type of the local candidate of the selected pair ("host", "srflx", "prflx",
    /// "relay"), once connected.
    pub async fn local_candidate_type(&self) -> Option<&'static str> {
        use webrtc::ice_transport::ice_candidate_type::RTCIceCandidateType as T;
        let pair = self
            .pc
            .sctp()
            .transport()
            .ice_transport()
            .get_selected_candidate_pair()
            .await?;
        Some(match pair.local.typ {
            T::Host => "host",
            T::Srflx => "srflx",
            T::Prflx => "prflx",
            T::Relay => "relay",
            T::Unspecified => "unspecified",
        })
    }

    /// Stops the pumps at once and closes the peer connection in the background: the
    /// close of a webrtc-rs peer connection can take a second or two (it waits on its
    /// transports), and the master must not wait on it.
    pub fn close(self) -> JoinHandle<()> {
        self.stop.cancel();
        if let Some(speaker) = &self.speaker {
            speaker.left(self.serial);
        }
        tokio::spawn(async move {
            if let Err(e) = self.pc.close().await {
                debug!(client = %self.client_id, error = %e, "closing peer connection");
            }
        })
    }
}

/// Peer-connection callbacks. They capture only channels (never the peer connection,
/// which would leak it) and a `Weak` data channel.
fn wire_callbacks(
    pc: &RTCPeerConnection,
    (serial, client_id): (u64, String),
    events: EventSender,
    connected: watch::Sender<bool>,
    deps: LiveDeps,
) {
    let ev = events.clone();
    let events_for_close = events.clone();
    pc.on_ice_candidate(Box::new(move |c: Option<RTCIceCandidate>| {
        let ev = ev.clone();
        Box::pin(async move {
            let Some(init) = c.and_then(|c| c.to_json().ok()) else {
                return;
            };
            let candidate = Candidate {
                candidate: init.candidate,
                sdp_mid: init.sdp_mid,
                sdp_mline_index: init.sdp_mline_index,
                username_fragment: init.username_fragment,
            };
            let _ = ev
                .send((serial, SessionEvent::LocalCandidate(candidate)))
                .await;
        })
    }));
    pc.on_peer_connection_state_change(Box::new(move |state| {
        let ev = events.clone();
        if state == RTCPeerConnectionState::Connected {
            connected.send_replace(true);
        }
        Box::pin(async move {
            let _ = ev.send((serial, SessionEvent::State(state))).await;
        })
    }));
    // Channels of this viewer still open: the `control` channel closing, or the last of
    // any channels, is a goodbye.
    let open = Arc::new(AtomicUsize::new(0));
    pc.on_data_channel(Box::new(move |dc: Arc<RTCDataChannel>| {
        let deps = deps.clone();
        let ev = events_for_close.clone();
        let open = Arc::clone(&open);
        let client_id = client_id.clone();
        Box::pin(async move {
            let control = dc.label() == "control";
            open.fetch_add(1, Ordering::SeqCst);
            dc.on_close(Box::new(move || {
                let ev = ev.clone();
                let last = open.fetch_sub(1, Ordering::SeqCst) == 1;
                Box::pin(async move {
                    let how = if control {
                        Goodbye::ControlClosed
                    } else {
                        Goodbye::ChannelsClosed
                    };
                    if control || last {
                        let _ = ev.send((serial, SessionEvent::Goodbye(how))).await;
                    }
                })
            }));
            if !control {
                return;
            }
            let weak: Weak<RTCDataChannel> = Arc::downgrade(&dc);
            dc.on_message(Box::new(move |msg: DataChannelMessage| {
                let (weak, deps, client_id) = (weak.clone(), deps.clone(), client_id.clone());
                Box::pin(async move {
                    let reply = control_reply(&deps, (serial, &client_id), &msg.data).await;
                    if let Some(dc) = weak.upgrade() {
                        let _ = dc.send_text(reply).await;
                    }
                })
            }));
        })
    }));
}

/// Runs one data-channel command and returns the reply JSON.
async fn control_reply(deps: &LiveDeps, (serial, client_id): (u64, &str), data: &[u8]) -> String {
    let reply = match commands::parse(data, None) {
        Err(bad) => Reply::bad_request(&bad),
        Ok(req) => {
            if let Command::Talk { start, name } = &req.command {
                talk::command(
                    deps.speaker.as_ref(),
                    serial,
                    client_id,
                    &req,
                    *start,
                    name.as_deref(),
                )
                .await
            } else {
                let result = deps
                    .commands
                    .execute(TriggerKind::DataChannel, req.command.clone())
                    .await;
                Reply::of(&req, &result)
            }
        }
    };
    serde_json::to_string(&reply).unwrap_or_default()
}

/// Whether an SDP offer has an audio section.
fn offers_audio(sdp: &str) -> bool {
    sdp.lines().any(|l| l.starts_with("m=audio "))
}
