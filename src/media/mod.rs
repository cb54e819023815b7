//! Media types shared by every path: encoded and analysis frames, H.264 helpers, the
//! fan-out bus. No I/O here.

pub mod bus;
pub mod fmp4;
pub mod frame;
pub mod h264;
pub mod jpeg;

pub use bus::{Bus, BusStats, SubscriberStats, Subscription};
pub use frame::{
    AnalysisFrame, AudioCodec, AudioFormat, AudioFrame, EncodedFrame, RawFrame, RgbFrame, Snapshot,
};

/// The bus of encoded access units.
pub type FrameBus = Bus<EncodedFrame>;
/// The bus of small grayscale frames for motion analysis.
pub type AnalysisBus = Bus<AnalysisFrame>;
/// The bus of small colour pictures for the object detector.
pub type RgbBus = Bus<RgbFrame>;
/// A bus of encoded audio frames of one codec.
pub type AudioBus = Bus<AudioFrame>;
