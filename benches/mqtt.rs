//! MQTT benchmark against a real mosquitto (mutual TLS) on loopback; prints a table
//! (`cargo bench --bench mqtt [-- --quick]`).
//!
//! 1. Trigger → event message: an HTTP `record` command is sent, and the time until a
//!    subscriber on the broker receives that event's `start` message is measured (the
//!    HTTP request, the recorder, the SQLite outbox write, TLS and the broker all
//!    included).
//! 2. A burst at 10 events a second (each a 50 ms recording): `start` and `end`
//!    messages lost, counted by event id.

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::daemon::Daemon;
use support::mosquitto::{client_leaf, Broker, Observer};
use support::pki::Pki;

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 30 } else { 200 };
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let broker = Broker::start(dir.path(), &pki);
    let observer = Observer::start(&broker, &pki, &["edgecam/bench/events"]).await;
    let client = client_leaf(&pki, "bench");
    let mqtt = broker.daemon_config(&pki, &client, "bench", "");
    let d = tokio::task::block_in_place(|| {
        Daemon::start_edited(|t| {
            format!(
                "{t}\n{mqtt}\n[motion]\nenabled = false\n[events]\npre_roll_s = 0\npost_roll_s = 0\nmin_gap_s = 0\n"
            )
        })
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let label = format!("bench-{i}");
        let t0 = Instant::now();
        let (status, reply) = tokio::task::block_in_place(|| {
            d.command(&format!(r#"{{"command":"record","label":"{label}"}}"#))
        });
        assert_eq!(status, 200, "{reply}");
        let msgs = observer
            .wait("edgecam/bench/events", Duration::from_secs(5), |m| {
                m.iter().any(|x| x.json()["label"] == label.as_str())
            })
            .await;
        let seen = msgs
            .iter()
            .find(|x| x.json()["label"] == label.as_str() && x.json()["type"] == "start")
            .map(|x| x.at.duration_since(t0))
            .unwrap_or(Duration::from_secs(5));
        latencies.push(seen);
        tokio::task::block_in_place(|| d.command(r#"{"command":"record","action":"stop"}"#));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    latencies.sort();

    // A burst at 10 events a second.
    let burst = if quick { 100 } else { 300 };
    let mut burst_made = BTreeSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for _ in 0..burst {
        tick.tick().await;
        let (_, reply) =
            tokio::task::block_in_place(|| d.command(r#"{"command":"record","duration_s":0.05}"#));
        if let Some(id) = reply["result"]["event_id"].as_str() {
            burst_made.insert(id.to_owned());
        }
    }
    let lost_burst = lost(&observer, &burst_made).await;

    println!("MQTT, mosquitto with mutual TLS on loopback");
    println!("{:<52} {:>22}", "measure", "value");
    println!(
        "{:<52} {:>9.1} ms p50, {:.1} ms p99, {:.1} ms max",
        format!("trigger -> event start at a subscriber ({n} events)"),
        pct(&latencies, 0.5),
        pct(&latencies, 0.99),
        pct(&latencies, 1.0)
    );
    println!(
        "{:<52} {:>22}",
        format!(
            "burst at 10 events/s: start/end lost of {}",
            burst_made.len()
        ),
        format!("{} / {}", lost_burst.0, lost_burst.1)
    );
}

/// How many of `events` have no `start`, and no `end`, at the subscriber (waiting up to
/// 30 s for the last of them).
async fn lost(observer: &Observer, events: &BTreeSet<String>) -> (usize, usize) {
    let ids = |m: &[support::mosquitto::Seen], t: &str| -> BTreeSet<String> {
        m.iter()
            .map(|x| x.json())
            .filter(|v| v["type"] == t)
            .filter_map(|v| v["event_id"].as_str().map(str::to_owned))
            .collect()
    };
    let msgs = observer
        .wait("edgecam/bench/events", Duration::from_secs(30), |m| {
            events.is_subset(&ids(m, "end"))
        })
        .await;
    let (starts, ends) = (ids(&msgs, "start"), ids(&msgs, "end"));
    (
        events.difference(&starts).count(),
        events.difference(&ends).count(),
    )
}
