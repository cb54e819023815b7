//! Headless Chromium (Debian's package) driven over the DevTools protocol: opens a page
//! and evaluates JavaScript in it. Binds 127.0.0.1 only.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{free_port, http_get11};

pub struct Browser {
    child: Child,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn launch() -> Browser {
        let port = free_port();
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--mute-audio",
                // Plain loopback host candidates instead of mDNS names, so the camera
                // (bound to 127.0.0.1 in tests) can reach the browser.
                "--disable-features=WebRtcHideLocalIpsWithMdns",
                "--allow-loopback-in-peer-connection",
                "--autoplay-policy=no-user-gesture-required",
                "--remote-debugging-address=127.0.0.1",
                // A microphone that plays a beep, allowed without asking (push-to-talk),
                // and the camera's self-signed HTTPS certificate accepted.
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                "--ignore-certificate-errors",
            ])
            .arg(format!("--remote-debugging-port={port}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium is installed by make test");
        let addr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = loop {
            if let Ok((200, _, body)) = http_get11(addr, "/json/list") {
                let targets: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let page = targets
                    .as_array()
                    .and_then(|t| t.iter().find(|t| t["type"] == "page"));
                if let Some(url) = page.and_then(|p| p["webSocketDebuggerUrl"].as_str()) {
                    break url.to_owned();
                }
            }
            assert!(Instant::now() < deadline, "chromium did not start");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Browser {
            child,
            ws,
            next_id: 0,
            _profile: profile,
        }
    }

    /// One DevTools call; returns its `result`.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.ws.send(Message::text(msg.to_string())).await.unwrap();
        loop {
            let reply = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("devtools answers")
                .unwrap()
                .unwrap();
            let v: Value =
                serde_json::from_str(reply.to_text().unwrap_or("{}")).unwrap_or(Value::Null);
            if v["id"] == id {
                return v["result"].clone();
            }
        }
    }

    pub async fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
    }

    /// Evaluates `expr` in the page and returns its value.
    pub async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// A PNG screenshot of the page.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        let r = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            r["data"].as_str().unwrap_or_default(),
        )
        .unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
