//! TLS for client and node-to-node connections (design §8).
//!
//! A node whose `[Security]` names a `Certificate` and `Key` serves every connection (client
//! service, peer service, health, reflection: they share one port) over TLS with that
//! identity. With a `TrustedCA` it asks connecting parties for a certificate signed by that
//! CA; with `ClientCertificateRequired = yes` a party without one is refused in the
//! handshake (mutual TLS). The grid secret still applies on top.
//!
//! The connecting side is a [`ClientTls`]: the CA that the server's certificate must chain
//! to, and optionally the identity (certificate and key) to present. A grid node connects to
//! the other nodes with its own `Certificate`/`Key` and its `TrustedCA`
//! ([`peer_tls_from_config`]); the server installs that once at start with [`set_peer_tls`],
//! and [`crate::grid::peer::PeerClient::new`] reads it, so every peer connection of the
//! process uses it. The server's certificate is checked against the host of the address
//! (`127.0.0.1`, `db1.example`), so node certificates name every host and address the nodes
//! are reached by in their subject alternative names.
//!
//! Only tonic's own TLS (feature `tls-ring`) is used: rustls with the ring provider.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::Config;

/// How long a connecting party may take to complete the TLS handshake before the node
/// drops the connection (and frees its `[Com] MaxConnections` slot).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The connecting side's TLS settings: the CA (PEM, one or more certificates) that the
/// server's certificate must be signed by, and optionally the certificate and private key
/// (PEM) to present to a server that asks for one.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientTls {
    ca_pem: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// A grid node's TLS settings for its connections to the other nodes: its `TrustedCA` and
/// its own `Certificate`/`Key`.
pub type PeerTls = ClientTls;

/// Never shows key material.
impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca_pem_bytes", &self.ca_pem.len())
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

impl ClientTls {
    /// Settings from PEM bytes: `ca_pem` holds the trusted CA certificate(s), `identity` the
    /// certificate (chain) and private key to present. Checks that the PEM parses (a key
    /// that does not match the certificate is only noticed by the server).
    pub fn new(ca_pem: Vec<u8>, identity: Option<(Vec<u8>, Vec<u8>)>) -> Result<ClientTls, String> {
        require_pem(&ca_pem, "CERTIFICATE", "the CA")?;
        if let Some((cert, key)) = &identity {
            require_pem(cert, "CERTIFICATE", "the certificate")?;
            require_pem(key, "PRIVATE KEY", "the key")?;
        }
        let tls = ClientTls { ca_pem, identity };
        // Building a connector parses every PEM item; a bad file is reported now rather
        // than as an unreachable node later.
        tonic::transport::Endpoint::from_static("https://localhost")
            .tls_config(tls.tls_config())
            .map_err(|e| format!("invalid TLS settings: {}", error_chain(&e)))?;
        Ok(tls)
    }

    /// Reads the CA file and, when given, the certificate and key files. The error names
    /// the file that cannot be read or parsed.
    pub fn from_files(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<ClientTls, String> {
        let ca_pem = read_pem_file("CA", ca, "CERTIFICATE")?;
        let identity_files = identity;
        let identity = match identity {
            Some((cert, key)) => Some((
                read_pem_file("certificate", cert, "CERTIFICATE")?,
                read_pem_file("key", key, "PRIVATE KEY")?,
            )),
            None => None,
        };
        ClientTls::new(ca_pem, identity).map_err(|e| match identity_files {
            Some((cert, key)) => format!(
                "{e} (CA {}, certificate {}, key {})",
                ca.display(),
                cert.display(),
                key.display()
            ),
            None => format!("{e} (CA {})", ca.display()),
        })
    }

    /// Whether a client certificate is presented.
    pub fn has_identity(&self) -> bool {
        self.identity.is_some()
    }

    /// tonic's client TLS configuration. The server name checked against the server's
    /// certificate is the host of the URI connected to (tonic's default).
    pub fn tls_config(&self) -> ClientTlsConfig {
        let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        match &self.identity {
            Some((cert, key)) => config.identity(Identity::from_pem(cert, key)),
            None => config,
        }
    }
}

/// Reads one PEM file; `what` names it in the error (e.g. `[Security] Certificate`), and
/// `label` is the PEM item it must contain (`CERTIFICATE`, `PRIVATE KEY`).
pub fn read_pem_file(what: &str, path: &Path, label: &str) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read {what} file {}: {e}", path.display()))?;
    require_pem(&bytes, label, &format!("{what} file {}", path.display()))?;
    Ok(bytes)
}

/// Checks that `pem` has a `-----BEGIN …{label}-----` item (`PRIVATE KEY` also matches the
/// `RSA PRIVATE KEY` and `EC PRIVATE KEY` forms).
fn require_pem(pem: &[u8], label: &str, what: &str) -> Result<(), String> {
    let text = String::from_utf8_lossy(pem);
    let found = text.lines().any(|line| {
        let line = line.trim();
        line.starts_with("-----BEGIN ") && line.ends_with(&format!("{label}-----"))
    });
    if found {
        Ok(())
    } else {
        Err(format!("{what} holds no PEM {label}"))
    }
}

