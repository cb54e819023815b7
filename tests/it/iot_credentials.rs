//! The IoT credentials provider against a fake endpoint with mutual TLS: credentials come
//! with the camera's certificate, are cached and fetched again before they expire; no
//! certificate fails; a certificate for another thing gets a 403 that says what to check;
//! and the daemon's KVS signaling works on IoT-issued credentials end to end.

use crate::support;
use std::time::Duration;

use crate::support::iot_fake::{FakeIot, ROLE_ALIAS};
use crate::support::kvs_fake::FakeKvs;
use crate::support::mosquitto::client_leaf;
use crate::support::pki::Pki;
use edgecam::aws::iot::{IotCredentials, IotEndpoint};

const THING: &str = "porch-cam";

fn provider(fake: &FakeIot, pki: &Pki, thing: &str, with_cert: bool) -> IotCredentials {
    let leaf = client_leaf(pki, thing);
    let tls = if with_cert {
        edgecam::tls::client_config("aws", &pki.ca_pem, &leaf.cert, &leaf.key, false).unwrap()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::pem::PemObject::pem_file_iter(&pki.ca_pem).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        std::sync::Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    };
    IotCredentials::new(IotEndpoint {
        host: fake.host.clone(),
        role_alias: ROLE_ALIAS.into(),
        thing_name: thing.into(),
        tls,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_come_over_mutual_tls_and_are_refreshed_before_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let fake = FakeIot::start(&pki, THING).await;
    *fake.lifetime.lock().unwrap() = Duration::from_secs(8);
    let p = provider(&fake, &pki, THING, true);
    let first = p.get().await.unwrap();
    assert_eq!(first.access_key_id(), support::sigv4::ACCESS_KEY);
    assert!(first.session_token().is_some());
    let again = p.get().await.unwrap();
    assert_eq!(fake.fetches(), 1, "cached");
    assert_eq!(again.expiry(), first.expiry());
    // An 8 s lifetime is refreshed 2–3 s before it ends.
    tokio::time::sleep(Duration::from_millis(6_200)).await;
    let fresh = p.get().await.unwrap();
    assert_eq!(fake.fetches(), 2, "fetched again before expiry");
    assert!(fresh.expiry() > first.expiry());
    assert!(
        first.expiry().unwrap() > std::time::SystemTime::now(),
        "the old ones had not expired yet"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_certificate_fails_and_another_things_certificate_gets_advice() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let fake = FakeIot::start(&pki, THING).await;
    let err = provider(&fake, &pki, THING, false)
        .get()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot reach"), "{err}");
    let err = provider(&fake, &pki, "someone-else", true)
        .get()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("403") && err.contains("role alias"), "{err}");
    assert_eq!(fake.fetches(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_signs_kvs_calls_with_iot_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let iot = FakeIot::start(&pki, THING).await;
    // The KVS fake has its own CA: keep its files apart from this PKI's.
    let kvs_dir = dir.path().join("kvs");
    std::fs::create_dir_all(&kvs_dir).unwrap();
    let kvs = FakeKvs::start(&kvs_dir).await;
    let leaf = client_leaf(&pki, THING);
    // No AWS keys in the environment: only the IoT provider can sign.
    let env = [
        ("SSL_CERT_FILE", kvs.ca_pem.display().to_string()),
        ("AWS_CONFIG_FILE", "/dev/null".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let aws = format!(
        "credentials = \"iot\"\nthing_name = \"{THING}\"\niot_credentials_endpoint = \"{}\"\n\
         role_alias = \"{ROLE_ALIAS}\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        iot.host,
        pki.ca_pem.display(),
        leaf.cert.display(),
        leaf.key.display()
    );
    let config = kvs
        .daemon_config("porch")
        .replace("[aws]\n", &format!("[aws]\n{aws}"));
    let _d = tokio::task::block_in_place(|| {
        support::daemon::Daemon::start_env(&env, |t| {
            format!("{t}\n{config}[motion]\nenabled = false\n")
        })
    });
    assert!(
        kvs.wait(Duration::from_secs(15), |f| f.master_online())
            .await,
        "connected with IoT credentials: {:?}",
        kvs.errors()
    );
    assert!(iot.fetches() >= 1);
    assert_eq!(kvs.errors(), Vec::<String>::new());
}
