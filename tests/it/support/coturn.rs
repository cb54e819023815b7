//! A real coturn TURN server per test on 127.0.0.1 that takes clients over TCP and TLS
//! only (no UDP or DTLS listener: a network where UDP to the server is blocked), with
//! long-term credentials, relaying to loopback peers.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::pki::Pki;

pub const USER: &str = "viewer";
pub const PASSWORD: &str = "turn-secret";

pub struct Coturn {
    /// TURN over TCP (and the port where UDP is refused).
    pub tcp_port: u16,
    /// TURN over TLS.
    pub tls_port: u16,
    pub log: std::path::PathBuf,
    child: Child,
}

impl Coturn {
    /// Starts coturn; its TLS certificate names `localhost` and 127.0.0.1, from `pki`.
    pub fn start(dir: &Path, pki: &Pki) -> Self {
        let leaf = pki.leaf("turn", &["localhost", "127.0.0.1"]);
        let (tcp_port, tls_port) = (super::free_port(), super::free_port());
        let log = dir.join("coturn.log");
        let child = Command::new("turnserver")
            .args([
                "-n",
                "-v",
                "--no-cli",
                "--no-udp",
                "--no-dtls",
                "--simple-log",
            ])
            .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"])
            .args(["--listening-port", &tcp_port.to_string()])
            .args(["--tls-listening-port", &tls_port.to_string()])
            .args(["--lt-cred-mech", "--realm", "edgecam.test"])
            .args(["--user", &format!("{USER}:{PASSWORD}")])
            .args(["--allow-loopback-peers", "--no-multicast-peers"])
            .arg("--cert")
            .arg(&leaf.cert)
            .arg("--pkey")
            .arg(&leaf.key)
            .arg("--log-file")
            .arg(&log)
            .arg("--pidfile")
            .arg(dir.join("coturn.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("coturn is installed (packaging/install-deps.sh --test)");
        for port in [tcp_port, tls_port] {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let until = Instant::now() + Duration::from_secs(10);
            while TcpStream::connect(addr).is_err() {
                assert!(Instant::now() < until, "coturn did not start on {port}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Coturn {
            tcp_port,
            tls_port,
            log,
            child,
        }
    }

    /// What coturn logged (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
