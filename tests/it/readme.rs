//! README.md is the user's reference: what it says a reply holds is what the daemon
//! sends, so the two cannot drift apart unseen.

use serde_json::Value;

use crate::support::daemon::Daemon;
use crate::support::{http_get, repo};

/// The backticked names on the README line that starts with `row`.
fn documented(row: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with(row))
        .unwrap_or_else(|| panic!("README.md has no line starting {row:?}"));
    line.split('`')
        .skip(1)
        .step_by(2)
        .flat_map(|s| s.split(|c: char| !(c.is_alphanumeric() || c == '_')))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Every key of `v`, nested ones too.
fn keys(v: &Value, out: &mut Vec<String>) {
    if let Value::Object(map) = v {
        for (k, v) in map {
            out.push(k.clone());
            keys(v, out);
        }
    }
}

fn undocumented(row: &str, reply: &Value) -> Vec<String> {
    let names = documented(row);
    let mut found = Vec::new();
    keys(reply, &mut found);
    found.retain(|k| !names.contains(k));
    found
}

#[test]
fn the_status_reply_and_the_live_route_hold_what_the_readme_says() {
    let d = Daemon::start_with("[motion]\nenabled = false\n");
    let (_, status) = d.command(r#"{"command":"status"}"#);
    assert_eq!(status["ok"], true, "{status}");
    assert_eq!(
        undocumented("| `status` |", &status["result"]),
        Vec::<String>::new(),
        "status fields missing from README.md's Commands table"
    );
    let (_, _, body) = http_get(d.addr, "/api/live").unwrap();
    let live: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        undocumented("| `GET /api/live` |", &live),
        Vec::<String>::new(),
        "/api/live fields missing from README.md's HTTP table"
    );
}
