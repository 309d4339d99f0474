//! TLS to a node reached over `https://` (a remote archive node, a provider): the
//! system's roots, plus the certificates of `upstream.ca_file` for a node with a
//! certificate of its own making. One client config serves the HTTP pool, the head's
//! polls and every websocket to the node.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;

use rustls::{ClientConfig, RootCertStore};

use crate::config::read_ca_file;

/// The client config for the node: ring's provider, TLS 1.2 and 1.3, the system's
/// roots and `ca_file`'s.
pub(crate) fn client_config(ca_file: Option<&Path>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    // A machine without a CA bundle has no roots: a node with a public certificate
    // then fails its handshake, and says why, at the first call.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        // Checked at load; a file changed since is reported and skipped.
        match read_ca_file(path) {
            Ok(certs) => {
                roots.add_parsable_certificates(certs);
            }
            Err(e) => tracing::error!(error = %e, "upstream.ca_file"),
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth());
    match config {
        Ok(config) => Arc::new(config),
        // ring supports every default version; this cannot fail with it.
        Err(e) => unreachable!("ring lacks TLS's default versions: {e}"),
    }
}

/// A connector for the node's pool: http, or https under `tls`.
pub(crate) type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

pub(crate) fn connector(tls: &Arc<ClientConfig>, connect_timeout: Duration) -> Connector {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    // The https connector dials through this one for both schemes.
    http.enforce_http(false);
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(ClientConfig::clone(tls))
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}
