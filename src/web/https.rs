//! HTTPS for the local server (`web.tls`). A self-signed certificate is made at first
//! start and kept in the data directory (`tls/cert.pem`, `tls/key.pem`, both mode 0600)
//! so its fingerprint stays the same across restarts; or the owner gives the files. The
//! SHA-256 fingerprint is logged at start and printed by `edgecam version`, so a user can
//! compare it with what the browser shows before accepting the certificate.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{TlsMode, Web};
use crate::tls::{self, TlsError};

/// The TLS set-up the server runs with.
pub struct Https {
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the certificate, `AB:CD:…`.
    pub fingerprint: String,
    /// The certificate file (for messages).
    pub cert_path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(
        "web.tls: cannot write the self-signed certificate to {}: {source} \
         (check storage.data_dir and its permissions)",
        path.display()
    )]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "web.tls: {} is not a usable certificate and key: {reason}; delete the directory \
         and edgecam makes a new one at the next start",
        dir.display()
    )]
    Unusable { dir: PathBuf, reason: String },
    #[error("web.tls: cannot make a certificate: {0}")]
    Generate(String),
}

/// Where the self-signed certificate and key live in the data directory.
pub fn self_signed_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// The certificate file the server presents, when HTTPS is on.
pub fn certificate_path(web: &Web, data_dir: &Path) -> Option<PathBuf> {
    match web.tls_mode() {
        TlsMode::Off | TlsMode::Auto => None,
        TlsMode::SelfSigned => Some(self_signed_paths(data_dir).0),
        TlsMode::Files => Some(web.tls_cert.clone()),
    }
}

/// The first certificate of a PEM file.
pub fn read_certificate(path: &Path) -> Result<CertificateDer<'static>, TlsError> {
    let mut chain = tls::certs("web", "tls_cert", path)?;
    Ok(chain.swap_remove(0))
}

/// The server's TLS, or `None` when `web.tls` is off. `names` are the host names and
/// addresses a new self-signed certificate is made for.
pub fn set_up(web: &Web, data_dir: &Path, names: &[String]) -> Result<Option<Https>, HttpsError> {
    match web.tls_mode() {
        TlsMode::Off | TlsMode::Auto => Ok(None),
        TlsMode::Files => {
            let (config, leaf) = tls::server_files(
                "web",
                ("tls_cert", &web.tls_cert),
                ("tls_key", &web.tls_key),
            )?;
            Ok(Some(Https {
                config,
                fingerprint: tls::fingerprint(&leaf),
                cert_path: web.tls_cert.clone(),
            }))
        }
        TlsMode::SelfSigned => {
            let (cert_path, key_path) = self_signed_paths(data_dir);
            if !cert_path.exists() || !key_path.exists() {
                make_self_signed(&cert_path, &key_path, names)?;
            }
            let unusable = |reason: String| HttpsError::Unusable {
                dir: cert_path.parent().unwrap_or(data_dir).to_path_buf(),
                reason,
            };
            let cert = read_certificate(&cert_path).map_err(|e| unusable(e.to_string()))?;
            let key =
                PrivateKeyDer::from_pem_file(&key_path).map_err(|e| unusable(e.to_string()))?;
            let fingerprint = tls::fingerprint(&cert);
            let config =
                tls::server_config(vec![cert], key).map_err(|e| unusable(e.to_string()))?;
            Ok(Some(Https {
                config,
                fingerprint,
                cert_path,
            }))
        }
    }
}

/// Makes a certificate for `names` (ECDSA P-256, valid 1975–4096 so a camera whose clock
/// starts at 1970 still accepts it) and writes both files with mode 0600.
fn make_self_signed(cert_path: &Path, key_path: &Path, names: &[String]) -> Result<(), HttpsError> {
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| HttpsError::Generate(e.to_string()))?;
    let host = names
        .iter()
        .find(|n| n.parse::<std::net::IpAddr>().is_err());
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("edgecam {}", host.map(String::as_str).unwrap_or("camera")),
    );
    let key = rcgen::KeyPair::generate().map_err(|e| HttpsError::Generate(e.to_string()))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| HttpsError::Generate(e.to_string()))?;
    if let Some(dir) = cert_path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| HttpsError::Write {
                path: dir.to_path_buf(),
                source,
            })?;
    }
    // The key first: a certificate without its key would be kept and then refused.
    write_private(key_path, key.serialize_pem().as_bytes())?;
    write_private(cert_path, cert.pem().as_bytes())?;
    tracing::info!(path = %cert_path.display(), "made a self-signed HTTPS certificate");
    Ok(())
}

/// Writes a file with mode 0600 through a temporary name, so a power cut leaves either
/// the whole file or none.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), HttpsError> {
    let err = |source| HttpsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn self_signed_web() -> Web {
        Web {
            listen: "0.0.0.0:8443".into(),
            token: Some("0123456789abcdef".into()),
            ..Web::default()
        }
    }

    #[test]
    fn the_self_signed_certificate_is_made_once_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let names = ["localhost".to_string(), "127.0.0.1".to_string()];
        let first = set_up(&self_signed_web(), dir.path(), &names)
            .unwrap()
            .unwrap();
        let (cert, key) = self_signed_paths(dir.path());
        for file in [&cert, &key] {
            let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
        let again = set_up(&self_signed_web(), dir.path(), &names)
            .unwrap()
            .unwrap();
        assert_eq!(first.fingerprint, again.fingerprint);
        assert_eq!(first.fingerprint.len(), 32 * 3 - 1);
        let der = read_certificate(&cert).unwrap();
        assert_eq!(tls::fingerprint(&der), first.fingerprint);
    }

    #[test]
    fn a_damaged_certificate_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed_paths(dir.path());
        std::fs::create_dir_all(cert.parent().unwrap()).unwrap();
        std::fs::write(&cert, "not pem").unwrap();
        std::fs::write(&key, "not pem").unwrap();
        let err = set_up(&self_signed_web(), dir.path(), &[])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("delete the directory"), "{err}");
    }

    #[test]
    fn loopback_defaults_to_plain_http() {
        let dir = tempfile::tempdir().unwrap();
        assert!(set_up(&Web::default(), dir.path(), &[]).unwrap().is_none());
        assert!(certificate_path(&Web::default(), dir.path()).is_none());
        assert!(!dir.path().join("tls").exists());
    }
}
