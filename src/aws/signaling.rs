//! KVS control-plane calls for WebRTC signaling: find (or create) the channel, its WSS and
//! HTTPS endpoints for the MASTER role, and the ICE servers (STUN/TURN) the service offers
//! for viewers' sessions. Which of them a WebRTC stack can use is for `live` to decide.

use std::time::Duration;

use super::{Aws, AwsError};
use aws_sdk_kinesisvideo::types::{
    ChannelProtocol, ChannelRole, ChannelType, SingleMasterChannelEndpointConfiguration,
    SingleMasterConfiguration,
};
use aws_sdk_kinesisvideosignaling::types::Service;
use tracing::info;

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

/// A STUN or TURN server, as the service describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IceServer {
    /// `stun:`, `turn:` or `turns:` URIs, `?transport=udp|tcp` as given.
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// ICE servers for new sessions and how long they stay valid: KVS's STUN server (not
/// against a local fake) plus every TURN server of the channel with all its URIs; they
/// stay valid as long as the shortest-lived of them.
pub async fn ice_servers(
    aws: &Aws,
    channel: &Channel,
) -> Result<(Vec<IceServer>, Duration), AwsError> {
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
        servers.push(IceServer {
            urls: vec![format!(
                "stun:stun.kinesisvideo.{}.amazonaws.com:443",
                aws.region()
            )],
            ..Default::default()
        });
    }
    let mut ttl: Option<Duration> = None;
    for turn in out.ice_server_list() {
        servers.push(IceServer {
            urls: turn.uris().to_vec(),
            username: turn.username().unwrap_or_default().to_owned(),
            credential: turn.password().unwrap_or_default().to_owned(),
        });
        if let Some(s) = turn.ttl().filter(|s| *s > 0) {
            // Whatever the service says, look again within the hour.
            let this = Duration::from_secs(s.unsigned_abs().into()).min(MAX_ICE_TTL);
            ttl = Some(ttl.map_or(this, |t| t.min(this)));
        }
    }
    Ok((servers, ttl.unwrap_or(DEFAULT_ICE_TTL)))
}
