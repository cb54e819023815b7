//! ONVIF against an independent client: onvif-zeep (zeep with onvif.org's WSDLs, the
//! library NVR scripts and older Home Assistant used) finds the camera by a WS-Discovery
//! probe on loopback, authenticates with UsernameToken digest, reads the profile, the
//! stream URI and the snapshot URI; the stream plays with ffprobe, the snapshot comes
//! with HTTP Basic; a wrong password and malformed XML get SOAP faults and the daemon
//! keeps running.

use std::net::UdpSocket;
use std::process::Command;

use base64::Engine;
use serde_json::Value;

use crate::support::daemon::Daemon;
use crate::support::{free_port, http_get, http_request, repo};

const PASSWORD: &str = "porch-camera";

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn client(discovery: u16) -> Value {
    let python = dirs_home().join(".cache/edgecam/onvif/bin/python");
    let out = Command::new(&python)
        .arg(repo().join("tests/it/support/onvif_client.py"))
        .args([&discovery.to_string(), "edgecam", PASSWORD])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (make test installs it)", python.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "client output {text:?}: {e}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn dirs_home() -> std::path::PathBuf {
    std::path::PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
}

fn post_soap(d: &Daemon, path: &str, body: &str) -> (u16, String) {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: application/soap+xml; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        d.addr,
        body.len()
    );
    let (status, _, body) = http_request(d.addr, &request).unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn an_onvif_client_discovers_the_camera_and_plays_the_stream_it_is_given() {
    let (rtsp, discovery) = (free_port(), free_udp_port());
    let d = Daemon::start_with(&format!(
        "[rtsp]\nenabled = true\nlisten = \"127.0.0.1:{rtsp}\"\npassword = \"{PASSWORD}\"\n\
         [onvif]\nenabled = true\ndiscovery = true\ndiscovery_port = {discovery}\n"
    ));
    let found = client(discovery);
    assert_eq!(found["discovery"]["relates_ok"], true, "{found}");
    assert_eq!(
        found["discovery"]["xaddrs"][0],
        format!("http://{}/onvif/device_service", d.addr).as_str(),
        "{found}"
    );
    assert_eq!(found["manufacturer"], "edgecam", "{found}");
    assert_eq!(found["profile"]["encoding"], "H264", "{found}");
    assert_eq!(found["profile"]["width"], 320, "{found}");
    let stream = format!("rtsp://127.0.0.1:{rtsp}/live");
    assert_eq!(found["stream_uri"], stream.as_str(), "{found}");
    // The Events service: the first pull says every topic's state, motion among them.
    let events = found["events"].as_array().cloned().unwrap_or_default();
    assert!(
        events.iter().any(
            |e| e["topic"] == "tns1:RuleEngine/CellMotionDetector/Motion"
                && e["operation"] == "Initialized"
        ),
        "{found}"
    );
    assert!(found["events_then"].as_u64().is_some(), "{found}");
    let wrong = found["wrong_password"].as_str().unwrap_or_default();
    assert!(wrong.contains("not Authorized"), "{found}");

    // The stream URI plays, with the same user and password (as NVRs add them).
    let with_login = stream.replace("rtsp://", &format!("rtsp://edgecam:{PASSWORD}@"));
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-rtsp_transport", "tcp", "-show_entries"])
        .args(["stream=codec_name", "-of", "csv=p=0", &with_login])
        .output()
        .unwrap();
    let codecs = String::from_utf8_lossy(&probe.stdout);
    assert!(
        codecs.contains("h264"),
        "{codecs} {}",
        String::from_utf8_lossy(&probe.stderr)
    );

    // The snapshot URI needs the same credentials, by HTTP Basic.
    let snapshot = found["snapshot_uri"].as_str().unwrap_or_default();
    let path = snapshot
        .split_once(&d.addr.to_string())
        .map(|(_, p)| p)
        .unwrap_or("");
    assert_eq!(path, "/onvif/snapshot.jpg", "{found}");
    let (status, _, _) = http_get(d.addr, path).unwrap();
    assert_eq!(status, 401);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("edgecam:{PASSWORD}"));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {basic}\r\nConnection: close\r\n\r\n",
        d.addr
    );
    let mut got = (0, Vec::new());
    for _ in 0..50 {
        let (status, _, body) = http_request(d.addr, &request).unwrap();
        got = (status, body);
        if status == 200 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(got.0, 200);
    assert_eq!(&got.1[..2], &[0xff, 0xd8], "a JPEG");
}

#[test]
fn malformed_and_unknown_requests_get_faults_and_the_daemon_keeps_running() {
    let rtsp = free_port();
    let d = Daemon::start_with(&format!(
        "[rtsp]\nenabled = true\nlisten = \"127.0.0.1:{rtsp}\"\npassword = \"{PASSWORD}\"\n\
         [onvif]\nenabled = true\n"
    ));
    for bad in [
        "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body><GetProfiles",
        "\u{0}\u{1}garbage",
        "",
        "<Envelope><Body><GetProfiles/></Body></Envelope>",
    ] {
        let (status, body) = post_soap(&d, "/onvif/media_service", bad);
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert!(body.contains("ter:WellFormed"), "{bad:?}: {body}");
    }
    let unknown = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><SystemReboot xmlns="http://www.onvif.org/ver10/device/wsdl"/></s:Body></s:Envelope>"#;
    let (status, body) = post_soap(&d, "/onvif/device_service", unknown);
    assert_eq!(
        status, 400,
        "a reboot without credentials is refused first: {body}"
    );
    assert!(body.contains("ter:NotAuthorized"), "{body}");
    let clock = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><GetSystemDateAndTime xmlns="http://www.onvif.org/ver10/device/wsdl"/></s:Body></s:Envelope>"#;
    let (status, body) = post_soap(&d, "/onvif/device_service", clock);
    assert_eq!(status, 200, "the clock needs no password: {body}");
    assert!(body.contains("<tt:UTCDateTime>"), "{body}");
    let (status, _, _) = http_get(d.addr, "/healthz").unwrap();
    assert_eq!(status, 200, "the daemon still runs");
}
