//! The bodies of the Device and Media service answers (ONVIF Core and Media 1.0 specs),
//! from what the camera is. Pure: the caller gives the time and the address the client
//! used.

use chrono::{DateTime, Datelike, Timelike, Utc};

use super::soap::esc;

/// What the answers say about the camera.
#[derive(Debug, Clone, PartialEq)]
pub struct Camera {
    pub name: String,
    pub model: String,
    pub firmware: String,
    pub serial: String,
    /// The stable `urn:uuid:…` of the device (WS-Discovery's endpoint reference).
    pub urn: String,
    /// A stable MAC-like address; Home Assistant takes it as the device's identity.
    pub mac: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
    pub gov_length: u32,
    /// AAC sample rate (Hz) and bitrate (kbit/s), when the camera has sound.
    pub audio: Option<(u32, u32)>,
    pub rtsp_port: u16,
    pub rtsp_path: String,
    /// `http` or `https`: the scheme of the local HTTP server.
    pub scheme: &'static str,
}

/// The one media profile's token.
pub const PROFILE: &str = "main";

/// Where the client reached us: the `Host` header's host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reached {
    /// Host name or address, `[…]` around IPv6 as in a URL.
    pub host: String,
    pub port: u16,
}

impl Reached {
    fn base(&self, c: &Camera) -> String {
        format!("{}://{}:{}", c.scheme, self.host, self.port)
    }
    pub fn device_xaddr(&self, c: &Camera) -> String {
        format!("{}/onvif/device_service", self.base(c))
    }
    pub fn media_xaddr(&self, c: &Camera) -> String {
        format!("{}/onvif/media_service", self.base(c))
    }
    pub fn events_xaddr(&self, c: &Camera) -> String {
        format!("{}/onvif/events_service", self.base(c))
    }
    /// Subscriptions live under this, one path each.
    pub fn subscription_base(&self, c: &Camera) -> String {
        format!("{}/onvif/subscription", self.base(c))
    }
    pub fn stream_uri(&self, c: &Camera) -> String {
        format!("rtsp://{}:{}/{}", self.host, c.rtsp_port, c.rtsp_path)
    }
    pub fn snapshot_uri(&self, c: &Camera) -> String {
        format!("{}/onvif/snapshot.jpg", self.base(c))
    }
}

fn date_time(now: DateTime<Utc>) -> String {
    format!(
        "<tt:Time><tt:Hour>{}</tt:Hour><tt:Minute>{}</tt:Minute><tt:Second>{}</tt:Second></tt:Time>\
         <tt:Date><tt:Year>{}</tt:Year><tt:Month>{}</tt:Month><tt:Day>{}</tt:Day></tt:Date>",
        now.hour(),
        now.minute(),
        now.second(),
        now.year(),
        now.month(),
        now.day()
    )
}

pub fn system_date_and_time(now: DateTime<Utc>) -> String {
    format!(
        "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>\
         <tt:DateTimeType>NTP</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>\
         <tt:TimeZone><tt:TZ>UTC0</tt:TZ></tt:TimeZone>\
         <tt:UTCDateTime>{dt}</tt:UTCDateTime><tt:LocalDateTime>{dt}</tt:LocalDateTime>\
         </tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>",
        dt = date_time(now)
    )
}

pub fn device_information(c: &Camera) -> String {
    format!(
        "<tds:GetDeviceInformationResponse><tds:Manufacturer>edgecam</tds:Manufacturer>\
         <tds:Model>{}</tds:Model><tds:FirmwareVersion>{}</tds:FirmwareVersion>\
         <tds:SerialNumber>{}</tds:SerialNumber><tds:HardwareId>edgecam</tds:HardwareId>\
         </tds:GetDeviceInformationResponse>",
        esc(&c.model),
        esc(&c.firmware),
        esc(&c.serial)
    )
}

