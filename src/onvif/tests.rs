//! `Onvif::answer` end to end on request bytes: who may call what, and the faults.

use base64::Engine;

use super::*;

const NOW: &str = "2026-12-08T10:00:00Z";

fn onvif() -> Onvif {
    Onvif::new(
        answers::tests::camera(),
        Some(("edgecam".into(), "secret".into())),
    )
}

fn at() -> Reached {
    Reached {
        host: "192.168.1.20".into(),
        port: 8080,
    }
}

/// A request for `op` in `ns` with `args` (XML) and, when given, a digest token made with
/// `password`.
fn request(ns: &str, op: &str, args: &str, password: Option<&str>) -> Vec<u8> {
    // A new nonce each time: a nonce is good once.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nonce = base64::engine::general_purpose::STANDARD.encode(format!("nonce-{n:08}"));
    let created = "2026-12-08T10:00:00Z";
    let header = password
        .map(|p| {
            format!(
                r#"<s:Header><Security xmlns="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><UsernameToken><Username>edgecam</Username><Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest">{}</Password><Nonce>{nonce}</Nonce><Created xmlns="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd">{created}</Created></UsernameToken></Security></s:Header>"#,
                auth::password_digest(&nonce, created, p).unwrap()
            )
        })
        .unwrap_or_default();
    format!(
        r#"<?xml version="1.0"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope">{header}<s:Body><{op} xmlns="{ns}">{args}</{op}></s:Body></s:Envelope>"#
    )
    .into_bytes()
}

fn answer(body: &[u8]) -> Answer {
    onvif().answer(body, &at(), NOW.parse().unwrap())
}

#[test]
fn the_clock_and_capabilities_need_no_password_and_the_rest_does() {
    for op in ["GetSystemDateAndTime", "GetCapabilities", "GetServices"] {
        let a = answer(&request(soap::TDS, op, "", None));
        assert_eq!(a.status, 200, "{op}: {}", a.body);
    }
    let a = answer(&request(soap::TDS, "GetSystemDateAndTime", "", None));
    assert!(a.body.contains("<tt:Hour>10</tt:Hour>"), "{}", a.body);
    for (ns, op) in [
        (soap::TDS, "GetDeviceInformation"),
        (soap::TRT, "GetProfiles"),
    ] {
        let a = answer(&request(ns, op, "", None));
        assert_eq!(a.status, 400, "{op} without a token");
        assert!(a.body.contains("ter:NotAuthorized"), "{}", a.body);
        let a = answer(&request(ns, op, "", Some("wrong")));
        assert!(
            a.body.contains("ter:NotAuthorized"),
            "{op} with a wrong password"
        );
        let a = answer(&request(ns, op, "", Some("secret")));
        assert_eq!(a.status, 200, "{op}: {}", a.body);
    }
}

#[test]
fn the_stream_uri_is_the_rtsp_server_at_the_address_the_client_used() {
    for (op, token, wanted) in [
        (
            "GetStreamUri",
            "main",
            "<tt:Uri>rtsp://192.168.1.20:8554/live</tt:Uri>",
        ),
        (
            "GetSnapshotUri",
            "main",
            "http://192.168.1.20:8080/onvif/snapshot.jpg",
        ),
        ("GetStreamUri", "other", "ter:InvalidArgVal"),
    ] {
        let args = format!("<ProfileToken>{token}</ProfileToken>");
        let a = answer(&request(soap::TRT, op, &args, Some("secret")));
        assert!(a.body.contains(wanted), "{op} {token}: {}", a.body);
    }
}

#[test]
fn malformed_xml_and_unknown_operations_get_faults() {
    let a = answer(b"<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body>");
    assert_eq!(a.status, 400);
    assert!(a.body.contains("ter:WellFormed"), "{}", a.body);
    let a = answer(&request(soap::TDS, "SystemReboot", "", Some("secret")));
    assert_eq!(a.status, 500);
    assert!(a.body.contains("ter:ActionNotSupported"), "{}", a.body);
}

#[test]
fn a_token_is_good_once() {
    let o = onvif();
    let once = request(soap::TRT, "GetProfiles", "", Some("secret"));
    let now = NOW.parse().unwrap();
    assert_eq!(o.answer(&once, &at(), now).status, 200);
    let again = o.answer(&once, &at(), now);
    assert!(
        again.body.contains("ter:NotAuthorized"),
        "a replayed token: {}",
        again.body
    );
    let later = "2026-12-08T10:30:00Z".parse().unwrap();
    let stale = o.answer(
        &request(soap::TRT, "GetProfiles", "", Some("secret")),
        &at(),
        later,
    );
    assert!(
        stale.body.contains("ter:NotAuthorized"),
        "a token from 30 min ago"
    );
}

#[test]
fn without_credentials_configured_everything_is_open() {
    let open = Onvif::new(answers::tests::camera(), None);
    let a = open.answer(
        &request(soap::TRT, "GetProfiles", "", None),
        &at(),
        NOW.parse().unwrap(),
    );
    assert_eq!(a.status, 200);
}
