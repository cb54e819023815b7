//! Prometheus metrics: the counters parts increment, and collectors that read the frame
//! bus at scrape time (so the bus itself knows nothing of Prometheus).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::media::FrameBus;

/// Counters the capture path increments. Clones share the same values.
#[derive(Debug, Clone, Default)]
pub struct CaptureCounters {
    pub frames_captured: Counter,
    pub keyframes: Counter,
    pub pipeline_restarts: Counter,
}

/// Every metric the daemon exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub capture: CaptureCounters,
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
        Self { registry, capture }
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
