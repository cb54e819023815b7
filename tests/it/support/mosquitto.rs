//! A real mosquitto broker per test on 127.0.0.1, TLS with a test CA and
//! `require_certificate true` (IoT Core's mutual TLS), persistence on, and an observer
//! client (rumqttc) that records every message it sees.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};

use super::pki::{Leaf, Pki};

pub struct Broker {
    pub port: u16,
    conf: PathBuf,
    child: Option<Child>,
}

impl Broker {
    pub fn start(dir: &Path, pki: &Pki) -> Self {
        let server = pki.leaf("broker", &["127.0.0.1", "localhost"]);
        let port = super::free_port();
        let data = dir.join("mosquitto");
        std::fs::create_dir_all(&data).unwrap();
        let conf = data.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "user root\nper_listener_settings false\nallow_anonymous false\n\
                 listener {port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n\
                 require_certificate true\nuse_identity_as_username true\n\
                 persistence true\npersistence_location {data}/\n\
                 log_dest file {data}/mosquitto.log\nlog_type all\n",
                ca = pki.ca_pem.display(),
                cert = server.cert.display(),
                key = server.key.display(),
                data = data.display(),
            ),
        )
        .unwrap();
        let mut b = Broker {
            port,
            conf,
            child: None,
        };
        b.resume();
        b
    }

    /// Starts (again) on the same port and persistence.
    pub fn resume(&mut self) {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("mosquitto is installed (packaging/install-deps.sh --test)");
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let until = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < until, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it the way an operator would (SIGTERM: it saves its persistence).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }

    /// The `[mqtt]` section for a daemon with client certificate `client`.
    pub fn daemon_config(&self, pki: &Pki, client: &Leaf, thing: &str, extra: &str) -> String {
        format!(
            "[mqtt]\nenabled = true\nhost = \"127.0.0.1\"\nport = {}\nthing_name = \"{thing}\"\n\
             ca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\nkeep_alive_s = 30\n{extra}\n",
            self.port,
            pki.ca_pem.display(),
            client.cert.display(),
            client.key.display(),
        )
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A private key file the daemon accepts (mode 0600).
pub fn client_leaf(pki: &Pki, name: &str) -> Leaf {
    use std::os::unix::fs::PermissionsExt;
    let leaf = pki.leaf(name, &[name]);
    std::fs::set_permissions(&leaf.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    leaf
}

/// A message the observer received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub at: Instant,
}

impl Seen {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// A test client subscribed to `filters`, recording what arrives; it reconnects by itself.
pub struct Observer {
    pub client: AsyncClient,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

fn client_tls(pki: &Pki, leaf: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&pki.ca_pem).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder().with_root_certificates(roots);
    Arc::new(match leaf {
        Some(l) => b
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(l.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(l.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    })
}

/// Connects once with `leaf` (or no certificate); Ok when the broker accepted.
pub async fn try_connect(broker: &Broker, pki: &Pki, leaf: Option<&Leaf>) -> Result<(), String> {
    let mut o = MqttOptions::new("probe", "127.0.0.1", broker.port);
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        client_tls(pki, leaf),
    )));
    let (_c, mut el) = AsyncClient::new(o, 10);
    match tokio::time::timeout(Duration::from_secs(5), el.poll()).await {
        Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => Ok(()),
        Ok(Ok(other)) => Err(format!("unexpected {other:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

impl Observer {
    pub async fn start(broker: &Broker, pki: &Pki, filters: &[&str]) -> Self {
        Self::start_as(broker, pki, "observer", filters).await
    }

    /// A second observer beside the first needs its own client id (a broker closes the
    /// older of two sessions with one id).
    pub async fn start_as(broker: &Broker, pki: &Pki, id: &str, filters: &[&str]) -> Self {
        let leaf = client_leaf(pki, "observer");
        let mut o = MqttOptions::new(id, "127.0.0.1", broker.port);
        o.set_clean_session(false);
        o.set_keep_alive(Duration::from_secs(5));
        o.set_max_packet_size(512 * 1024, 512 * 1024);
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            client_tls(pki, Some(&leaf)),
        )));
        let (client, mut el) = AsyncClient::new(o, 100);
        for f in filters {
            client.subscribe(*f, QoS::AtLeastOnce).await.unwrap();
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let mut ready_tx = Some(ready_tx);
        tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => sink.lock().unwrap().push(Seen {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                        retain: p.retain,
                        at: Instant::now(),
                    }),
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        let _ = tokio::time::timeout(Duration::from_secs(10), ready).await;
        Observer { client, seen }
    }

    pub fn on(&self, topic: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.topic == topic)
            .cloned()
            .collect()
    }

    /// Waits until `f` holds over the messages on `topic`.
    pub async fn wait(
        &self,
        topic: &str,
        limit: Duration,
        f: impl Fn(&[Seen]) -> bool,
    ) -> Vec<Seen> {
        let until = Instant::now() + limit;
        loop {
            let msgs = self.on(topic);
            if f(&msgs) || Instant::now() >= until {
                return msgs;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn publish(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .unwrap();
    }
}
