//! Starting live view: the master, and the signaling transport the config names (LAN or
//! KVS), wired together.

use super::{api, ice_config, kvs, lan, master, LiveDeps, LiveError};

/// Signaling messages waiting for the transport.
const OUTBOUND_QUEUE: usize = 256;

/// The running live-view parts.
pub struct LiveParts {
    /// The LAN signaling endpoint for the web server, when signaling is "lan".
    pub lan: Option<lan::LanSignaling>,
    /// Viewers connected.
    pub viewers: tokio::sync::watch::Receiver<usize>,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts the master and its signaling transport (nothing when live view is off).
pub async fn start(
    config: &crate::config::Config,
    deps: LiveDeps,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<LiveParts, LiveError> {
    let cfg = &config.live;
    if !cfg.enabled {
        return Ok(LiveParts {
            lan: None,
            viewers: tokio::sync::watch::channel(0).1,
            tasks: Vec::new(),
        });
    }
    let api = api(&cfg.ice_addresses)?;
    let (outbound, outbound_rx) = tokio::sync::mpsc::channel(OUTBOUND_QUEUE);
    let (ice_tx, ice) = tokio::sync::watch::channel(ice_config(Vec::new(), cfg.relay_only));
    let metrics = deps.metrics.clone();
    let (master, master_task) =
        master::spawn(api, ice, cfg.max_viewers, deps, outbound, stop.clone());
    if cfg.signaling == crate::config::Signaling::Kvs {
        let channel_name = cfg
            .channel()
            .unwrap_or(config.aws.thing_name.as_str())
            .to_owned();
        let transport = kvs::KvsSignaling {
            aws: crate::aws::Aws::from_config(&config.aws).await?,
            channel_name,
            master: master.inbound.clone(),
            outbound: outbound_rx,
            ice: ice_tx,
            relay_only: cfg.relay_only,
            metrics,
        };
        return Ok(LiveParts {
            lan: None,
            viewers: master.viewers.clone(),
            tasks: vec![master_task, kvs::spawn(transport, stop.clone())],
        });
    }
    let (lan, router_task) = lan::spawn(master.inbound.clone(), outbound_rx, stop.clone());
    Ok(LiveParts {
        lan: Some(lan),
        viewers: master.viewers.clone(),
        tasks: vec![master_task, router_task],
    })
}
