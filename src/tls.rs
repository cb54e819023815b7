//! Mutual TLS clients from PEM files: the server checked against a CA file, the camera
//! presenting its certificate and key (AWS IoT's MQTT and credentials provider both use
//! it). Errors name the config section and key to fix.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// IoT Core's ALPN protocol for MQTT over port 443.
pub const IOT_ALPN: &[u8] = b"x-amzn-mqtt-ca";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{section}.{key}: cannot read {path}: {error}")]
    Read {
        section: &'static str,
        key: &'static str,
        path: String,
        error: String,
    },
    #[error(
        "{section}.key: {path} is readable by other users (mode {mode:o}); run: chmod 600 {path}"
    )]
    KeyReadable {
        section: &'static str,
        path: String,
        mode: u32,
    },
    #[error("TLS set-up: {0}")]
    Rustls(#[from] rustls::Error),
}

fn read_err(
    section: &'static str,
    key: &'static str,
    path: &Path,
    error: impl ToString,
) -> TlsError {
    TlsError::Read {
        section,
        key,
        path: path.display().to_string(),
        error: error.to_string(),
    }
}

/// Refuses a private key that group or others may read.
pub fn check_key_mode(section: &'static str, path: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| read_err(section, "key", path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TlsError::KeyReadable {
            section,
            path: path.display().to_string(),
            mode,
        });
    }
    Ok(())
}

/// Every certificate in a PEM file (at least one).
fn certs(
    section: &'static str,
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_err(section, key, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err(section, key, path, e))?;
    if certs.is_empty() {
        return Err(read_err(section, key, path, "no certificate in the file"));
    }
    Ok(certs)
}

/// The client TLS configuration from the three PEM files of config section `section`.
pub fn client_config(
    section: &'static str,
    ca: &Path,
    cert: &Path,
    key: &Path,
    alpn: bool,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    check_key_mode(section, key)?;
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(section, "ca", ca)? {
        roots.add(c)?;
    }
    let chain = certs(section, "cert", cert)?;
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| read_err(section, "key", key, e))?;
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key_der)?;
    if alpn {
        config.alpn_protocols = vec![IOT_ALPN.to_vec()];
    }
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_others_can_read_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("camera.key");
        std::fs::write(&key, "x").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = check_key_mode("mqtt", &key).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(check_key_mode("mqtt", &key).is_ok());
    }

    #[test]
    fn missing_files_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, "x").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = client_config("mqtt", &dir.path().join("nope.pem"), &key, &key, false)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("mqtt.ca:"), "{err}");
    }
}
