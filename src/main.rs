//! The `edgecam` command line: `run`, `check-config`, `trigger`, `clips`, `version`.

mod cli;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edgecam::config::{self, Config};
use edgecam::{capture, daemon, tls, web, EXIT_CONFIG};

/// Config used when --config is not given and this file exists.
const SYSTEM_CONFIG: &str = "/etc/edgecam/edgecam.toml";
/// Config used otherwise (a development checkout).
const LOCAL_CONFIG: &str = "config/dev.toml";

#[derive(Parser, Debug)]
#[command(
    name = "edgecam",
    version,
    about = "Home security camera daemon: live view, pre-roll event clips, MQTT, cloud upload",
    long_about = "edgecam captures one camera through a GStreamer pipeline and serves live view, \
                  event recording and a local HTTP API.\n\n\
                  The config file is TOML; every key has a default, documented in the shipped \
                  edgecam.toml. Without --config, edgecam reads /etc/edgecam/edgecam.toml if it \
                  exists, else ./config/dev.toml (a source checkout)."
)]
struct Cli {
    /// Config file [default: /etc/edgecam/edgecam.toml, else ./config/dev.toml]
    #[arg(
        long,
        short = 'c',
        global = true,
        value_name = "PATH",
        env = "EDGECAM_CONFIG"
    )]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon until SIGTERM or SIGINT
    Run,
    /// Check the config file and the pipeline it selects, then exit (0 = usable, 78 = not)
    CheckConfig {
        /// Config file to check (same as --config)
        path: Option<PathBuf>,
    },
    /// Ask the running daemon to record now (like a doorbell press)
    Trigger {
        /// Record at least this many seconds (plus post-roll)
        #[arg(long, short = 'd', value_name = "SECONDS")]
        duration: Option<f64>,
        /// Label for the event
        #[arg(long, short = 'l')]
        label: Option<String>,
    },
    /// List, inspect and export recorded clips
    Clips {
        #[command(subcommand)]
        command: ClipsCommand,
    },
    /// Print an HLS URL that plays an event from the Kinesis Video stream (or, with
    /// --live, the live stream)
    Playback {
        /// The event (see `edgecam clips list`)
        #[arg(required_unless_present = "live")]
        event_id: Option<String>,
        /// The live stream instead of an event
        #[arg(long, conflicts_with = "event_id")]
        live: bool,
        /// Seconds the URL stays valid (300-43200)
        #[arg(long, default_value_t = 3600)]
        expires: u32,
        /// Fetch the event's still images (GetImages, in upload.images_* format and
        /// interval) into --out instead of printing a URL
        #[arg(long, conflicts_with = "live")]
        images: bool,
        /// Directory for --images
        #[arg(long, default_value = ".", requires = "images")]
        out: PathBuf,
    },
    /// Run the object detector (the config's detect.model, labels and scores) on a
    /// picture: what it finds, and how long an inference takes here
    Detect {
        /// A picture file (JPEG, PNG, …)
        image: PathBuf,
        /// Run the inference this many times and report the median
        #[arg(long, default_value_t = 10)]
        runs: u32,
        /// Every label the model knows, at detect.min_score
        #[arg(long)]
        all_labels: bool,
    },
    /// Print the edgecam and GStreamer versions
    Version,
}

