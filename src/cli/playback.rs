//! `edgecam playback`: an HLS URL to watch an event (or the live stream) from the cloud.

use anyhow::Context;

use edgecam::config::Config;
use edgecam::kvs::{stream, Aws};

/// Prints the URL; `event_id` None means live.
pub async fn playback(
    config: &Config,
    event_id: Option<&str>,
    expires_s: u32,
) -> anyhow::Result<()> {
    let name = config.upload.stream(&config.aws.thing_name);
    anyhow::ensure!(
        !name.is_empty(),
        "no stream: set upload.stream_name (or aws.thing_name) in the config"
    );
    let range = match event_id {
        None => None,
        Some(id) => {
            let index = super::clips::open_index(&config.storage.data_dir).await?;
            let range = index.event_range(id).await?.with_context(|| {
                format!("no event {id} in the index (see `edgecam clips list`)")
            })?;
            index.close().await;
            Some(range)
        }
    };
    let aws = Aws::from_config(&config.aws).await?;
    let url = stream::hls_url(&aws, name, range, expires_s)
        .await
        .with_context(|| format!("playback of stream {name}"))?;
    println!("{url}");
    Ok(())
}
