//! HTTPS on the local server, checked with clients edgecam does not contain (curl and
//! openssl) as well as rustls: the self-signed certificate the daemon makes (private
//! files, a fingerprint `edgecam version` shows and the handshake confirms, the same
//! after a restart), the owner's certificate files, a `Secure` login cookie, and
//! `edgecam trigger` over HTTPS.

use std::path::Path;
use std::process::Command;

use crate::support::daemon::Daemon;
use crate::support::pki::Pki;

const TOKEN: &str = "correct-horse-battery-staple";

fn config(tls: &str) -> impl FnOnce(String) -> String + '_ {
    move |text| text.replace("[web]\n", &format!("[web]\ntoken = \"{TOKEN}\"\n{tls}\n"))
}

/// The SHA-256 fingerprint of the certificate the server presents, as openssl reads it
/// from a real handshake (`AB:CD:…`).
fn served_fingerprint(d: &Daemon) -> String {
    let script = format!(
        "openssl s_client -connect {} -servername localhost </dev/null 2>/dev/null \
         | openssl x509 -noout -fingerprint -sha256",
        d.addr
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .split_once('=')
        .map(|(_, f)| f.to_string())
        .unwrap_or_else(|| panic!("openssl printed no fingerprint: {text}"))
}

/// The fingerprint `edgecam version` prints for this config.
fn version_fingerprint(d: &Daemon) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .args(["version", "--config", d.config.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("SHA-256 fingerprint "))
        .unwrap_or_else(|| panic!("no fingerprint in `edgecam version`: {text}"))
        .to_string()
}

/// `curl` GET of `/healthz` trusting only `root`, by the name `localhost`.
fn curl_health(d: &Daemon, root: &Path) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--cacert"])
        .arg(root)
        .arg(format!("https://localhost:{}/healthz", d.addr.port()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_self_signed_certificate_is_made_once_and_its_fingerprint_can_be_checked() {
    let mut d = Daemon::start_https(None, config("tls = \"self-signed\""));
    let cert = d.data().join("tls/cert.pem");
    assert_eq!(mode(&cert), 0o600);
    assert_eq!(mode(&d.data().join("tls/key.pem")), 0o600);
    assert!(curl_health(&d, &cert).starts_with("ok"));

    let served = served_fingerprint(&d);
    assert_eq!(served.len(), 95, "{served}");
    assert_eq!(version_fingerprint(&d), served);

    // Plain HTTP on the HTTPS port is told where to go.
    let (status, _, body) = crate::support::http_get(d.addr, "/healthz").unwrap();
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("https://"));

    // The certificate is kept: the fingerprint a user accepted stays valid.
    d.signal("-TERM");
    d.restart();
    assert_eq!(served_fingerprint(&d), served);
}

#[test]
fn the_login_cookie_is_secure_over_https_and_the_cli_reaches_the_daemon() {
    let d = Daemon::start_https(None, config("tls = \"self-signed\""));
    let port = d.addr.port();
    let form = format!("token={TOKEN}");
    let (status, head, _) = d
        .request(&format!(
            "POST /login HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ))
        .unwrap();
    assert_eq!(status, 303, "{head}");
    let cookie = head
        .lines()
        .find(|l| l.to_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {head}"));
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }

    let out = Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .args(["trigger", "--duration", "1", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "edgecam trigger over HTTPS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"ok\":true"));
}

#[test]
fn the_owners_certificate_files_are_served() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(pki_dir.path());
    let leaf = pki.leaf("camera", &["localhost", "127.0.0.1"]);
    set_mode(&leaf.key, 0o600);
    let tls = format!(
        "tls = \"files\"\ntls_cert = \"{}\"\ntls_key = \"{}\"",
        leaf.cert.display(),
        leaf.key.display()
    );
    let d = Daemon::start_https(Some(pki.ca_pem.clone()), config(&tls));
    assert!(curl_health(&d, &pki.ca_pem).starts_with("ok"));
    let (status, _, _) = d.get("/api/clips").unwrap();
    assert_eq!(status, 401, "HTTPS does not replace the credential");
    assert_eq!(version_fingerprint(&d), served_fingerprint(&d));
}

#[test]
fn a_private_key_others_can_read_stops_the_daemon_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let leaf = pki.leaf("camera", &["localhost"]);
    set_mode(&leaf.key, 0o644);
    let text = config(&format!(
        "tls = \"files\"\ntls_cert = \"{}\"\ntls_key = \"{}\"",
        leaf.cert.display(),
        leaf.key.display()
    ))(crate::support::daemon::daemon_config(
        dir.path(),
        crate::support::free_port(),
    ));
    let path = crate::support::write_file(dir.path(), "edgecam.toml", &text);
    let out = Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("web.tls_key") && err.contains("chmod 600"),
        "{err}"
    );
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
