//! Talk-back on the live side: a viewer's audio track goes to the speaker, and its `talk`
//! commands on the data channel to the floor (`speaker`). Both signalings share the one
//! master, so LAN and KVS viewers share one floor.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::util::Marshal;

use crate::commands::{CommandError, Outcome, Reply, Request};
use crate::speaker::{SpeakerHandle, TalkError, Talker};

/// Sends the viewer's audio (RTP, as received) to the speaker until the session stops;
/// the speaker plays it only while this viewer holds the floor.
pub fn receive(
    pc: &RTCPeerConnection,
    serial: u64,
    speaker: SpeakerHandle,
    stop: CancellationToken,
) {
    pc.on_track(Box::new(move |track, _, _| {
        if track.kind() == RTPCodecType::Audio {
            let (speaker, stop) = (speaker.clone(), stop.clone());
            let track = Arc::clone(&track);
            tokio::spawn(async move {
                loop {
                    let read = tokio::select! {
                        () = stop.cancelled() => break,
                        read = track.read_rtp() => read,
                    };
                    let Ok((packet, _)) = read else { break };
                    if let Ok(bytes) = packet.marshal() {
                        speaker.push(serial, bytes);
                    }
                }
            });
        }
        Box::pin(async {})
    }));
}

/// Runs a `talk` command from viewer `serial` (named `name`, else its client id).
pub async fn command(
    speaker: Option<&SpeakerHandle>,
    serial: u64,
    client_id: &str,
    req: &Request,
    start: bool,
    name: Option<&str>,
) -> Reply {
    let Some(speaker) = speaker else {
        return Reply::error(req, &CommandError::NoSpeaker);
    };
    let who = Talker {
        serial,
        name: name.unwrap_or(client_id).to_owned(),
    };
    match speaker.talk(who, start).await {
        Ok(()) => Reply::ok(req, &Outcome::Talk { talking: start }),
        Err(e @ TalkError::Busy { .. }) => {
            let mut reply = Reply::error(req, &CommandError::Talk(e.to_string()));
            if let TalkError::Busy { holder } = e {
                reply.result = Some(serde_json::json!({ "talking": false, "holder": holder }));
            }
            reply
        }
        Err(e) => Reply::error(req, &CommandError::Talk(e.to_string())),
    }
}
