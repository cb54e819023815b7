//! WS-Discovery (2005/04) as ONVIF devices speak it: answers a Probe for
//! `dn:NetworkVideoTransmitter` (or `tds:Device`, or anything) with a ProbeMatch naming
//! the device service's address, unicast to the prober; on the network it also says
//! Hello on 239.255.255.250:3702 at start and Bye at stop.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::soap::esc;

const DISCOVERY: &str = "http://schemas.xmlsoap.org/ws/2005/04/discovery";
const ADDRESSING: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
/// The WS-Discovery multicast group and port.
pub const GROUP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(239, 255, 255, 250)), 3702);
/// The types a Probe may ask for that this device is.
const TYPES: &[&str] = &["NetworkVideoTransmitter", "Device"];

/// A Probe: its message id and what it looks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    pub message_id: String,
    pub types: Vec<String>,
    pub scopes: Vec<String>,
}

/// Reads a Probe; `None` for anything else (other discovery messages, garbage).
pub fn parse_probe(datagram: &[u8]) -> Option<Probe> {
    let text = std::str::from_utf8(datagram).ok()?;
    let mut reader = NsReader::from_str(text);
    let mut probe = Probe::default();
    let mut is_probe = false;
    let mut current = String::new();
    let mut value = String::new();
    loop {
        let (ns, event) = reader.read_resolved_event().ok()?;
        let ns_is = |want: &str| matches!(&ns, ResolveResult::Bound(n) if n.as_ref() == want);
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let local = e.local_name().as_ref().to_owned();
                if ns_is(DISCOVERY) && local == "Probe" {
                    is_probe = true;
                }
                current = if ns_is(DISCOVERY) || ns_is(ADDRESSING) {
                    local
                } else {
                    String::new()
                };
                value.clear();
            }
            Event::Text(t) => value.push_str(&t.xml10_content()),
            Event::GeneralRef(r) => value.push_str(&super::soap::reference(&r)?),
            Event::End(_) => {
                let words = || {
                    value
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                };
                match current.as_str() {
                    "MessageID" => probe.message_id = value.trim().to_owned(),
                    "Types" => probe.types = words(),
                    "Scopes" => probe.scopes = words(),
                    _ => {}
                }
                current.clear();
                value.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    is_probe.then_some(probe)
}

/// Whether this device answers `probe`: every type it asks for is one of ours (by local
/// name) and every scope is one of ours or a path-prefix of one.
pub fn matches(probe: &Probe, scopes: &[String]) -> bool {
    let types_ok = probe
        .types
        .iter()
        .all(|t| TYPES.contains(&t.rsplit(':').next().unwrap_or(t)));
    let scopes_ok = probe.scopes.iter().all(|want| {
        let want = want.trim_end_matches('/');
        scopes
            .iter()
            .any(|have| have == want || have.starts_with(&format!("{want}/")))
    });
    types_ok && scopes_ok
}

/// What the device says of itself in discovery messages.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `urn:uuid:…`, stable.
    pub urn: String,
    pub scopes: Vec<String>,
    /// The HTTP server's port and scheme, for the XAddrs.
    pub port: u16,
    pub scheme: &'static str,
}

impl Identity {
    fn xaddrs(&self, ip: IpAddr) -> String {
        format!(
            "{}://{}/onvif/device_service",
            self.scheme,
            SocketAddr::new(ip, self.port)
        )
    }

    fn body_of(&self, ip: IpAddr) -> String {
        format!(
            "<a:EndpointReference><a:Address>{}</a:Address></a:EndpointReference>\
             <d:Types>dn:NetworkVideoTransmitter tds:Device</d:Types>\
             <d:Scopes>{}</d:Scopes><d:XAddrs>{}</d:XAddrs>\
             <d:MetadataVersion>1</d:MetadataVersion>",
            esc(&self.urn),
            esc(&self.scopes.join(" ")),
            esc(&self.xaddrs(ip))
        )
    }
}

fn envelope(action: &str, header: &str, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:a=\"{ADDRESSING}\" \
         xmlns:d=\"{DISCOVERY}\" xmlns:dn=\"http://www.onvif.org/ver10/network/wsdl\" \
         xmlns:tds=\"http://www.onvif.org/ver10/device/wsdl\"><s:Header>\
         <a:MessageID>urn:uuid:{}</a:MessageID>{header}\
         <a:Action>{DISCOVERY}/{action}</a:Action></s:Header><s:Body>{body}</s:Body></s:Envelope>",
        message_uuid()
    )
}

/// A random UUID (version 4) for a message id.
fn message_uuid() -> String {
    let b = fastrand::u128(..).to_be_bytes();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}

/// The ProbeMatches answering `probe`, naming `ip` as the device's address.
pub fn probe_matches(id: &Identity, probe: &Probe, ip: IpAddr) -> String {
    let header = format!(
        "<a:RelatesTo>{}</a:RelatesTo>\
         <a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>",
        esc(&probe.message_id)
    );
    let body = format!(
        "<d:ProbeMatches><d:ProbeMatch>{}</d:ProbeMatch></d:ProbeMatches>",
        id.body_of(ip)
    );
    envelope("ProbeMatches", &header, &body)
}

