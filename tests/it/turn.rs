//! Live view where only TURN over TCP or TLS gets through: a real coturn on loopback that
//! takes no UDP, KVS signaling (the fake) handing it out beside a UDP URI that fails, and
//! a camera set to `relay_only`, so a viewer that plays can only be reaching it through
//! coturn over the stream transport under test.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support;
use crate::support::coturn::{self, Coturn};
use crate::support::daemon::Daemon;
use crate::support::kvs_fake::FakeKvs;
use crate::support::viewer::Viewer;

fn relays(d: &Daemon) -> f64 {
    support::metric(d.addr, "edgecam_viewer_candidates_total{type=\"relay\"}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_only_camera_is_watched_through_turn_over_tcp_and_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeKvs::start(dir.path()).await;
    let turn = Coturn::start(dir.path(), &fake.pki);
    // UDP to the server's port is refused (nothing listens for UDP there), so only the
    // second URI can work.
    let servers = |uri: String| {
        json!([{
            "Uris": [format!("turn:127.0.0.1:{}?transport=udp", turn.tcp_port), uri],
            "Username": coturn::USER, "Password": coturn::PASSWORD, "Ttl": 300}])
    };
    fake.set_ice_servers(servers(format!(
        "turn:127.0.0.1:{}?transport=tcp",
        turn.tcp_port
    )));
    let env = fake.daemon_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let config = format!(
        "{}[motion]\nenabled = false\n",
        fake.daemon_config("front-door")
            .replace("[live]\n", "[live]\nrelay_only = true\n")
    );
    let d = tokio::task::block_in_place(|| Daemon::start_env(&env, |t| format!("{t}\n{config}")));
    assert!(
        fake.wait(Duration::from_secs(15), |f| f.master_online())
            .await,
        "the daemon connects as master: {:?}",
        fake.errors()
    );

    for (n, transport) in ["tcp", "tls"].into_iter().enumerate() {
        if transport == "tls" {
            // The TLS URI names the host, as KVS's do: the certificate is checked against it.
            let calls = fake.calls("GetIceServerConfig");
            fake.set_ice_servers(servers(format!(
                "turns:localhost:{}?transport=tcp",
                turn.tls_port
            )));
            fake.reconnect_ice_server();
            assert!(
                fake.wait(Duration::from_secs(10), |f| f.calls("GetIceServerConfig")
                    > calls)
                    .await,
                "the ICE servers are fetched again"
            );
        }
        let started = Instant::now();
        let mut v = Viewer::connect_url(&fake.viewer_url(&format!("phone-{transport}"))).await;
        let seen = v.wait(Duration::from_secs(20), |s| s.decoded >= 10).await;
        assert!(
            seen.decoded >= 10,
            "video through TURN over {transport}: {} frames decoded; coturn said:\n{}",
            seen.decoded,
            turn.log()
        );
        eprintln!(
            "TURN over {transport}: first frame {:?} after connecting ({:?} in all)",
            seen.first_frame,
            started.elapsed()
        );
        assert_eq!(
            relays(&d),
            (n + 1) as f64,
            "the camera's side of the pair is a relay candidate"
        );
        v.close().await;
    }
    let log = turn.log();
    for proto in ["TCP", "TLS"] {
        assert!(
            log.lines()
                .any(|l| l.contains("session") && l.contains(proto)),
            "coturn served a {proto} session:\n{log}"
        );
    }
    assert_eq!(fake.errors(), Vec::<String>::new());
}
