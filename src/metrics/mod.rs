//! Prometheus metrics: the counters parts increment, and collectors that read the frame
//! bus and the async runtime at scrape time (so the bus itself knows nothing of
//! Prometheus).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::media::{AudioCodec, FrameBus};

mod rtsp;
pub use rtsp::RtspMetrics;

/// Counters the capture path increments. Clones share the same values.
#[derive(Debug, Clone, Default)]
pub struct CaptureCounters {
    pub frames_captured: Counter,
    pub keyframes: Counter,
    pub pipeline_restarts: Counter,
}

/// Counters the audio pipeline increments. Clones share the same values.
#[derive(Debug, Clone, Default)]
pub struct AudioCounters {
    pub opus_frames: Counter,
    pub aac_frames: Counter,
    pub pipeline_restarts: Counter,
}

impl AudioCounters {
    pub fn frames(&self, codec: AudioCodec) -> &Counter {
        match codec {
            AudioCodec::Opus => &self.opus_frames,
            AudioCodec::Aac => &self.aac_frames,
        }
    }
}

/// Live-view metrics. Clones share the same values.
#[derive(Debug, Clone)]
pub struct LiveMetrics {
    pub viewers: Gauge,
    /// Offer received → first keyframe sent, seconds.
    pub ttff: Histogram,
    pub viewer_frames_dropped: Counter,
    /// Signaling reconnects by reason (`go_away`, `dropped`, …).
    pub signaling_reconnects: Family<Label, Counter>,
    /// Connected viewers by the type of the selected local candidate (host, srflx, relay…).
    pub candidate_types: Family<Label, Counter>,
}

/// One label: a name and a value known at compile time.
pub type Label = [(&'static str, &'static str); 1];

impl Default for LiveMetrics {
    fn default() -> Self {
        let buckets = [0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 5.0];
        Self {
            viewers: Gauge::default(),
            ttff: Histogram::new(buckets),
            viewer_frames_dropped: Counter::default(),
            signaling_reconnects: Family::default(),
            candidate_types: Family::default(),
        }
    }
}

/// MQTT metrics. Clones share the same values.
#[derive(Debug, Clone, Default)]
pub struct MqttMetrics {
    /// Messages waiting in the outbox.
    pub outbox_depth: Gauge,
    /// Outbox messages the broker acknowledged.
    pub published: Counter,
    /// 1 while connected to the broker.
    pub connected: Gauge,
}

/// Motion detector metrics. Clones share the same values.
#[derive(Debug, Clone, Default)]
pub struct MotionMetrics {
    /// The share of the picture moving in the last analysis frame, percent.
    pub score: Gauge<f64, AtomicU64>,
    /// Events that motion started.
    pub events: Counter,
}

/// Object detector metrics. Clones share the same values.
#[derive(Debug, Clone)]
pub struct DetectMetrics {
    /// One inference, seconds.
    pub inference: Histogram,
    /// Pictures the detector analysed.
    pub analysed: Counter,
    /// Pictures passed over because a newer one was waiting.
    pub skipped: Counter,
    /// Objects announced (confirmed and moving), by label.
    pub objects: Family<Vec<(String, String)>, Counter>,
}

impl Default for DetectMetrics {
    fn default() -> Self {
        let buckets = [0.02, 0.05, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0];
        Self {
            inference: Histogram::new(buckets),
            analysed: Counter::default(),
            skipped: Counter::default(),
            objects: Family::default(),
        }
    }
}

/// Talk-back metrics. Clones share the same values.
#[derive(Debug, Clone, Default)]
pub struct TalkMetrics {
    /// 1 while a viewer talks through the speaker.
    pub talking: Gauge,
    /// Talks granted.
    pub talks: Counter,
    /// Talk requests refused because someone else was talking.
    pub refused: Counter,
    /// Audio packets played.
    pub packets: Counter,
    /// Audio packets dropped (not the talker's, or the queue was full).
    pub dropped: Counter,
}

/// Local HTTP server metrics. Clones share the same values.
#[derive(Debug, Clone, Default)]
pub struct WebMetrics {
    /// Connections open now.
    pub connections: Gauge,
    /// Idle or slow connections closed to make room for a newcomer.
    pub evicted: Counter,
    /// Connections refused because every one open was in the middle of a request.
    pub refused: Counter,
}

/// KVS upload metrics. Clones share the same values.
#[derive(Debug, Clone)]
pub struct UploadMetrics {
    /// Fragments recorded but not yet persisted at KVS.
    pub backlog: Gauge,
    pub persisted: Counter,
    /// ERROR acks and failed connections, by code (KVS ErrorId or HTTP status).
    pub errors: Family<CodeLabel, Counter>,
    /// Capture of a fragment's first frame → its PERSISTED ack, seconds.
    pub latency: Histogram,
    /// 1 while a PutMedia connection is open.
    pub connected: Gauge,
    /// Fragments whose sound track had no frame and went up with silence.
    pub silent: Counter,
}

