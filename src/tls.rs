//! HTTPS on `listen` (`[tls]`): rustls, TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`, and the
//! certificate re-read when its files change, so that an ACME renewal needs no restart.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// A certificate or key that cannot be used; the message names the key of the config.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `tls.cert` cannot be read or holds no usable certificate.
    #[error("invalid `tls.cert` ({path}): {message}")]
    Cert {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `tls.key` cannot be read, holds no usable private key, or does not match the
    /// certificate.
    #[error("invalid `tls.key` ({path}): {message}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The TLS side of the public listener: the acceptor, and the task that re-reads the
/// certificate files (stopped when this is dropped, with the server).
pub struct Tls {
    acceptor: TlsAcceptor,
    reloader: JoinHandle<()>,
}

impl Tls {
    /// Reads and checks the certificate and key (refusing to start on a bad one), then
    /// starts watching their files. Must be called inside a Tokio runtime.
    pub async fn load(config: &TlsConfig) -> Result<Self, TlsError> {
        // ring: the provider reqwest already builds. Naming it explicitly matters because
        // the AWS SDK enables aws-lc-rs in the same rustls, and with two providers compiled
        // in rustls cannot pick a process default by itself.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let files = CertFiles {
            cert: config.cert.clone(),
            key: config.key.clone(),
        };
        let contents = files.read().await?;
        let resolver = Arc::new(CurrentCert {
            current: RwLock::new(contents.certified_key(&files, &provider)?),
        });
        let mut server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| files.cert_error(e))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        // hyper's auto builder then reads the HTTP/2 preface on connections that chose h2.
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let reloader = tokio::spawn(watch(
            files,
            contents,
            resolver,
            provider,
            config.reload_interval,
        ));
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            reloader,
        })
    }

    /// The acceptor that wraps each accepted connection.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

impl Drop for Tls {
    fn drop(&mut self) {
        self.reloader.abort();
    }
}

/// Hands every handshake the certificate loaded last. A handshake takes the `Arc` it was
/// given, so swapping the certificate never touches a connection already established.
#[derive(Debug)]
struct CurrentCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CurrentCert {
    fn replace(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = key;
    }
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

/// Where the certificate chain and key live.
struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
}

/// The bytes of both files, as last read.
#[derive(PartialEq, Eq)]
struct CertContents {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl CertFiles {
    async fn read(&self) -> Result<CertContents, TlsError> {
        let cert = tokio::fs::read(&self.cert)
            .await
            .map_err(|e| self.cert_error(e))?;
        let key = tokio::fs::read(&self.key)
            .await
            .map_err(|e| self.key_error(e))?;
        Ok(CertContents { cert, key })
    }

    fn cert_error(&self, message: impl ToString) -> TlsError {
        TlsError::Cert {
            path: self.cert.clone(),
            message: message.to_string(),
        }
    }

    fn key_error(&self, message: impl ToString) -> TlsError {
        TlsError::Key {
            path: self.key.clone(),
            message: message.to_string(),
        }
    }
}

impl CertContents {
    /// Parses the PEM chain and key and checks that the key belongs to the certificate.
    fn certified_key(
        &self,
        files: &CertFiles,
        provider: &CryptoProvider,
    ) -> Result<Arc<CertifiedKey>, TlsError> {
        let chain = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| files.cert_error(format!("not a PEM certificate chain: {e}")))?;
        if chain.is_empty() {
            return Err(files.cert_error("no certificate in the file"));
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key)
            .map_err(|e| files.key_error(format!("no PEM private key: {e}")))?;
        let certified = CertifiedKey::from_der(chain, key, provider)
            .map_err(|e| files.key_error(format!("unusable, or not the key of `tls.cert`: {e}")))?;
        Ok(Arc::new(certified))
    }
}

/// Re-reads both files every `interval` and swaps the certificate when their bytes changed
/// and parse. Comparing contents (not mtimes) also catches the symlink swaps of certbot and
/// of Kubernetes secret volumes. A pair that does not load (an ACME client that has written
/// the certificate but not yet the key) leaves the previous certificate in service, and is
/// tried again when the files change next.
async fn watch(
    files: CertFiles,
    mut last: CertContents,
    resolver: Arc<CurrentCert>,
    provider: Arc<CryptoProvider>,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut read_failed = false;
    loop {
        ticker.tick().await;
        let contents = match files.read().await {
            Ok(contents) => contents,
            Err(err) => {
                // Once per outage: a file missing for a while must not flood the log.
                if !read_failed {
                    tracing::warn!(error = %err, "cannot re-read the TLS files; serving the certificate loaded before");
                }
                read_failed = true;
                continue;
            }
        };
        read_failed = false;
        if contents == last {
            continue;
        }
        match contents.certified_key(&files, &provider) {
            Ok(key) => {
                resolver.replace(key);
                tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
            }
            Err(err) => tracing::warn!(
                error = %err,
                "changed TLS files do not load; serving the certificate loaded before"
            ),
        }
        last = contents;
    }
}