/// The server side for `config`: `None` without `[Security] Certificate` (plain text).
/// Reads the certificate, key and trusted CA files now; an unreadable or malformed file is
/// an error naming it.
pub fn server_tls_from_config(
    config: &Config,
    workdir: &Path,
) -> Result<Option<ServerTlsConfig>, String> {
    let (Some(cert_path), Some(key_path)) =
        (config.certificate_path(workdir), config.key_path(workdir))
    else {
        return Ok(None);
    };
    let cert = read_pem_file("[Security] Certificate", &cert_path, "CERTIFICATE")?;
    let key = read_pem_file("[Security] Key", &key_path, "PRIVATE KEY")?;
    let mut tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .timeout(HANDSHAKE_TIMEOUT);
    if let Some(ca_path) = config.trusted_ca_path(workdir) {
        let ca = read_pem_file("[Security] TrustedCA", &ca_path, "CERTIFICATE")?;
        tls = tls
            .client_ca_root(Certificate::from_pem(ca))
            .client_auth_optional(!config.security.client_certificate_required);
    }
    // Parse everything now (tonic does it when the acceptor is built), so a bad file stops
    // the start instead of failing every handshake.
    tonic::transport::Server::builder()
        .tls_config(tls.clone())
        .map_err(|e| {
            format!(
                "invalid TLS settings in [Security] (Certificate {}, Key {}{}): {}",
                cert_path.display(),
                key_path.display(),
                config
                    .trusted_ca_path(workdir)
                    .map(|p| format!(", TrustedCA {}", p.display()))
                    .unwrap_or_default(),
                error_chain(&e)
            )
        })?;
    Ok(Some(tls))
}

/// How a node's server treats client certificates, for the message log.
pub fn describe_server_tls(config: &Config) -> &'static str {
    match (
        config.security.trusted_ca.is_some(),
        config.security.client_certificate_required,
    ) {
        (_, true) => "mutual TLS: client certificates required",
        (true, false) => "TLS: client certificates checked when presented",
        (false, false) => "TLS: client certificates not checked",
    }
}

/// The node's settings for connecting to the other grid nodes: `None` without
/// `[Security] Certificate` (the grid runs in plain text). With a certificate, the grid runs
/// over TLS: the node needs `TrustedCA` to check the other nodes' certificates, and presents
/// its own `Certificate`/`Key` to them.
pub fn peer_tls_from_config(config: &Config, workdir: &Path) -> Result<Option<PeerTls>, String> {
    let (Some(cert), Some(key)) = (config.certificate_path(workdir), config.key_path(workdir))
    else {
        return Ok(None);
    };
    let Some(ca) = config.trusted_ca_path(workdir) else {
        return Err(
            "[Security] Certificate is set but TrustedCA is not: a grid node connects to the \
             other nodes over TLS and needs TrustedCA to check their certificates"
                .to_string(),
        );
    };
    let ca_pem = read_pem_file("[Security] TrustedCA", &ca, "CERTIFICATE")?;
    let cert_pem = read_pem_file("[Security] Certificate", &cert, "CERTIFICATE")?;
    let key_pem = read_pem_file("[Security] Key", &key, "PRIVATE KEY")?;
    ClientTls::new(ca_pem, Some((cert_pem, key_pem)))
        .map(Some)
        .map_err(|e| {
            format!(
                "{e} ([Security] TrustedCA {}, Certificate {}, Key {})",
                ca.display(),
                cert.display(),
                key.display()
            )
        })
}

static PEER_TLS: RwLock<Option<Arc<PeerTls>>> = RwLock::new(None);

/// Sets the TLS settings of every peer connection this process makes from now on
/// (`None`: plain text). The server calls it once at start; peer clients made before keep
/// theirs.
pub fn set_peer_tls(tls: Option<PeerTls>) {
    *PEER_TLS.write().unwrap_or_else(|e| e.into_inner()) = tls.map(Arc::new);
}

/// The process-wide peer TLS settings (see [`set_peer_tls`]).
pub fn peer_tls() -> Option<Arc<PeerTls>> {
    PEER_TLS.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// An error and its sources as one line, skipping a source whose text repeats its parent's.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_files_are_checked_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = ClientTls::from_files(&missing, None).unwrap_err();
        assert!(e.contains("nope.pem"), "{e}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "hello").unwrap();
        let e = ClientTls::from_files(&garbage, None).unwrap_err();
        assert!(
            e.contains("garbage.pem") && e.contains("CERTIFICATE"),
            "{e}"
        );
        let e = ClientTls::new(b"hello".to_vec(), None).unwrap_err();
        assert!(e.contains("CERTIFICATE"), "{e}");
    }

    #[test]
    fn a_valid_ca_makes_client_settings() {
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let tls = ClientTls::new(ca.cert.pem().into_bytes(), None).unwrap();
        assert!(!tls.has_identity());
        let with_id = ClientTls::new(
            ca.cert.pem().into_bytes(),
            Some((
                ca.cert.pem().into_bytes(),
                ca.signing_key.serialize_pem().into_bytes(),
            )),
        )
        .unwrap();
        assert!(with_id.has_identity());
        assert!(!format!("{with_id:?}").contains("PRIVATE"));
    }
}