fn announcement(id: &Identity, action: &str, ip: IpAddr) -> String {
    let header = "<a:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To>";
    let body = match action {
        "Hello" => format!("<d:Hello>{}</d:Hello>", id.body_of(ip)),
        _ => format!(
            "<d:Bye><a:EndpointReference><a:Address>{}</a:Address></a:EndpointReference></d:Bye>",
            esc(&id.urn)
        ),
    };
    envelope(action, header, &body)
}

/// Listens on `bind` (joining the multicast group when it is every address) and answers
/// probes until `stop`. A port that cannot be had is logged, not fatal: discovery is a
/// convenience, adding the camera by address still works.
pub fn spawn(bind: SocketAddr, id: Identity, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let socket = match UdpSocket::bind(bind).await {
            Ok(s) => s,
            Err(e) => {
                warn!(%bind, error = %e, "WS-Discovery off: cannot listen");
                return;
            }
        };
        let lan = bind.ip().is_unspecified();
        if lan {
            if let Err(e) =
                socket.join_multicast_v4(Ipv4Addr::new(239, 255, 255, 250), Ipv4Addr::UNSPECIFIED)
            {
                warn!(error = %e, "WS-Discovery: cannot join the multicast group; unicast probes only");
            }
            let hello = announcement(&id, "Hello", crate::net::local_ip_towards(None, bind.ip()));
            let _ = socket.send_to(hello.as_bytes(), GROUP).await;
        }
        info!(%bind, "WS-Discovery answering probes");
        let mut buf = vec![0u8; 8192];
        loop {
            let (n, from) = tokio::select! {
                _ = stop.cancelled() => break,
                r = socket.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => { debug!(error = %e, "WS-Discovery receive failed"); continue; }
                },
            };
            let Some(probe) = parse_probe(&buf[..n]) else {
                continue;
            };
            if !matches(&probe, &id.scopes) {
                continue;
            }
            let reply = probe_matches(
                &id,
                &probe,
                crate::net::local_ip_towards(Some(from), bind.ip()),
            );
            if let Err(e) = socket.send_to(reply.as_bytes(), from).await {
                debug!(%from, error = %e, "WS-Discovery reply failed");
            }
        }
        if lan {
            let bye = announcement(&id, "Bye", crate::net::local_ip_towards(None, bind.ip()));
            let _ = socket.send_to(bye.as_bytes(), GROUP).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBE: &str = r#"<s:Envelope xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery" xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:dn="http://www.onvif.org/ver10/network/wsdl"><s:Header><a:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</a:Action><a:MessageID>urn:uuid:5ffae0bd-0000-4000-8000-000000000001</a:MessageID><a:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To></s:Header><s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types><d:Scopes>onvif://www.onvif.org/Profile/Streaming</d:Scopes></d:Probe></s:Body></s:Envelope>"#;

    fn id() -> Identity {
        Identity {
            urn: "urn:uuid:00000000-0000-5000-8000-000000000001".into(),
            scopes: vec![
                "onvif://www.onvif.org/Profile/Streaming".into(),
                "onvif://www.onvif.org/name/porch".into(),
            ],
            port: 8080,
            scheme: "http",
        }
    }

    #[test]
    fn a_probe_for_a_video_transmitter_is_answered_with_the_device_address() {
        let probe = parse_probe(PROBE.as_bytes()).unwrap();
        assert_eq!(
            probe.message_id,
            "urn:uuid:5ffae0bd-0000-4000-8000-000000000001"
        );
        assert!(matches(&probe, &id().scopes));
        let reply = probe_matches(&id(), &probe, "192.168.1.20".parse().unwrap());
        assert!(reply
            .contains("<a:RelatesTo>urn:uuid:5ffae0bd-0000-4000-8000-000000000001</a:RelatesTo>"));
        assert!(
            reply.contains("<d:XAddrs>http://192.168.1.20:8080/onvif/device_service</d:XAddrs>")
        );
        assert!(reply.contains("discovery/ProbeMatches</a:Action>"));
    }

    #[test]
    fn probes_for_something_else_and_garbage_get_nothing() {
        let printer = PROBE.replace("dn:NetworkVideoTransmitter", "p:PrintDevice");
        assert!(!matches(
            &parse_probe(printer.as_bytes()).unwrap(),
            &id().scopes
        ));
        let elsewhere = PROBE.replace("Profile/Streaming", "location/garage");
        assert!(!matches(
            &parse_probe(elsewhere.as_bytes()).unwrap(),
            &id().scopes
        ));
        let any = PROBE.replace(
            "<d:Types>dn:NetworkVideoTransmitter</d:Types>",
            "<d:Types/>",
        );
        assert!(matches(&parse_probe(any.as_bytes()).unwrap(), &id().scopes));
        for junk in [&b"hello"[..], b"<x/>", b"\xff", b""] {
            assert_eq!(parse_probe(junk), None);
        }
        let hello = PROBE.replace("d:Probe>", "d:Hello>");
        assert_eq!(parse_probe(hello.as_bytes()), None);
    }
}