pub fn capabilities(c: &Camera, at: &Reached) -> String {
    // The schema's order: Analytics, Device, Events, Imaging, Media, PTZ.
    format!(
        "<tds:GetCapabilitiesResponse><tds:Capabilities>\
         <tt:Device><tt:XAddr>{}</tt:XAddr></tt:Device>\
         <tt:Events><tt:XAddr>{}</tt:XAddr>\
         <tt:WSSubscriptionPolicySupport>false</tt:WSSubscriptionPolicySupport>\
         <tt:WSPullPointSupport>true</tt:WSPullPointSupport>\
         <tt:WSPausableSubscriptionManagerInterfaceSupport>false</tt:WSPausableSubscriptionManagerInterfaceSupport>\
         </tt:Events>\
         <tt:Media><tt:XAddr>{}</tt:XAddr><tt:StreamingCapabilities>\
         <tt:RTPMulticast>false</tt:RTPMulticast><tt:RTP_TCP>true</tt:RTP_TCP>\
         <tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP></tt:StreamingCapabilities></tt:Media>\
         </tds:Capabilities></tds:GetCapabilitiesResponse>",
        esc(&at.device_xaddr(c)),
        esc(&at.events_xaddr(c)),
        esc(&at.media_xaddr(c))
    )
}

fn media_capabilities() -> &'static str {
    "<trt:Capabilities SnapshotUri=\"true\" Rotation=\"false\" VideoSourceMode=\"false\" OSD=\"false\">\
     <trt:ProfileCapabilities MaximumNumberOfProfiles=\"1\"/>\
     <trt:StreamingCapabilities RTPMulticast=\"false\" RTP_TCP=\"true\" RTP_RTSP_TCP=\"true\" \
     NonAggregateControl=\"false\" NoRTSPStreaming=\"false\"/></trt:Capabilities>"
}

pub fn services(c: &Camera, at: &Reached, with_capabilities: bool) -> String {
    let service = |ns: &str, xaddr: String, caps: &str| {
        let caps = if with_capabilities {
            format!("<tds:Capabilities>{caps}</tds:Capabilities>")
        } else {
            String::new()
        };
        format!(
            "<tds:Service><tds:Namespace>{ns}</tds:Namespace><tds:XAddr>{}</tds:XAddr>{caps}\
             <tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version></tds:Service>",
            esc(&xaddr)
        )
    };
    format!(
        "<tds:GetServicesResponse>{}{}{}</tds:GetServicesResponse>",
        service(super::soap::TDS, at.device_xaddr(c), device_capabilities()),
        service(super::soap::TRT, at.media_xaddr(c), media_capabilities()),
        service(super::soap::TEV, at.events_xaddr(c), events_capabilities()),
    )
}

/// The events service's capabilities.
pub fn events_capabilities() -> &'static str {
    "<tev:Capabilities WSSubscriptionPolicySupport=\"false\" WSPullPointSupport=\"true\" \
     WSPausableSubscriptionManagerInterfaceSupport=\"false\" MaxNotificationProducers=\"0\" \
     MaxPullPoints=\"16\"/>"
}

/// The device service's capabilities (GetServices and GetServiceCapabilities).
fn device_capabilities() -> &'static str {
    "<tds:Capabilities><tds:Network IPFilter=\"false\" ZeroConfiguration=\"false\" \
     IPVersion6=\"false\" DynDNS=\"false\"/>\
     <tds:Security UsernameToken=\"true\" HttpDigest=\"false\"/>\
     <tds:System DiscoveryResolve=\"false\" DiscoveryBye=\"true\" RemoteDiscovery=\"false\" \
     SystemBackup=\"false\" SystemLogging=\"false\" FirmwareUpgrade=\"false\"/></tds:Capabilities>"
}

pub fn device_service_capabilities() -> String {
    format!(
        "<tds:GetServiceCapabilitiesResponse>{}</tds:GetServiceCapabilitiesResponse>",
        device_capabilities()
    )
}

pub fn media_service_capabilities() -> String {
    format!(
        "<trt:GetServiceCapabilitiesResponse>{}</trt:GetServiceCapabilitiesResponse>",
        media_capabilities()
    )
}

