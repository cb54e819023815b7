//! `edgecam playback` (an HLS URL to watch an event, or the live stream, from the cloud;
//! with `--images`, the event's still images) and `edgecam clips fetch` (an event's MP4
//! from the cloud, with GetClip).

use anyhow::Context;

use edgecam::aws::images::ImageSettings;
use edgecam::aws::{images, stream, Aws};
use edgecam::config::Config;

/// The configured stream name, or what to set.
fn stream_name(config: &Config) -> anyhow::Result<&str> {
    let name = config.upload.stream(&config.aws.thing_name);
    anyhow::ensure!(
        !name.is_empty(),
        "no stream: set upload.stream_name (or aws.thing_name) in the config"
    );
    Ok(name)
}

/// The time an event's video covers, from the index.
async fn event_range(
    config: &Config,
    id: &str,
) -> anyhow::Result<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> {
    let index = super::clips::open_index(&config.storage.data_dir).await?;
    let range = index
        .event_range(id)
        .await?
        .with_context(|| format!("no event {id} in the index (see `edgecam clips list`)"))?;
    index.close().await;
    Ok(range)
}

/// Downloads the event's video from the stream into `out` (via `out.tmp`).
pub async fn fetch(config: &Config, event_id: &str, out: &std::path::Path) -> anyhow::Result<()> {
    let name = stream_name(config)?;
    let range = event_range(config, event_id).await?;
    let aws = Aws::from_config(&config.aws).await?;
    let mut body = stream::clip(&aws, name, range)
        .await
        .with_context(|| format!("clip of event {event_id} from stream {name}"))?;
    let tmp = out.with_extension("mp4.tmp");
    let mut file = tokio::fs::File::create(&tmp)
        .await
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let bar = indicatif::ProgressBar::new_spinner().with_style(
        indicatif::ProgressStyle::with_template("{spinner} {bytes} {binary_bytes_per_sec}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let mut total = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("the download was cut")?;
        tokio::io::AsyncWriteExt::write_all(&mut file, &chunk).await?;
        total += chunk.len() as u64;
        bar.set_position(total);
    }
    file.sync_all().await?;
    tokio::fs::rename(&tmp, out).await?;
    bar.finish_and_clear();
    eprintln!("fetched {} ({total} bytes)", out.display());
    Ok(())
}

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

/// Writes the event's still images into `dir` as `<event>-<ms>.<ext>`, one line each.
pub async fn images(config: &Config, event_id: &str, dir: &std::path::Path) -> anyhow::Result<()> {
    let name = stream_name(config)?;
    let range = event_range(config, event_id).await?;
    let settings = ImageSettings::of(&config.upload, &config.aws.region);
    let aws = Aws::from_config(&config.aws).await?;
    let found = images::images(&aws, name, range, &settings)
        .await
        .with_context(|| format!("images of event {event_id} from stream {name}"))?;
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let (mut saved, mut missing) = (0, 0);
    for image in &found {
        let at = image
            .at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        match &image.content {
            Ok(bytes) => {
                let ext = settings.extension();
                let file = dir.join(format!("{event_id}-{}.{ext}", image.at.timestamp_millis()));
                tokio::fs::write(&file, bytes)
                    .await
                    .with_context(|| format!("cannot write {}", file.display()))?;
                println!("{at}  {}  {} bytes", file.display(), bytes.len());
                saved += 1;
            }
            Err(why) => {
                println!("{at}  no image: {why}");
                missing += 1;
            }
        }
    }
    anyhow::ensure!(
        saved > 0,
        "no images of event {event_id} in stream {name} ({missing} missing): has it been uploaded? (`edgecam clips list` shows upload progress)"
    );
    eprintln!("{saved} images in {} ({missing} missing)", dir.display());
    Ok(())
}
