//! KVS control-plane calls for signaling: find (or create) the channel, its WSS and HTTPS
//! endpoints for the MASTER role, and the ICE servers (STUN/TURN) for viewers' sessions.

use std::time::Duration;

use aws_sdk_kinesisvideo::types::{
    ChannelProtocol, ChannelRole, ChannelType, SingleMasterChannelEndpointConfiguration,
    SingleMasterConfiguration,
};
use aws_sdk_kinesisvideosignaling::types::Service;
use tracing::info;
use webrtc::ice_transport::ice_server::RTCIceServer;

use crate::aws::{Aws, AwsError};

/// Messages for an offline master are kept this long by the service.
const MESSAGE_TTL_S: i32 = 60;
/// Used when the service gives no TTL for its ICE servers.
const DEFAULT_ICE_TTL: Duration = Duration::from_secs(300);
const MAX_ICE_TTL: Duration = Duration::from_secs(3600);

/// A signaling channel ready for a master connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub arn: String,
    pub wss: String,
    pub https: String,
}

/// Describes the channel, creating it when missing, and fetches its endpoints.
pub async fn resolve(aws: &Aws, name: &str) -> Result<Channel, AwsError> {
    let kv = aws.kinesis_video();
    let arn = match kv
        .describe_signaling_channel()
        .channel_name(name)
        .send()
        .await
    {
        Ok(out) => out
            .channel_info()
            .and_then(|c| c.channel_arn())
            .map(str::to_owned)
            .ok_or_else(|| AwsError::missing("DescribeSignalingChannel", "channel ARN"))?,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            info!(channel = name, "creating the signaling channel");
            let out = kv
                .create_signaling_channel()
                .channel_name(name)
                .channel_type(ChannelType::SingleMaster)
                .single_master_configuration(
                    SingleMasterConfiguration::builder()
                        .message_ttl_seconds(MESSAGE_TTL_S)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| AwsError::call("CreateSignalingChannel", &e))?;
            out.channel_arn()
                .map(str::to_owned)
                .ok_or_else(|| AwsError::missing("CreateSignalingChannel", "channel ARN"))?
        }
        Err(e) => return Err(AwsError::call("DescribeSignalingChannel", &e)),
    };
    let out = kv
        .get_signaling_channel_endpoint()
        .channel_arn(&arn)
        .single_master_channel_endpoint_configuration(
            SingleMasterChannelEndpointConfiguration::builder()
                .protocols(ChannelProtocol::Wss)
                .protocols(ChannelProtocol::Https)
                .role(ChannelRole::Master)
                .build(),
        )
        .send()
        .await
        .map_err(|e| AwsError::call("GetSignalingChannelEndpoint", &e))?;
    let endpoint = |p: ChannelProtocol| {
        out.resource_endpoint_list()
            .iter()
            .find(|e| e.protocol() == Some(&p))
            .and_then(|e| e.resource_endpoint())
            .map(str::to_owned)
            .ok_or_else(|| {
                AwsError::missing("GetSignalingChannelEndpoint", &format!("{p} endpoint"))
            })
    };
    Ok(Channel {
        wss: endpoint(ChannelProtocol::Wss)?,
        https: endpoint(ChannelProtocol::Https)?,
        arn,
    })
}

/// ICE servers for new sessions and how long they stay valid: KVS's STUN server plus one
/// TURN server over UDP (fewer candidates, faster gathering; webrtc-rs has no TURN/TCP).
pub async fn ice_servers(
    aws: &Aws,
    channel: &Channel,
) -> Result<(Vec<RTCIceServer>, Duration), AwsError> {
    let out = aws
        .signaling(&channel.https)
        .get_ice_server_config()
        .channel_arn(&channel.arn)
        .service(Service::Turn)
        .send()
        .await
        .map_err(|e| AwsError::call("GetIceServerConfig", &e))?;
    let mut servers = Vec::new();
    if !aws.is_local() {
        servers.push(RTCIceServer {
            urls: vec![format!(
                "stun:stun.kinesisvideo.{}.amazonaws.com:443",
                aws.region()
            )],
            ..Default::default()
        });
    }
    let mut ttl = DEFAULT_ICE_TTL;
    if let Some(turn) = out.ice_server_list().first() {
        let urls: Vec<String> = turn
            .uris()
            .iter()
            .filter(|u| u.starts_with("turn:") && !u.contains("transport=tcp"))
            .cloned()
            .collect();
        if !urls.is_empty() {
            servers.push(RTCIceServer {
                urls,
                username: turn.username().unwrap_or_default().to_owned(),
                credential: turn.password().unwrap_or_default().to_owned(),
            });
        }
        if let Some(s) = turn.ttl().filter(|s| *s > 0) {
            // Whatever the service says, look again within the hour.
            ttl = Duration::from_secs(s.unsigned_abs().into()).min(MAX_ICE_TTL);
        }
    }
    Ok((servers, ttl))
}