pub fn network_interfaces(c: &Camera, at: &Reached) -> String {
    let ipv4 = at
        .host
        .parse::<std::net::Ipv4Addr>()
        .map(|ip| {
            format!(
                "<tt:IPv4><tt:Enabled>true</tt:Enabled><tt:Config><tt:Manual>\
                 <tt:Address>{ip}</tt:Address><tt:PrefixLength>24</tt:PrefixLength></tt:Manual>\
                 <tt:DHCP>false</tt:DHCP></tt:Config></tt:IPv4>"
            )
        })
        .unwrap_or_default();
    format!(
        "<tds:GetNetworkInterfacesResponse><tds:NetworkInterfaces token=\"eth0\">\
         <tt:Enabled>true</tt:Enabled><tt:Info><tt:Name>eth0</tt:Name>\
         <tt:HwAddress>{}</tt:HwAddress><tt:MTU>1500</tt:MTU></tt:Info>{ipv4}\
         </tds:NetworkInterfaces></tds:GetNetworkInterfacesResponse>",
        esc(&c.mac)
    )
}

/// The discovery scopes (also the answer to GetScopes).
pub fn scopes(c: &Camera) -> Vec<String> {
    let word = |s: &str| s.replace(|ch: char| !ch.is_ascii_alphanumeric() && ch != '-', "_");
    vec![
        "onvif://www.onvif.org/Profile/Streaming".into(),
        "onvif://www.onvif.org/type/video_encoder".into(),
        format!("onvif://www.onvif.org/name/{}", word(&c.name)),
        format!("onvif://www.onvif.org/hardware/{}", word(&c.model)),
    ]
}

pub fn get_scopes(c: &Camera) -> String {
    let items: String = scopes(c)
        .iter()
        .map(|s| {
            format!(
                "<tds:Scopes><tt:ScopeDef>Fixed</tt:ScopeDef><tt:ScopeItem>{}</tt:ScopeItem></tds:Scopes>",
                esc(s)
            )
        })
        .collect();
    format!("<tds:GetScopesResponse>{items}</tds:GetScopesResponse>")
}

pub fn hostname(c: &Camera) -> String {
    format!(
        "<tds:GetHostnameResponse><tds:HostnameInformation><tt:FromDHCP>false</tt:FromDHCP>\
         <tt:Name>{}</tt:Name></tds:HostnameInformation></tds:GetHostnameResponse>",
        esc(&c.name)
    )
}

fn profile(c: &Camera, element: &str) -> String {
    let audio = c
        .audio
        .map(|(rate, kbps)| {
            format!(
                "<tt:AudioEncoderConfiguration token=\"aac\"><tt:Name>AAC</tt:Name>\
                 <tt:UseCount>1</tt:UseCount><tt:Encoding>AAC</tt:Encoding>\
                 <tt:Bitrate>{kbps}</tt:Bitrate><tt:SampleRate>{}</tt:SampleRate>\
                 {}<tt:SessionTimeout>PT60S</tt:SessionTimeout></tt:AudioEncoderConfiguration>",
                rate / 1000,
                multicast()
            )
        })
        .unwrap_or_default();
    format!(
        "<{element} token=\"{PROFILE}\" fixed=\"true\"><tt:Name>main</tt:Name>\
         <tt:VideoSourceConfiguration token=\"vsc0\"><tt:Name>camera</tt:Name><tt:UseCount>1</tt:UseCount>\
         <tt:SourceToken>vs0</tt:SourceToken>\
         <tt:Bounds x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\"/></tt:VideoSourceConfiguration>\
         <tt:VideoEncoderConfiguration token=\"h264\"><tt:Name>H264</tt:Name><tt:UseCount>1</tt:UseCount>\
         <tt:Encoding>H264</tt:Encoding>\
         <tt:Resolution><tt:Width>{w}</tt:Width><tt:Height>{h}</tt:Height></tt:Resolution>\
         <tt:Quality>5</tt:Quality><tt:RateControl><tt:FrameRateLimit>{fps}</tt:FrameRateLimit>\
         <tt:EncodingInterval>1</tt:EncodingInterval><tt:BitrateLimit>{kbps}</tt:BitrateLimit></tt:RateControl>\
         <tt:H264><tt:GovLength>{gov}</tt:GovLength><tt:H264Profile>Baseline</tt:H264Profile></tt:H264>\
         {mc}<tt:SessionTimeout>PT60S</tt:SessionTimeout></tt:VideoEncoderConfiguration>{audio}</{element}>",
        w = c.width,
        h = c.height,
        fps = c.fps,
        kbps = c.bitrate_kbps,
        gov = c.gov_length,
        mc = multicast(),
    )
}

