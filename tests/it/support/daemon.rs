//! The `edgecam` daemon as a child process, for tests that run it like a user does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, repo, write_file};

/// A config for a small, quick test-pattern daemon under `dir`.
pub fn daemon_config(dir: &Path, port: u16) -> String {
    format!(
        r#"[camera]
pipeline_dir = "{pipelines}"
width = 320
height = 240
fps = 15
bitrate_kbps = 500
keyframe_interval_s = 1

[storage]
data_dir = "{data}"
# The build machine's disk is not the camera's: never delete clips for its free space.
min_free_percent = 0

[web]
listen = "127.0.0.1:{port}"
"#,
        pipelines = repo().join("pipelines").display(),
        data = dir.join("data").display(),
    )
}

/// A running daemon; killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub config: PathBuf,
    pub dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    /// A command the daemon runs under (e.g. `unshare … sh -c`), or empty.
    wrapper: Vec<String>,
    /// Over HTTPS: the certificate file clients trust (the daemon's own self-signed one,
    /// or a CA).
    pub https_root: Option<PathBuf>,
}

impl Daemon {
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// Starts with extra TOML sections appended to the test config.
    pub fn start_with(extra: &str) -> Self {
        Self::start_edited(|text| format!("{text}\n{extra}"))
    }

    /// Starts with the test config rewritten by `edit`.
    pub fn start_edited(edit: impl FnOnce(String) -> String) -> Self {
        Self::start_env(&[], edit)
    }

    /// Starts with extra environment variables and the test config rewritten by `edit`.
    pub fn start_env(env: &[(&str, &str)], edit: impl FnOnce(String) -> String) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), Vec::new(), env, edit)
    }

    /// Starts in `dir`, under `wrapper` (a command that ends by running its arguments).
    pub fn start_in(
        dir: tempfile::TempDir,
        wrapper: Vec<String>,
        env: &[(&str, &str)],
        edit: impl FnOnce(String) -> String,
    ) -> Self {
        Self::launch(dir, wrapper, env, edit, |_| None)
    }

    /// Starts a daemon serving HTTPS (the config `edit` sets `web.tls`); clients trust
    /// `root` or, when `None`, the self-signed certificate the daemon makes.
    pub fn start_https(root: Option<PathBuf>, edit: impl FnOnce(String) -> String) -> Self {
        Self::launch(
            tempfile::tempdir().unwrap(),
            Vec::new(),
            &[],
            edit,
            |data| Some(root.unwrap_or_else(|| data.join("tls/cert.pem"))),
        )
    }

    fn launch(
        dir: tempfile::TempDir,
        wrapper: Vec<String>,
        env: &[(&str, &str)],
        edit: impl FnOnce(String) -> String,
        https_root: impl FnOnce(&Path) -> Option<PathBuf>,
    ) -> Self {
        let port = free_port();
        let text = edit(daemon_config(dir.path(), port));
        let config = write_file(dir.path(), "edgecam.toml", &text);
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let https_root = https_root(&dir.path().join("data"));
        let mut d = Self {
            child: spawn(&config, &env, &wrapper),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            config,
            dir,
            env,
            wrapper,
            https_root,
        };
        d.wait_healthy();
        d
    }

    /// Starts the daemon again on the same config and data (after a kill).
    pub fn restart(&mut self) {
        let _ = self.child.wait();
        self.child = spawn(&self.config, &self.env, &self.wrapper);
        self.wait_healthy();
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A request over HTTP, or HTTPS (to `localhost`) when the daemon serves it.
    pub fn request(&self, request: &str) -> std::io::Result<(u16, String, Vec<u8>)> {
        match &self.https_root {
            None => super::http_request(self.addr, request),
            Some(root) => super::https_request(self.addr, root, "localhost", request),
        }
    }

    /// `GET path` (HTTP/1.0, `Host: localhost`).
    pub fn get(&self, path: &str) -> std::io::Result<(u16, String, Vec<u8>)> {
        let port = self.addr.port();
        self.request(&format!(
            "GET {path} HTTP/1.0\r\nHost: localhost:{port}\r\n\r\n"
        ))
    }

    /// Polls until `/healthz` says 200.
    pub fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = self.https_root.as_ref().is_none_or(|root| root.exists());
            if ready && matches!(self.get("/healthz"), Ok((200, _, _))) {
                return;
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "daemon exited early"
            );
            assert!(Instant::now() < deadline, "daemon not healthy within 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// `POST /api/commands` with `body`: (status, reply JSON).
    pub fn command(&self, body: &str) -> (u16, serde_json::Value) {
        let (status, _, reply) = super::http_post(self.addr, "/api/commands", body).unwrap();
        (
            status,
            serde_json::from_slice(&reply).unwrap_or(serde_json::Value::Null),
        )
    }
}

fn spawn(config: &Path, env: &[(String, String)], wrapper: &[String]) -> Child {
    let bin = env!("CARGO_BIN_EXE_edgecam");
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    // The daemon starts with stdin/out/err only, as under systemd: the test process's
    // own descriptors (GStreamer makes some without close-on-exec) would otherwise be
    // inherited and counted as the daemon's.
    use std::os::unix::process::CommandExt;
    // SAFETY: close_range is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            libc::close_range(3, u32::MAX, 0);
            Ok(())
        });
    }
    cmd.args(["run", "--config", config.to_str().unwrap()])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env(
            "RUST_LOG",
            std::env::var("EDGECAM_TEST_LOG").unwrap_or_else(|_| "edgecam=debug,info".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
