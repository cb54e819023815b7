//! This machine's name, and which of its addresses others reach it on: for the URLs the camera hands
//! out (ONVIF's discovery, the RTSP URL in Home Assistant's discovery) when it listens
//! on every address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

/// A documentation address (RFC 5737): routing towards it picks the default route's
/// interface without any packet being sent.
const SOMEWHERE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 9);

/// The address this machine would send from to reach `peer` (`None`: to anywhere); the
/// bound address itself when it is a specific one. No packet is sent.
pub fn local_ip_towards(peer: Option<SocketAddr>, bound: IpAddr) -> IpAddr {
    if !bound.is_unspecified() {
        return bound;
    }
    UdpSocket::bind(("0.0.0.0", 0))
        .and_then(|s| {
            s.connect(peer.unwrap_or(SOMEWHERE))
                .and_then(|_| s.local_addr())
        })
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// This machine's hostname, if it has one.
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_specific_address_is_its_own_answer() {
        let ip: IpAddr = "192.168.1.20".parse().unwrap();
        assert_eq!(local_ip_towards(None, ip), ip);
        let peer = SocketAddr::from(([127, 0, 0, 1], 9));
        assert!(local_ip_towards(Some(peer), Ipv4Addr::UNSPECIFIED.into()).is_loopback());
    }
}