#[derive(Subcommand, Debug)]
enum ClipsCommand {
    /// List clips, newest first
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
        /// Only clips since: 2026-11-21, an RFC 3339 time, or an age such as 30m, 6h, 2d
        #[arg(long)]
        since: Option<String>,
        /// At most this many clips
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only clips of events with this label: an object the detector saw in them
        /// (person, car, …) or the event's own label (motion, doorbell, …)
        #[arg(long)]
        label: Option<String>,
    },
    /// Show one clip's index row and what its file holds
    Show { id: String },
    /// Copy a clip to an MP4 file
    Export { id: String, out: PathBuf },
    /// Download an event's video from the Kinesis Video stream (GetClip) to an MP4 file
    Fetch { event_id: String, out: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => version(&cli.config.clone().unwrap_or_else(default_config)),
        Command::CheckConfig { ref path } => {
            let path = path
                .clone()
                .or(cli.config.clone())
                .unwrap_or_else(default_config);
            check_config(&path)
        }
        Command::Run => run(&cli.config.clone().unwrap_or_else(default_config)),
        Command::Detect {
            ref image,
            runs,
            all_labels,
        } => match load_config(&cli.config.clone().unwrap_or_else(default_config)) {
            Ok(config) => cli::detect::run(&config, image, runs, all_labels),
            Err(code) => code,
        },
        Command::Trigger {
            duration,
            ref label,
        } => {
            let path = cli.config.clone().unwrap_or_else(default_config);
            with_runtime(&path, |config| trigger(config, duration, label.clone()))
        }
        Command::Clips { command } => {
            let path = cli.config.clone().unwrap_or_else(default_config);
            with_runtime(&path, |config| clips(config, command))
        }
        Command::Playback {
            event_id,
            live: _,
            expires,
            images,
            out,
        } => {
            let path = cli.config.clone().unwrap_or_else(default_config);
            with_runtime(&path, |config| async move {
                match (images, event_id.as_deref()) {
                    (true, Some(id)) => cli::playback::images(&config, id, &out).await?,
                    _ => cli::playback::playback(&config, event_id.as_deref(), expires).await?,
                }
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}

/// Loads the config and runs an async subcommand; errors print one line and exit 1.
fn with_runtime<F, Fut>(path: &Path, f: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<ExitCode>>,
{
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(runtime) = runtime(tokio::runtime::Builder::new_current_thread()) else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(f(config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("edgecam: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn trigger(
    config: Config,
    duration: Option<f64>,
    label: Option<String>,
) -> anyhow::Result<ExitCode> {
    let api = cli::trigger::Api::from_config(&config)?;
    let body = cli::trigger::body(duration, label.as_deref());
    match api.post_command(&body).await {
        Ok((200, reply)) => {
            println!("{reply}");
            Ok(ExitCode::SUCCESS)
        }
        Ok((status, reply)) => {
            eprintln!("edgecam: the daemon refused ({status}): {reply}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("edgecam: {e:#}");
            Ok(ExitCode::from(cli::EXIT_UNAVAILABLE))
        }
    }
}

async fn clips(config: Config, command: ClipsCommand) -> anyhow::Result<ExitCode> {
    let data_dir = &config.storage.data_dir;
    match command {
        ClipsCommand::List {
            json,
            since,
            limit,
            label,
        } => {
            let since = since
                .map(|s| cli::clips::parse_since(&s, chrono::Utc::now()))
                .transpose()?;
            cli::clips::list(data_dir, since, label.as_deref(), limit, json).await?;
        }
        ClipsCommand::Show { id } => cli::clips::show(data_dir, &id).await?,
        ClipsCommand::Export { id, out } => cli::clips::export(data_dir, &id, &out).await?,
        ClipsCommand::Fetch { event_id, out } => {
            cli::playback::fetch(&config, &event_id, &out).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn default_config() -> PathBuf {
    if Path::new(SYSTEM_CONFIG).exists() {
        SYSTEM_CONFIG.into()
    } else {
        LOCAL_CONFIG.into()
    }
}

fn version(config: &Path) -> ExitCode {
    println!("edgecam {}", env!("CARGO_PKG_VERSION"));
    match gstreamer::init() {
        Ok(()) => println!("{}", gstreamer::version_string()),
        Err(e) => println!("GStreamer unavailable: {e}"),
    }
    // The HTTPS certificate's fingerprint, to compare with what a browser shows.
    let Ok(config) = config::load(config) else {
        return ExitCode::SUCCESS;
    };
    if let Some(path) = web::https::certificate_path(&config.web, &config.storage.data_dir) {
        match web::https::read_certificate(&path) {
            Ok(cert) => println!(
                "HTTPS certificate {}\n  SHA-256 fingerprint {}",
                path.display(),
                tls::fingerprint(&cert)
            ),
            Err(e) => println!("HTTPS certificate: {e}"),
        }
    }
    ExitCode::SUCCESS
}

fn load_config(path: &Path) -> Result<Config, ExitCode> {
    config::load(path).map_err(|e| {
        eprintln!("edgecam: {e}");
        ExitCode::from(EXIT_CONFIG as u8)
    })
}

fn check_config(path: &Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if config.detect.enabled {
        if let Err(e) = edgecam::detect::Model::load(&config.detect.model) {
            eprintln!("edgecam: {}: {e}", path.display());
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    }
    let checked = capture::template::load(&config.camera)
        .and_then(|spec| capture::check(&spec).map(|()| spec))
        .and_then(|spec| match config.camera.privacy_masks.is_empty() {
            true => Ok(spec),
            false => capture::check_privacy(&spec).map(|()| spec),
        })
        .and_then(|spec| {
            let audio = capture::template::load_audio(&config.camera, &config.audio)?;
            if let Some(a) = &audio {
                capture::audio::check(a)?;
            }
            Ok((spec, audio.is_some()))
        });
    if let Some(speaker) = edgecam::speaker::SpeakerConfig::from_config(&config.audio) {
        if let Err(e) = speaker.playback.check() {
            eprintln!("edgecam: {}: {e}", path.display());
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    }
    match checked {
        Ok((spec, audio)) => {
            let sound = if audio {
                format!(
                    "audio {} Hz, {} channel(s)",
                    config.audio.sample_rate, config.audio.channels
                )
            } else {
                "no audio".to_owned()
            };
            println!(
                "{}: OK (pipeline {}, {}x{} at {} fps, {sound}, web on {})",
                path.display(),
                spec.path.display(),
                config.camera.width,
                config.camera.height,
                config.camera.fps,
                config.web.listen
            );
            let areas = config::areas_path(&config.storage.data_dir);
            if areas.exists() {
                println!(
                    "zones and masks from {} (drawn on the viewer page; it replaces the config file's)",
                    areas.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("edgecam: {}: {e}", path.display());
            ExitCode::from(EXIT_CONFIG as u8)
        }
    }
}

fn run(path: &Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_tracing(&config.log.level);
    // One TLS provider for every crate (DTLS, MQTT, AWS); two compiled-in providers panic
    // unless one is chosen first.
    if rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_err()
    {
        tracing::debug!("rustls crypto provider already installed");
    }
    let Some(runtime) = runtime(tokio::runtime::Builder::new_multi_thread()) else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(daemon::run(config));
    // Do not wait on blocking work left behind (a clip's fsync): it is recovered later.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, config = %path.display(), "edgecam cannot run");
            eprintln!("edgecam: {e}");
            if e.is_config() {
                ExitCode::from(EXIT_CONFIG as u8)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Builds a tokio runtime, or says why not.
fn runtime(mut builder: tokio::runtime::Builder) -> Option<tokio::runtime::Runtime> {
    builder
        .enable_all()
        .build()
        .map_err(|e| eprintln!("edgecam: cannot start the async runtime: {e}"))
        .ok()
}

fn init_tracing(level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
