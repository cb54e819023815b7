//! The local surface behind one authentication: every route of the router (read from its
//! source, so a new route cannot be missed) answers 401 without a credential, and works
//! with the bearer token or the login cookie; wrong tokens are throttled; a camera open
//! to the network without a token does not start.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::daemon::Daemon;
use crate::support::viewer::{Opts, Viewer};
use crate::support::{http_request, repo};

const TOKEN: &str = "correct-horse-battery-staple";

fn daemon(extra: &str) -> Daemon {
    Daemon::start_edited(|text| {
        let text = text.replace("[web]\n", &format!("[web]\ntoken = \"{TOKEN}\"\n{extra}"));
        format!("{text}\n[live]\nice_addresses = [\"127.0.0.1\"]\n")
    })
}

/// `method path` with extra header lines; (status, head, body).
fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String, String) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, head, body) = http_request(addr, &request).unwrap();
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

/// `POST /api/commands` `status` with `headers` (which give the Content-Type); its
/// status code and reply.
fn status_command(addr: SocketAddr, headers: &str) -> (u16, String) {
    let (status, _, reply) = send(
        addr,
        "POST",
        "/api/commands",
        headers,
        r#"{"command":"status"}"#,
    );
    (status, reply)
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

/// Every path the router serves, read from its source (`{param}` filled in).
fn routes() -> Vec<(String, String)> {
    let source = std::fs::read_to_string(repo().join("src/web/mod.rs")).unwrap();
    let mut out = Vec::new();
    for chunk in source.split(".route(\"").skip(1) {
        let (path, rest) = chunk.split_once('"').unwrap();
        let handlers = rest.split(".route(").next().unwrap_or_default();
        let path = path.replace("{file}", "01jclip.mp4");
        if handlers.contains("get(") {
            out.push(("GET".to_owned(), path.clone()));
        }
        if handlers.contains("post(") {
            out.push(("POST".to_owned(), path.clone()));
        }
    }
    out.push(("GET".to_owned(), "/no/such/route".to_owned()));
    assert!(out.len() >= 10, "the router's routes were found: {out:?}");
    out
}

#[test]
fn every_route_needs_the_credential_but_health_and_login() {
    let d = daemon("");
    for (method, path) in routes() {
        // JSON, so that the cross-site defence (415 for other types) is not what answers.
        let json = if method == "POST" {
            "Content-Type: application/json\r\n"
        } else {
            ""
        };
        let (status, head, _) = send(d.addr, &method, &path, json, "");
        let public = path == "/healthz" || path == "/login" || path.starts_with("/onvif/");
        if public {
            assert_ne!(status, 401, "{method} {path} is public");
        } else {
            assert_eq!(status, 401, "{method} {path} without a credential");
            let head = head.to_lowercase();
            assert!(head.contains("www-authenticate: bearer"), "{head}");
        }
        let with_token = format!("{json}{}", bearer(TOKEN));
        let (status, _, _) = send(d.addr, &method, &path, &with_token, "");
        assert_ne!(status, 401, "{method} {path} with the token");
    }
    let json = "Content-Type: application/json\r\n";
    let headers = format!("{}{json}", bearer(TOKEN));
    let (status, reply) = status_command(d.addr, &headers);
    assert_eq!(status, 200, "{reply}");
    // A browser is sent to the login page.
    let (status, _, page) = send(d.addr, "GET", "/", "Accept: text/html\r\n", "");
    assert_eq!(status, 401);
    assert!(page.contains("url=/login"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_logs_in_once_and_the_page_and_its_signaling_use_the_cookie() {
    let d = daemon("");
    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    let (status, _, page) = send(d.addr, "POST", "/login", form, "token=guess");
    assert_eq!(status, 401);
    assert!(page.contains("not this camera"), "{page}");
    let (status, head, _) = send(d.addr, "POST", "/login", form, &format!("token={TOKEN}"));
    assert_eq!(status, 303);
    let set = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a session cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    let with_cookie = format!("Cookie: {cookie}\r\n");
    let (status, _, live) = send(d.addr, "GET", "/api/live", &with_cookie, "");
    assert_eq!(status, 200, "{live}");
    // The viewer page's signaling socket carries the cookie, not a token in its URL.
    let opts = Opts {
        cookie: Some(cookie.clone()),
        ..Opts::default()
    };
    let mut v = Viewer::connect_with(&Viewer::lan_url(d.addr, "phone"), opts).await;
    let seen = v.wait(Duration::from_secs(10), |s| s.decoded >= 3).await;
    assert!(seen.decoded >= 3, "the logged-in page plays");
    v.close().await;
    // Logging out ends the session.
    let (status, _, _) = send(d.addr, "POST", "/logout", &with_cookie, "");
    assert_eq!(status, 303);
    let (status, _, _) = send(d.addr, "GET", "/api/live", &with_cookie, "");
    assert_eq!(status, 401);
}

#[test]
fn wrong_tokens_are_throttled_per_address() {
    let d = daemon("");
    for i in 0..5 {
        let (status, _, _) = send(
            d.addr,
            "GET",
            "/api/live",
            &bearer(&format!("guess-{i}")),
            "",
        );
        assert_eq!(status, 401);
    }
    // Even the right token waits now: guessing cannot go on at full speed.
    let (status, head, _) = send(d.addr, "GET", "/api/live", &bearer(TOKEN), "");
    assert_eq!(status, 429);
    let wait: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(
        send(d.addr, "GET", "/healthz", "", "").0,
        200,
        "health stays open"
    );
}

#[test]
fn metrics_can_be_opened_alone() {
    let d = daemon("metrics_public = true\n");
    assert_eq!(send(d.addr, "GET", "/metrics", "", "").0, 200);
    assert_eq!(send(d.addr, "GET", "/api/clips", "", "").0, 401);
}

#[test]
fn a_camera_open_to_the_network_without_a_token_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("open.toml");
    std::fs::write(&config, "[web]\nlisten = \"0.0.0.0:8080\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{said}");
    assert!(
        said.contains("web.token") && said.contains("127.0.0.1"),
        "{said}"
    );
}

/// A request with a chosen `Host` line (the helper above always sends the real one).
fn send_host(addr: SocketAddr, host: &str, path: &str) -> u16 {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    http_request(addr, &request).unwrap().0
}

#[test]
fn other_pages_cannot_drive_the_camera() {
    // No token: a camera on 127.0.0.1, exactly what a rebinding page aims at.
    let d = Daemon::start();
    let port = d.addr.port();
    // DNS rebinding: the attacker's name resolves to the camera; the Host gives it away.
    assert_eq!(
        send_host(d.addr, &format!("evil.example:{port}"), "/api/clips"),
        421
    );
    assert_eq!(
        send_host(d.addr, &format!("localhost:{port}"), "/api/clips"),
        200
    );
    // A form post from another page: not JSON, so refused before it runs.
    let plain = "Content-Type: text/plain\r\n";
    let body = r#"{"command":"detect","enabled":false}"#;
    assert_eq!(send(d.addr, "POST", "/api/commands", plain, body).0, 415);
    // JSON from a foreign origin (with CORS it would need a preflight we never grant).
    let foreign = "Content-Type: application/json\r\nOrigin: http://evil.example\r\n";
    assert_eq!(send(d.addr, "POST", "/api/commands", foreign, body).0, 403);
    // The camera's own page: same origin, JSON.
    let own = format!(
        "Content-Type: application/json\r\nOrigin: http://{}\r\n",
        d.addr
    );
    let (status, reply) = status_command(d.addr, &own);
    assert_eq!(status, 200, "{reply}");
    // The signaling socket checks Origin too.
    let upgrade = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://evil.example\r\n";
    assert_eq!(
        send(d.addr, "GET", "/signaling?clientId=x", upgrade, "").0,
        403
    );
    // Detection was never switched off by any of the refused requests.
    let (_, status) = d.command(r#"{"command":"status"}"#);
    assert_eq!(status["result"]["detect"], true, "{status}");
}