fn multicast() -> &'static str {
    "<tt:Multicast><tt:Address><tt:Type>IPv4</tt:Type><tt:IPv4Address>0.0.0.0</tt:IPv4Address>\
     </tt:Address><tt:Port>0</tt:Port><tt:TTL>0</tt:TTL><tt:AutoStart>false</tt:AutoStart></tt:Multicast>"
}

pub fn profiles(c: &Camera) -> String {
    format!(
        "<trt:GetProfilesResponse>{}</trt:GetProfilesResponse>",
        profile(c, "trt:Profiles")
    )
}

pub fn get_profile(c: &Camera) -> String {
    format!(
        "<trt:GetProfileResponse>{}</trt:GetProfileResponse>",
        profile(c, "trt:Profile")
    )
}

pub fn video_sources(c: &Camera) -> String {
    format!(
        "<trt:GetVideoSourcesResponse><trt:VideoSources token=\"vs0\">\
         <tt:Framerate>{}</tt:Framerate><tt:Resolution><tt:Width>{}</tt:Width>\
         <tt:Height>{}</tt:Height></tt:Resolution></trt:VideoSources></trt:GetVideoSourcesResponse>",
        c.fps, c.width, c.height
    )
}

/// GetStreamUri's and GetSnapshotUri's answer: `element` is the response's name.
pub fn media_uri(element: &str, uri: &str) -> String {
    format!(
        "<trt:{element}><trt:MediaUri><tt:Uri>{}</tt:Uri>\
         <tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>\
         <tt:InvalidAfterReboot>false</tt:InvalidAfterReboot>\
         <tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:{element}>",
        esc(uri)
    )
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub fn camera() -> Camera {
        Camera {
            name: "porch".into(),
            model: "edgecam camera".into(),
            firmware: "1.2.3".into(),
            serial: "porch-1".into(),
            urn: "urn:uuid:00000000-0000-5000-8000-000000000000".into(),
            mac: "02:00:00:00:00:01".into(),
            width: 1280,
            height: 720,
            fps: 15,
            bitrate_kbps: 2000,
            gov_length: 30,
            audio: Some((48_000, 64)),
            rtsp_port: 8554,
            rtsp_path: "live".into(),
            scheme: "http",
        }
    }

    #[test]
    fn addresses_follow_the_host_the_client_used() {
        let c = camera();
        let at = Reached {
            host: "192.168.1.20".into(),
            port: 8080,
        };
        assert_eq!(at.stream_uri(&c), "rtsp://192.168.1.20:8554/live");
        assert_eq!(
            at.device_xaddr(&c),
            "http://192.168.1.20:8080/onvif/device_service"
        );
        let caps = capabilities(&c, &at);
        assert!(caps.contains("<tt:XAddr>http://192.168.1.20:8080/onvif/media_service</tt:XAddr>"));
        assert!(network_interfaces(&c, &at).contains("<tt:Address>192.168.1.20</tt:Address>"));
    }

    #[test]
    fn the_profile_is_h264_at_the_camera_s_size_with_aac() {
        let p = profiles(&camera());
        assert!(p.contains("<trt:Profiles token=\"main\""), "{p}");
        assert!(p.contains("<tt:Encoding>H264</tt:Encoding>"));
        assert!(p.contains("<tt:Width>1280</tt:Width>"));
        assert!(p.contains("<tt:Encoding>AAC</tt:Encoding>"));
        assert!(p.contains("<tt:SampleRate>48</tt:SampleRate>"));
    }
}