/// A numeric code as a label.
pub type CodeLabel = [(&'static str, String); 1];

impl Default for UploadMetrics {
    fn default() -> Self {
        let buckets = [
            0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0, 20.0, 60.0,
        ];
        Self {
            backlog: Gauge::default(),
            persisted: Counter::default(),
            errors: Family::default(),
            latency: Histogram::new(buckets),
            connected: Gauge::default(),
            silent: Counter::default(),
        }
    }
}

/// Every metric the daemon exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub capture: CaptureCounters,
    pub audio: AudioCounters,
    pub live: LiveMetrics,
    pub mqtt: MqttMetrics,
    pub upload: UploadMetrics,
    pub motion: MotionMetrics,
    pub detect: DetectMetrics,
    pub web: WebMetrics,
    pub talk: TalkMetrics,
    pub rtsp: RtspMetrics,
}

impl Metrics {
    pub fn new(frames: FrameBus) -> Self {
        let capture = CaptureCounters::default();
        let mut registry = Registry::default();
        registry.register(
            "edgecam_frames_captured",
            "Encoded frames that left the capture pipeline",
            capture.frames_captured.clone(),
        );
        registry.register(
            "edgecam_keyframes",
            "Keyframes (IDR access units) captured",
            capture.keyframes.clone(),
        );
        registry.register(
            "edgecam_pipeline_restarts",
            "Times the capture pipeline was rebuilt after an error or stall",
            capture.pipeline_restarts.clone(),
        );
        registry.register_collector(Box::new(BusCollector { frames }));
        let audio_frames = Family::<Label, Counter>::default();
        // One statement per label: a family's guard holds its lock until dropped.
        let opus_frames = audio_frames.get_or_create(&[("codec", "opus")]).clone();
        let aac_frames = audio_frames.get_or_create(&[("codec", "aac")]).clone();
        let audio = AudioCounters {
            opus_frames,
            aac_frames,
            pipeline_restarts: Counter::default(),
        };
        registry.register(
            "edgecam_audio_frames",
            "Encoded audio frames that left the audio pipeline, by codec",
            audio_frames,
        );
        registry.register(
            "edgecam_audio_pipeline_restarts",
            "Times the audio pipeline was rebuilt after an error or stall (video goes on)",
            audio.pipeline_restarts.clone(),
        );
        let live = LiveMetrics::default();
        registry.register(
            "edgecam_viewers",
            "Viewers connected to live view",
            live.viewers.clone(),
        );
        registry.register(
            "edgecam_ttff_seconds",
            "Time from a viewer's offer to its first keyframe sent",
            live.ttff.clone(),
        );
        registry.register(
            "edgecam_viewer_frames_dropped",
            "Frames viewers lost because they fell behind",
            live.viewer_frames_dropped.clone(),
        );
        registry.register(
            "edgecam_signaling_reconnects",
            "Signaling connections re-made, by reason",
            live.signaling_reconnects.clone(),
        );
        registry.register(
            "edgecam_viewer_candidates",
            "Viewer connections by the type of the selected local ICE candidate",
            live.candidate_types.clone(),
        );
        let mqtt = MqttMetrics::default();
        registry.register(
            "edgecam_mqtt_outbox_depth",
            "MQTT messages written but not yet acknowledged by the broker",
            mqtt.outbox_depth.clone(),
        );
        registry.register(
            "edgecam_mqtt_published",
            "MQTT event and state messages acknowledged by the broker",
            mqtt.published.clone(),
        );
        registry.register(
            "edgecam_mqtt_connected",
            "1 while the MQTT session is connected",
            mqtt.connected.clone(),
        );
        let upload = UploadMetrics::default();
        registry.register(
            "edgecam_upload_backlog_fragments",
            "Fragments recorded but not yet persisted at Kinesis Video Streams",
            upload.backlog.clone(),
        );
        registry.register(
            "edgecam_fragments_persisted",
            "Fragments Kinesis Video Streams acknowledged as PERSISTED",
            upload.persisted.clone(),
        );
        registry.register(
            "edgecam_upload_errors",
            "PutMedia errors by code (KVS ErrorId, or HTTP status of a refused connection)",
            upload.errors.clone(),
        );
        registry.register(
            "edgecam_upload_latency_seconds",
            "Capture of a fragment's first frame to its PERSISTED acknowledgement",
            upload.latency.clone(),
        );
        registry.register(
            "edgecam_upload_connected",
            "1 while a PutMedia connection is open",
            upload.connected.clone(),
        );
        registry.register(
            "edgecam_upload_silent_fragments",
            "Fragments whose sound track had no frame (the microphone was quiet or gone) and went up with silence",
            upload.silent.clone(),
        );
        let motion = MotionMetrics::default();
        registry.register(
            "edgecam_motion_score",
            "Percentage of the picture moving in the last analysis frame (motion when at least motion.min_area_percent)",
            motion.score.clone(),
        );
        registry.register(
            "edgecam_motion_events",
            "Events started by motion",
            motion.events.clone(),
        );
        let detect = DetectMetrics::default();
        registry.register(
            "edgecam_detect_inference_seconds",
            "Time of one object-detector inference",
            detect.inference.clone(),
        );
        registry.register(
            "edgecam_detect_frames",
            "Pictures the object detector analysed (only while something moves)",
            detect.analysed.clone(),
        );
        registry.register(
            "edgecam_detect_frames_skipped",
            "Pictures the object detector passed over because a newer one was waiting",
            detect.skipped.clone(),
        );
        registry.register(
            "edgecam_detect_objects",
            "Objects the detector announced (confirmed and moving), by label",
            detect.objects.clone(),
        );
        let web = WebMetrics::default();
        registry.register(
            "edgecam_http_connections",
            "Local HTTP connections open",
            web.connections.clone(),
        );
        registry.register(
            "edgecam_http_connections_evicted",
            "Idle or slow local HTTP connections closed to make room (web.max_connections)",
            web.evicted.clone(),
        );
        registry.register(
            "edgecam_http_connections_refused",
            "Local HTTP connections refused because all open ones were busy",
            web.refused.clone(),
        );
        registry.register_collector(Box::new(RuntimeCollector));
        let talk = TalkMetrics::default();
        for (name, help, metric) in [
            (
                "edgecam_talks",
                "Talks granted (a viewer speaking through the speaker)",
                &talk.talks,
            ),
            (
                "edgecam_talk_refused",
                "Talk requests refused because someone else was talking",
                &talk.refused,
            ),
            (
                "edgecam_talk_packets",
                "Viewer audio packets played on the speaker",
                &talk.packets,
            ),
            (
                "edgecam_talk_packets_dropped",
                "Viewer audio packets dropped (not the talker's, or the speaker fell behind)",
                &talk.dropped,
            ),
        ] {
            registry.register(name, help, metric.clone());
        }
        registry.register(
            "edgecam_talking",
            "1 while a viewer talks through the speaker",
            talk.talking.clone(),
        );
        let rtsp = RtspMetrics::default();
        rtsp.register(&mut registry);
        Self {
            registry,
            capture,
            audio,
            live,
            mqtt,
            upload,
            motion,
            detect,
            web,
            talk,
            rtsp,
        }
    }

    /// The text exposition format (OpenMetrics), as served on `/metrics`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Reads per-subscriber counters from the frame bus on each scrape.
#[derive(Debug)]
struct BusCollector {
    frames: FrameBus,
}

impl Collector for BusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.frames.stats();
        let mut family = encoder.encode_descriptor(
            "edgecam_frames_dropped",
            "Frames a subscriber lost because it fell behind",
            None,
            MetricType::Counter,
        )?;
        for (name, _, dropped) in &stats.per_subscriber {
            let labels = [("subscriber", name.as_str())];
            ConstCounter::new(*dropped).encode(family.encode_family(&labels)?)?;
        }
        let subscribers = encoder.encode_descriptor(
            "edgecam_frame_subscribers",
            "Current subscribers of the encoded frame bus",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(stats.subscribers as i64).encode(subscribers)?;
        Ok(())
    }
}

/// Reads the async runtime's live task count on each scrape: a leak of tasks (per viewer,
/// per request) shows as a count that only grows.
#[derive(Debug)]
struct RuntimeCollector;

impl Collector for RuntimeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Ok(());
        };
        let tasks = encoder.encode_descriptor(
            "edgecam_tasks",
            "Async tasks alive in the daemon",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(runtime.metrics().num_alive_tasks() as i64).encode(tasks)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::EncodedFrame;

    #[test]
    fn renders_counters_and_per_subscriber_drops() {
        let bus = FrameBus::new("frames");
        let metrics = Metrics::new(bus.clone());
        let _slow = bus.subscribe("recorder", 1);
        let frame = |keyframe| EncodedFrame {
            data: bytes::Bytes::from_static(b"\0\0\x01\x65"),
            pts: Default::default(),
            captured_at: Default::default(),
            keyframe,
            generation: 1,
        };
        bus.publish(frame(true));
        bus.publish(frame(false));
        metrics.capture.frames_captured.inc_by(2);
        let text = metrics.render();
        assert!(text.contains("edgecam_frames_captured_total 2"), "{text}");
        assert!(
            text.contains("edgecam_frames_dropped_total{subscriber=\"recorder\"} 1"),
            "{text}"
        );
        assert!(text.contains("edgecam_frame_subscribers 1"), "{text}");
        assert!(text.contains("edgecam_pipeline_restarts_total 0"), "{text}");
    }
}
