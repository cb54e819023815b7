//! The `edgecam` binary as a user runs it: config checking and exit codes, the daemon's
//! HTTP endpoints on a live test pattern, and shutdown on SIGTERM.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::daemon::{daemon_config, Daemon};
use crate::support::{http_get, repo, write_file};

fn edgecam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .args(args)
        .current_dir(repo())
        .env_remove("RUST_LOG")
        .env_remove("EDGECAM_CONFIG")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_value_exits_78_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "bad.toml", "[camera]\nwidth = 640\nfps = 0\n");
    for cmd in ["check-config", "run"] {
        let out = edgecam(&[cmd, "--config", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(78), "{cmd}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{}:3: camera.fps:", path.display())),
            "{cmd}: {err}"
        );
        assert!(err.contains("between 1 and 60"), "{cmd}: {err}");
    }
}

#[test]
fn unknown_key_and_wrong_type_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let typo = write_file(
        dir.path(),
        "typo.toml",
        "[web]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n",
    );
    let out = edgecam(&["check-config", typo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("typo.toml:3:") && stderr(&out).contains("unknown field `lisen`"),
        "{}",
        stderr(&out)
    );

    let wrong = write_file(dir.path(), "wrong.toml", "[camera]\nfps = \"fast\"\n");
    let out = edgecam(&["check-config", wrong.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("wrong.toml:2: camera.fps: invalid type"),
        "{}",
        stderr(&out)
    );

    let out = edgecam(&["check-config", "/nonexistent/edgecam.toml"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("cannot read the config file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn pipeline_file_without_encoded_sink_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "nosink.pipeline", "videotestsrc ! fakesink\n");
    let cfg = format!(
        "[camera]\npipeline = \"nosink\"\npipeline_dir = \"{}\"\n",
        dir.path().display()
    );
    let path = write_file(dir.path(), "edgecam.toml", &cfg);
    let out = edgecam(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("no appsink named \"encoded\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn shipped_config_checks_clean() {
    let out = edgecam(&["check-config", "--config", "config/edgecam.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}

#[test]
fn version_and_help() {
    let out = edgecam(&["version"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(env!("CARGO_PKG_VERSION")) && text.contains("GStreamer 1."),
        "{text}"
    );

    let help = edgecam(&["--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    for word in ["run", "check-config", "version", "--config"] {
        assert!(text.contains(word), "--help mentions {word}: {text}");
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
}

#[test]
fn daemon_serves_health_metrics_snapshot_and_stops_on_sigterm() {
    let mut d = Daemon::start();

    let (status, head, body) = http_get(d.addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        head.to_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    let first = String::from_utf8(body).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let (_, _, body) = http_get(d.addr, "/metrics").unwrap();
    let second = String::from_utf8(body).unwrap();
    let (a, b) = (
        metric(&first, "edgecam_frames_captured_total"),
        metric(&second, "edgecam_frames_captured_total"),
    );
    assert!(b > a, "frames keep counting: {a} then {b}");
    assert!(metric(&second, "edgecam_keyframes_total") >= 1.0);
    assert_eq!(metric(&second, "edgecam_pipeline_restarts_total"), 0.0);

    // A snapshot appears within a second or two of start.
    let deadline = Instant::now() + Duration::from_secs(5);
    let jpeg = loop {
        let (status, head, body) = http_get(d.addr, "/api/snapshot.jpg").unwrap();
        if status == 200 {
            assert!(head.contains("image/jpeg"), "{head}");
            break body;
        }
        assert_eq!(status, 503);
        assert!(Instant::now() < deadline, "no snapshot within 5 s");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(&jpeg[..2], &[0xff, 0xd8], "JPEG start-of-image marker");
    assert_eq!(
        &jpeg[jpeg.len() - 2..],
        &[0xff, 0xd9],
        "JPEG end-of-image marker"
    );

    assert_eq!(http_get(d.addr, "/no-such-page").unwrap().0, 404);

    let asked = Instant::now();
    d.signal("-TERM");
    let status = loop {
        if let Some(status) = d.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "daemon ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean exit");
    assert!(took < Duration::from_secs(2), "SIGTERM took {took:?}");
}

#[test]
fn daemon_refuses_a_busy_port_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let path = write_file(dir.path(), "edgecam.toml", &daemon_config(dir.path(), port));
    let out = edgecam(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_part_that_panics_stops_the_daemon_with_a_failure_for_systemd() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::free_port();
    let path = write_file(dir.path(), "edgecam.toml", &daemon_config(dir.path(), port));
    // Debug builds only: the recorder gets a task that panics after a second.
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .args(["run", "--config", path.to_str().unwrap()])
        .env("EDGECAM_INJECT_PANIC", "recorder")
        .output()
        .unwrap();
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("the recorder part panicked: injected panic in recorder"),
        "{said}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "it stopped in order, not after a hang"
    );
}
