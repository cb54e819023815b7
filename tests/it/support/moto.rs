//! `moto_server` (PyPI `moto[server]`), a local AWS control plane, on 127.0.0.1 and a free
//! port, killed when dropped. `packaging/install-deps.sh --test` installs it in
//! ~/.cache/edgecam/moto; `EDGECAM_MOTO_SERVER` points elsewhere.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Moto {
    pub url: String,
    child: Child,
}

fn binary() -> String {
    if let Ok(p) = std::env::var("EDGECAM_MOTO_SERVER") {
        return p;
    }
    let venv = format!(
        "{}/.cache/edgecam/moto/bin/moto_server",
        std::env::var("HOME").unwrap_or_default()
    );
    if std::path::Path::new(&venv).exists() {
        venv
    } else {
        "moto_server".into()
    }
}

impl Moto {
    pub fn start() -> Self {
        let port = super::free_port();
        let child = Command::new(binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server is installed (packaging/install-deps.sh --test)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let until = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < until, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            url: format!("http://127.0.0.1:{port}"),
            child,
        }
    }

    /// Environment for a client of moto (it takes any keys).
    pub fn env() -> [(&'static str, &'static str); 5] {
        [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
