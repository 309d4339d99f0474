//! `status` polling: the head while the websocket is down, and `catching_up` and the
//! chain id always (NewBlock events carry neither).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tendermint_rpc::endpoint::status;

use super::Shared;

/// A status answer is about 1 KiB; anything near this is not one.
const MAX_STATUS_BYTES: usize = 256 * 1024;

const STATUS_BODY: &[u8] = br#"{"jsonrpc":"2.0","id":0,"method":"status","params":{}}"#;
/// Says in the node's logs (and a proxy's) which `status` calls are the gateway's own.
const USER_AGENT: &str = concat!("cometgate/", env!("CARGO_PKG_VERSION"), " head-tracker");

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct StatusInfo {
    pub height: u64,
    /// The node's lowest block (its pruning base).
    pub earliest: u64,
    pub catching_up: bool,
    pub chain_id: String,
}

pub(crate) struct Poller {
    client: Client<crate::upstream::tls::Connector, Full<Bytes>>,
    url: Uri,
    timeout: Duration,
}

impl Poller {
    pub(super) fn new(url: &Uri, timeout: Duration, tls: &Arc<rustls::ClientConfig>) -> Poller {
        let connector = crate::upstream::tls::connector(tls, timeout);
        Poller {
            client: Client::builder(TokioExecutor::new()).build(connector),
            url: url.clone(),
            timeout,
        }
    }

    /// One poll; raises the head and records what the node says of itself.
    pub(crate) async fn poll(&self, shared: &Shared) -> Result<(), String> {
        let body = tokio::time::timeout(self.timeout, self.fetch())
            .await
            .map_err(|_| format!("status timed out after {:?}", self.timeout))??;
        let info = parse_status(&body)?;
        shared.record_status(info.height, info.catching_up, info.chain_id);
        shared.state().earliest = Some(info.earliest);
        Ok(())
    }

    async fn fetch(&self) -> Result<Bytes, String> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, USER_AGENT)
            .body(Full::new(Bytes::from_static(STATUS_BODY)))
            .map_err(|e| e.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("status request failed: {e}"))?;
        if response.status() != StatusCode::OK {
            return Err(format!(
                "status answered HTTP {}",
                response.status().as_u16()
            ));
        }
        let body = Limited::new(response.into_body(), MAX_STATUS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("status body: {e}"))?;
        Ok(body.to_bytes())
    }
}

/// Reads a JSON-RPC `status` answer, its `result` typed by tendermint-rpc.
pub(crate) fn parse_status(body: &[u8]) -> Result<StatusInfo, String> {
    #[derive(Deserialize)]
    struct Envelope {
        result: Option<status::Response>,
    }
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| format!("status is not readable: {e}"))?;
    let result = envelope.result.ok_or("status answered an error")?;
    Ok(StatusInfo {
        height: result.sync_info.latest_block_height.value(),
        earliest: result.sync_info.earliest_block_height.value(),
        catching_up: result.sync_info.catching_up,
        chain_id: result.node_info.network.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v0.38 kvstore node's `status`, from tendermint-rs's RPC fixtures
    /// (`kvstore_fixtures/v0_38/incoming/status.json`, Apache-2.0).
    const STATUS: &str = r#"{
      "id": "eaef4f0c-184a-4d50-96fa-1268410ddb04",
      "jsonrpc": "2.0",
      "result": {
        "node_info": {
          "channels": "40202122233038606100",
          "id": "cf4a66aa29e5123abfdfbdf485da6788bb8e46d1",
          "listen_addr": "tcp://0.0.0.0:26656",
          "moniker": "dockernode",
          "network": "dockerchain",
          "other": { "rpc_address": "tcp://0.0.0.0:26657", "tx_index": "on" },
          "protocol_version": { "app": "1", "block": "11", "p2p": "8" },
          "version": "0.38.0-alpha.1"
        },
        "sync_info": {
          "catching_up": false,
          "earliest_app_hash": "0000000000000000",
          "earliest_block_hash": "6CD5CF4E23A49D9BC073D6F305D29D1B8B5193B534C237696D42FEA5AFBCD520",
          "earliest_block_height": "1",
          "earliest_block_time": "2023-05-17T14:12:48.347696215Z",
          "latest_app_hash": "0600000000000000",
          "latest_block_hash": "B647CF507155BADAC86FADD00E38B065C63A84953A847AA9FA99DB1CEE6C4DA9",
          "latest_block_height": "232",
          "latest_block_time": "2023-05-17T14:14:48.530153458Z"
        },
        "validator_info": {
          "address": "2DD9F44FD9067555C322243C3C913BA7B51D2BE0",
          "pub_key": { "type": "tendermint/PubKeyEd25519", "value": "bNNlGls5R25wC3Sd8720F/3+7IZBhXcD22MNFtPk/v0=" },
          "voting_power": "10"
        }
      }
    }"#;

    #[test]
    fn reads_height_catching_up_and_chain_id() {
        let info = parse_status(STATUS.as_bytes()).unwrap();
        assert_eq!(
            info,
            StatusInfo {
                height: 232,
                earliest: 1,
                catching_up: false,
                chain_id: "dockerchain".into()
            }
        );
        let catching_up = STATUS.replace(r#""catching_up": false"#, r#""catching_up": true"#);
        assert!(parse_status(catching_up.as_bytes()).unwrap().catching_up);
    }

    #[test]
    fn errors_and_garbage_are_refused() {
        let error =
            r#"{"jsonrpc":"2.0","id":0,"error":{"code":-32603,"message":"Internal error"}}"#;
        assert!(parse_status(error.as_bytes()).is_err());
        assert!(parse_status(b"<html>").is_err());
        let no_height = STATUS.replace(r#""latest_block_height": "232","#, "");
        assert!(parse_status(no_height.as_bytes()).is_err());
    }
}
