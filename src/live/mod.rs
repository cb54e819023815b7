//! Live view: a WebRTC master serving up to `max_viewers` viewers, found through LAN
//! signaling (a WebSocket on the local HTTP server) or KVS signaling. Both transports
//! speak the same messages (`message`) to the same master over two channels: `Inbound`
//! into the master, `Outbound` out of it. All webrtc-rs use is inside this module.

mod early;
mod events;
pub mod kvs;
pub mod lan;
pub mod master;
pub mod message;
mod pump;
pub mod relay;
pub mod session;
mod start;
mod talk;

use std::net::IpAddr;
use std::sync::Arc;

use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{APIBuilder, API};
use webrtc::dtls_transport::dtls_role::DTLSRole;
use webrtc::interceptor::registry::Registry;
use webrtc::rtp_transceiver::rtp_codec::{
    RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType,
};
use webrtc::rtp_transceiver::RTCPFeedback;

use crate::capture::CaptureHandle;
use crate::control::Commands;
use crate::media::{AudioBus, FrameBus};
use crate::metrics::LiveMetrics;

pub use master::MasterHandle;
pub use start::{start, LiveParts};

/// A session's ICE configuration: the servers, and relay candidates only when the
/// owner wants the camera's addresses kept from viewers (`live.relay_only`).
pub fn ice_config(
    ice_servers: Vec<webrtc::ice_transport::ice_server::RTCIceServer>,
    relay_only: bool,
) -> webrtc::peer_connection::configuration::RTCConfiguration {
    use webrtc::peer_connection::policy::ice_transport_policy::RTCIceTransportPolicy;
    webrtc::peer_connection::configuration::RTCConfiguration {
        ice_servers,
        ice_transport_policy: if relay_only {
            RTCIceTransportPolicy::Relay
        } else {
            RTCIceTransportPolicy::All
        },
        ..Default::default()
    }
}

/// The audio format offered: Opus, which WebRTC always describes as 48 kHz stereo (a
/// mono stream plays as such).
pub fn opus() -> RTCRtpCodecCapability {
    RTCRtpCodecCapability {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: Vec::new(),
    }
}

/// The only video format offered: constrained baseline, as every browser decodes.
pub const H264_FMTP: &str =
    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";

/// What viewer sessions use.
#[derive(Debug, Clone)]
pub struct LiveDeps {
    pub frames: FrameBus,
    pub capture: CaptureHandle,
    pub commands: Commands,
    pub metrics: LiveMetrics,
    /// The Opus frames, when the camera has sound.
    pub audio: Option<AudioBus>,
    /// The speaker viewers may talk through, when the camera has one.
    pub speaker: Option<crate::speaker::SpeakerHandle>,
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("webrtc set-up: {0}")]
    WebRtc(#[from] webrtc::Error),
    #[error(transparent)]
    Aws(#[from] crate::aws::AwsError),
}

/// Builds the webrtc API: H.264 only, default interceptors (NACK, RTCP reports), and
/// host candidates limited to `addresses` when given (loopback allowed only then; mDNS
/// off). With no addresses, viewers' mDNS (`.local`) candidates are resolved.
pub fn api(addresses: &[IpAddr]) -> Result<Arc<API>, LiveError> {
    let mut media = MediaEngine::default();
    let feedback = ["nack", "nack pli", "ccm fir", "goog-remb"].map(|f| {
        let (typ, parameter) = f.split_once(' ').unwrap_or((f, ""));
        RTCPFeedback {
            typ: typ.to_owned(),
            parameter: parameter.to_owned(),
        }
    });
    media.register_codec(
        RTCRtpCodecParameters {
            capability: RTCRtpCodecCapability {
                mime_type: MIME_TYPE_H264.to_owned(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: H264_FMTP.to_owned(),
                rtcp_feedback: feedback.to_vec(),
            },
            payload_type: 102,
            ..Default::default()
        },
        RTPCodecType::Video,
    )?;
    media.register_codec(
        RTCRtpCodecParameters {
            capability: opus(),
            payload_type: 111,
            ..Default::default()
        },
        RTPCodecType::Audio,
    )?;
    let registry = register_default_interceptors(Registry::new(), &mut media)?;
    let mut settings = SettingEngine::default();
    // Answer as the DTLS server: the viewer (ICE controlling) learns the connection is up
    // after the camera does, so if the camera spoke first its ClientHello would be
    // dropped and webrtc-rs retransmits only after 1 s — a whole second of first frame.
    settings.set_answering_dtls_role(DTLSRole::Server)?;
    // Take the first working pair: webrtc-rs otherwise waits 0.5 s before accepting a
    // server-reflexive pair and 1 s for a peer-reflexive one (a viewer whose first check
    // arrives before its trickled candidate), which is most of the first-frame budget.
    settings.set_srflx_acceptance_min_wait(Some(std::time::Duration::ZERO));
    settings.set_prflx_acceptance_min_wait(Some(std::time::Duration::ZERO));
    // The same for a relay pair (2 s by default), which the controlling side applies: a
    // viewer built on this API (the tests' and benches') then takes a pair through TURN
    // at once, as browsers do.
    settings.set_relay_acceptance_min_wait(Some(std::time::Duration::ZERO));
    // A viewer that vanished (phone left Wi-Fi) is noticed within ~3 s, so its place
    // among the 10 comes back quickly; keep-alives every second make that reliable.
    settings.set_ice_timeouts(
        Some(std::time::Duration::from_secs(3)),
        Some(std::time::Duration::from_secs(10)),
        Some(std::time::Duration::from_secs(1)),
    );
    if !addresses.is_empty() {
        // Pinned addresses (tests, multi-homed cameras): no mDNS socket on 0.0.0.0:5353
        // either; viewers must then send plain IP candidates.
        settings.set_ice_multicast_dns_mode(webrtc::ice::mdns::MulticastDnsMode::Disabled);
        let allowed = addresses.to_vec();
        settings.set_include_loopback_candidate(allowed.iter().any(IpAddr::is_loopback));
        settings.set_ip_filter(Box::new(move |ip| allowed.contains(&ip)));
    }
    Ok(Arc::new(
        APIBuilder::new()
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_setting_engine(settings)
            .build(),
    ))
}
