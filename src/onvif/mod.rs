//! ONVIF Profile S, the part NVRs and Home Assistant use to add a camera: the Device and
//! Media services (SOAP 1.2 at `/onvif/device_service` and `/onvif/media_service` on the
//! local HTTP server, authenticated by WS-Security UsernameToken rather than the web
//! login) and WS-Discovery (`discovery`). The stream it points at is the RTSP server's.
//!
//! `Onvif::answer` is pure: request bytes, the address the client used and the time in;
//! an HTTP status and a SOAP body out. Bad XML gets a fault, never a panic.

pub mod answers;
pub mod auth;
mod call;
pub mod discovery;
pub mod events;
pub mod identity;
pub mod soap;

use chrono::{DateTime, Utc};

pub use answers::{Camera, Reached};

use soap::{TDS, TEV, TRT, WSNT};

pub use call::{Answer, Call, Reply, Scene};

/// The ONVIF services of one camera.
#[derive(Debug)]
pub struct Onvif {
    pub camera: Camera,
    /// User and password every operation but the pre-authentication ones needs;
    /// `None`: none (a camera only this machine reaches).
    pub credentials: Option<(String, String)>,
    /// The Events service's pull-point subscriptions.
    pub subscriptions: events::Subscriptions,
    /// Tokens seen, so none is good twice.
    replays: auth::Replays,
}

/// Whether the ONVIF Core spec lets anyone call this operation (access class PRE_AUTH).
fn pre_auth(namespace: &str, op: &str) -> bool {
    matches!(
        (namespace, op),
        (
            TDS,
            "GetSystemDateAndTime"
                | "GetCapabilities"
                | "GetServices"
                | "GetHostname"
                | "GetWsdlUrl"
                | "GetEndpointReference"
        ) | (TDS | TRT | TEV, "GetServiceCapabilities")
    )
}

impl Onvif {
    pub fn new(camera: Camera, credentials: Option<(String, String)>) -> Self {
        Self {
            camera,
            credentials,
            subscriptions: events::Subscriptions::default(),
            replays: auth::Replays::default(),
        }
    }

    /// Answers one SOAP request of the Device or Media service (never waits).
    pub fn answer(&self, body: &[u8], at: &Reached, now: DateTime<Utc>) -> Answer {
        let call = Call {
            body,
            at,
            subscription: None,
            scene: Scene::default(),
            may_wait: false,
            again: false,
        };
        match self.reply(&call, now) {
            Reply::Now(a) => a,
            Reply::Wait(_) => Answer::fault(500, "env:Receiver", "ter:Action", "no answer"),
        }
    }

    /// Answers one SOAP request of any service.
    pub fn reply(&self, call: &Call, now: DateTime<Utc>) -> Reply {
        let request = match soap::parse(call.body) {
            Ok(r) => r,
            Err(e) => {
                let f = Answer::fault(400, "env:Sender", "ter:WellFormed", &e.to_string());
                return Reply::Now(f);
            }
        };
        let op = request.operation.as_str();
        let open = pre_auth(&request.namespace, op);
        if !open && !call.again && !self.authorized(&request, now) {
            let reason = "Sender not Authorized";
            let f = Answer::fault(400, "env:Sender", "ter:NotAuthorized", reason);
            return Reply::Now(f);
        }
        if matches!(request.namespace.as_str(), TEV | WSNT) {
            return events::reply(&self.subscriptions, &request, call, &self.camera, now);
        }
        Reply::Now(self.device_or_media(&request, call.at, now))
    }

    fn device_or_media(&self, request: &soap::Request, at: &Reached, now: DateTime<Utc>) -> Answer {
        let op = request.operation.as_str();
        let c = &self.camera;
        let body = match (request.namespace.as_str(), op) {
            (TDS, "GetSystemDateAndTime") => answers::system_date_and_time(now),
            (TDS, "GetDeviceInformation") => answers::device_information(c),
            (TDS, "GetCapabilities") => answers::capabilities(c, at),
            (TDS, "GetServices") => {
                let with = request.argument("IncludeCapability") == Some("true");
                answers::services(c, at, with)
            }
            (TDS, "GetServiceCapabilities") => answers::device_service_capabilities(),
            (TDS, "GetNetworkInterfaces") => answers::network_interfaces(c, at),
            (TDS, "GetScopes") => answers::get_scopes(c),
            (TDS, "GetHostname") => answers::hostname(c),
            (TRT, "GetServiceCapabilities") => answers::media_service_capabilities(),
            (TRT, "GetProfiles") => answers::profiles(c),
            (TRT, "GetVideoSources") => answers::video_sources(c),
            (TRT, "GetProfile" | "GetStreamUri" | "GetSnapshotUri") => {
                if request.argument("ProfileToken") != Some(answers::PROFILE) {
                    return Answer::fault(
                        400,
                        "env:Sender",
                        "ter:InvalidArgVal",
                        &format!(
                            "no such profile; the camera's one profile is \"{}\"",
                            answers::PROFILE
                        ),
                    );
                }
                match op {
                    "GetProfile" => answers::get_profile(c),
                    "GetStreamUri" => answers::media_uri("GetStreamUriResponse", &at.stream_uri(c)),
                    _ => answers::media_uri("GetSnapshotUriResponse", &at.snapshot_uri(c)),
                }
            }
            _ => {
                return Answer::fault(
                    500,
                    "env:Receiver",
                    "ter:ActionNotSupported",
                    &format!("Optional Action Not Implemented: {op}"),
                );
            }
        };
        Answer::ok(body)
    }

    fn authorized(&self, request: &soap::Request, now: DateTime<Utc>) -> bool {
        match (&self.credentials, &request.token) {
            (None, _) => true,
            (Some((user, password)), Some(token)) => {
                auth::verify(token, user, password) && self.replays.fresh(token, now)
            }
            (Some(_), None) => false,
        }
    }

    /// Whether HTTP Basic credentials (`user:password`, decoded) are the camera's: the
    /// snapshot URI's authentication, as NVRs fetch it.
    pub fn basic_ok(&self, user: &str, password: &str) -> bool {
        use subtle::ConstantTimeEq;
        match &self.credentials {
            None => true,
            Some((u, p)) => u == user && bool::from(p.as_bytes().ct_eq(password.as_bytes())),
        }
    }
}

#[cfg(test)]
mod tests;
