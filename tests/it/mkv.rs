//! The KVS MKV writer on real encoded video: a header and three one-GOP fragments from the
//! test pattern must read cleanly in `mkvinfo` (mkvtoolnix) and decode frame for frame
//! with GStreamer's `matroskademux ! h264parse ! avdec_h264`; with the test pattern's
//! sound joined as the uploader joins it, two tracks that `mkvinfo` lists and `ffmpeg`
//! decodes without a word; and random frame sequences, tags and chunkings read back
//! exactly with the tests' own MKV reader.

use crate::support;
use std::process::Command;
use std::time::Duration;

use crate::support::mkv_reader::{self, avc, MkvReader};
use crate::support::{small_camera, Rig};
use edgecam::capture::{self, template, AudioOutputs, TaskConfig};
use edgecam::media::EncodedFrame;
use edgecam::metrics::AudioCounters;
use edgecam::upload::gop::{Gop, GopAssembler};
use edgecam::upload::mkv::{self, AudioBlock, AudioTrackInfo, Frame, TrackInfo};
use edgecam::upload::sound::SoundJoin;
use gstreamer as gst;
use gstreamer::prelude::*;
use proptest::prelude::*;
use tokio_util::sync::CancellationToken;

/// Three GOPs of captured frames, starting at a keyframe.
async fn three_gops() -> Vec<Vec<EncodedFrame>> {
    let camera = small_camera("test-pattern", 1.0);
    let rig = Rig::start(template::load(&camera).unwrap(), &camera);
    let mut sub = rig.frames.subscribe("mkv-test", 256);
    let mut gops: Vec<Vec<EncodedFrame>> = Vec::new();
    while gops.len() < 4 {
        let f = tokio::time::timeout(Duration::from_secs(10), sub.recv())
            .await
            .expect("frames flow")
            .unwrap();
        if f.keyframe {
            gops.push(Vec::new());
        }
        if let Some(g) = gops.last_mut() {
            g.push(f);
        }
    }
    rig.stop().await;
    gops.truncate(3);
    gops
}

fn ms(f: &EncodedFrame) -> u64 {
    f.captured_at.timestamp_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_read_in_mkvinfo_and_decode_in_gstreamer() {
    let gops = three_gops().await;
    let track = TrackInfo::from_keyframe(&gops[0][0].data).unwrap();
    let mut body = mkv::header(&track, [0x5A; 16], 42);
    let mut written = 0;
    for (i, gop) in gops.iter().enumerate() {
        let frames: Vec<Frame<'_>> = gop
            .iter()
            .map(|f| Frame {
                annex_b: &f.data,
                time_ms: ms(f),
                keyframe: f.keyframe,
            })
            .collect();
        written += frames.len();
        let id = format!("event-{i}");
        body.extend(mkv::fragment(&frames, &[], &[("EVENT_ID", &id)]).unwrap());
    }
    // The tests' reader and the PutMedia fake's frame checks agree with real x264 output.
    let parsed = mkv_reader::read_all(&body).unwrap();
    assert_eq!(parsed.clusters.len(), 3);
    let blocks = parsed.clusters.iter().flat_map(|c| &c.blocks);
    assert_eq!(blocks.clone().count(), written);
    for b in blocks {
        support::putmedia_fake::check_frame(&b.data, b.keyframe).unwrap();
    }
    let private = parsed.header.track().codec_private.as_deref().unwrap();
    support::putmedia_fake::check_avcc_config(private).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fragments.mkv");
    std::fs::write(&path, &body).unwrap();

    // -v: read every cluster (plain mkvinfo stops after the first).
    let info = Command::new("mkvinfo")
        .arg("-v")
        .arg(&path)
        .output()
        .expect("mkvinfo is installed by make test (mkvtoolnix)");
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(info.status.success(), "mkvinfo failed: {text}");
    assert!(!text.to_lowercase().contains("error"), "{text}");
    assert!(text.contains("V_MPEG4/ISO/AVC"), "{text}");
    let lines = |l: &str| text.lines().filter(|x| x.trim() == l).count();
    assert_eq!(lines("|+ Cluster"), 3, "{text}");
    assert_eq!(lines("|+ Tags"), 3, "{text}");
    assert_eq!(text.matches("+ Simple block:").count(), written, "{text}");

    let (pipeline, out) = crate::support::sink_pipeline(&format!(
        "filesrc location={} ! matroskademux ! h264parse ! avdec_h264 ! appsink name=out sync=false",
        path.display()
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut decoded = 0;
    while out.pull_sample().is_ok() {
        decoded += 1;
    }
    let error = pipeline
        .bus()
        .unwrap()
        .pop_filtered(&[gst::MessageType::Error]);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(error.is_none(), "GStreamer: {error:?}");
    assert_eq!(decoded, written, "every frame written decodes");
}

/// Three GOPs of the test pattern with the sound of their spans, cut and joined by the
/// uploader's own `GopAssembler` and `SoundJoin`.
async fn three_gops_with_sound() -> Vec<Gop> {
    let camera = small_camera("test-pattern", 1.0);
    let rig = Rig::start(template::load(&camera).unwrap(), &camera);
    let spec = template::load_audio(&camera, &edgecam::config::Audio::default())
        .unwrap()
        .unwrap();
    let sound = AudioOutputs::new(AudioCounters::default());
    let stop = CancellationToken::new();
    let cfg = TaskConfig {
        fps: 15,
        stall_timeout: Duration::from_secs(10),
    };
    let (_state, audio_task) = capture::spawn_audio(spec, cfg, sound.clone(), stop.clone());
    let mut video = rig.frames.subscribe("mkv-test", 256);
    let mut audio = sound.aac.subscribe("mkv-test", 512);
    let mut gops = GopAssembler::resynchronising();
    let mut join = SoundJoin::live();
    let mut done: Vec<Gop> = Vec::new();
    let mut index = 0;
    while done.len() < 4 {
        tokio::select! {
            Some(f) = video.recv() => {
                let until = f.captured_at.timestamp_millis();
                if let Some(g) = gops.push(index, f) {
                    done.extend(join.gop(g, Some(until), std::time::Instant::now()));
                }
                index += 1;
            }
            Some(a) = audio.recv() => done.extend(join.audio(a)),
            _ = tokio::time::sleep(Duration::from_secs(10)) => panic!("no frames"),
        }
    }
    stop.cancel();
    let _ = audio_task.await;
    rig.stop().await;
    // The first GOP may begin before the sound did.
    done.into_iter().skip(1).take(3).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sound_is_track_2_in_mkvinfo_and_decodes_cleanly_in_ffmpeg() {
    let gops = three_gops_with_sound().await;
    let format = gops[0].sound.clone().expect("the sound's format");
    let track = TrackInfo::from_keyframe(&gops[0].frames[0].data)
        .unwrap()
        .with_audio(Some(AudioTrackInfo::from(&format)));
    let mut body = mkv::header(&track, [0x5A; 16], 42);
    let (mut pictures, mut sounds) = (0, 0);
    for gop in &gops {
        let frames: Vec<Frame<'_>> = gop
            .frames
            .iter()
            .map(|f| Frame {
                annex_b: &f.data,
                time_ms: ms(f),
                keyframe: f.keyframe,
            })
            .collect();
        let blocks: Vec<AudioBlock<'_>> = gop
            .audio
            .iter()
            .map(|a| AudioBlock {
                data: &a.data,
                time_ms: a.captured_at.timestamp_millis() as u64,
            })
            .collect();
        assert!(
            blocks.len() >= 40,
            "a second of sound per GOP: {}",
            blocks.len()
        );
        pictures += frames.len();
        sounds += blocks.len();
        body.extend(mkv::fragment(&frames, &blocks, &[]).unwrap());
    }
    // A GOP the microphone missed goes with silence (what the uploader does).
    let silence = capture::audio::silent_aac(&format).unwrap();
    let last = gops.last().unwrap();
    // Its keyframe comes after the last GOP's sound, which runs to where a next keyframe
    // would be.
    let shift = 1000 + ms(last.frames.last().unwrap()) - ms(&last.frames[0]);
    let quiet: Vec<(Vec<u8>, u64, bool)> = last
        .frames
        .iter()
        .map(|f| (f.data.to_vec(), ms(f) + shift, f.keyframe))
        .collect();
    let frames: Vec<Frame<'_>> = quiet
        .iter()
        .map(|(data, time_ms, keyframe)| Frame {
            annex_b: data,
            time_ms: *time_ms,
            keyframe: *keyframe,
        })
        .collect();
    let blocks: Vec<AudioBlock<'_>> = (0..40)
        .map(|k| AudioBlock {
            data: &silence,
            time_ms: quiet[0].1 + k * 21,
        })
        .collect();
    pictures += frames.len();
    sounds += blocks.len();
    body.extend(mkv::fragment(&frames, &blocks, &[]).unwrap());

    let parsed = mkv_reader::read_all(&body).unwrap();
    let a = parsed.header.audio().expect("track 2");
    assert_eq!(
        (a.codec_id.as_str(), a.rate, a.channels),
        ("A_AAC", 48_000, 1)
    );
    for c in &parsed.clusters {
        let times: Vec<i16> = c.blocks.iter().map(|b| b.relative_timecode).collect();
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "in time order: {times:?}"
        );
        assert!(times[0] == 0 && c.blocks[0].track == 1 && c.blocks[0].keyframe);
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fragments.mkv");
    std::fs::write(&path, &body).unwrap();
    let info = Command::new("mkvinfo")
        .arg("-v")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(info.status.success(), "mkvinfo failed: {text}");
    assert!(!text.to_lowercase().contains("error"), "{text}");
    assert!(text.contains("Codec ID: A_AAC"), "{text}");
    assert!(text.contains("Track type: audio"), "{text}");
    assert_eq!(
        text.matches("+ Simple block:").count(),
        pictures + sounds,
        "{text}"
    );
    support::decodes_silently(&path);
    assert_eq!(support::codec_names(&path), "h264\naac");
}

/// One generated frame: keyframe flag, slice payload, ms since the previous frame.
type GenFrame = (bool, Vec<u8>, u64);
/// A generated fragment: frames (the first a keyframe) and up to 10 tags.
type GenFragment = (Vec<GenFrame>, Vec<(String, String)>);

/// A frame as written, and what the block must hold.
struct Written {
    annex_b: Vec<u8>,
    avcc: Vec<u8>,
    ms: u64,
    key: bool,
}

fn fragments() -> impl Strategy<Value = Vec<GenFragment>> {
    let frame = (
        prop::bool::weighted(0.2),
        prop::collection::vec(any::<u8>(), 1..=4000),
        1u64..=1000,
    );
    let tag = (
        "[A-Z][A-Z0-9_]{0,15}".prop_filter("AWS is reserved", |n| !n.starts_with("AWS")),
        "[ -~]{0,40}",
    );
    let fragment = (
        prop::collection::vec(frame, 1..12),
        prop::collection::vec(tag, 0..=10),
    )
        .prop_map(|(mut frames, tags)| {
            frames[0].0 = true;
            (frames, tags)
        });
    prop::collection::vec(fragment, 1..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_fragments_round_trip_through_the_reader(
        fragments in fragments(),
        start in 1_600_000_000_000u64..1_900_000_000_000,
        chunk in 1usize..300,
    ) {
        let mut t = start;
        let written: Vec<Vec<Written>> = fragments
            .iter()
            .map(|(frames, _)| {
                frames
                    .iter()
                    .map(|(key, payload, gap)| {
                        t += gap;
                        let slice = avc::slice(*key, payload);
                        Written {
                            annex_b: avc::access_unit(*key, &slice),
                            avcc: avc::avcc_frame(*key, &slice),
                            ms: t,
                            key: *key,
                        }
                    })
                    .collect()
            })
            .collect();
        let track = TrackInfo::from_keyframe(&written[0][0].annex_b).unwrap();
        let mut body = mkv::header(&track, [3; 16], 7);
        for (frames, (_, tags)) in written.iter().zip(&fragments) {
            let mkv_frames: Vec<Frame<'_>> = frames
                .iter()
                .map(|w| Frame { annex_b: &w.annex_b, time_ms: w.ms, keyframe: w.key })
                .collect();
            let tags: Vec<(&str, &str)> =
                tags.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            body.extend(mkv::fragment(&mkv_frames, &[], &tags).unwrap());
        }

        let parsed = mkv_reader::read_all(&body).unwrap();
        prop_assert_eq!(&parsed.header.doc_type, "matroska");
        prop_assert_eq!(parsed.header.timecode_scale, 1_000_000);
        let t0 = parsed.header.track();
        prop_assert_eq!(&t0.codec_id, "V_MPEG4/ISO/AVC");
        prop_assert_eq!(t0.codec_private.as_deref(), Some(&mkv::avcc(&avc::SPS, &avc::PPS)[..]));
        prop_assert_eq!((t0.width, t0.height), (320, 240));
        prop_assert_eq!(parsed.clusters.len(), written.len());
        for ((cluster, frames), (_, tags)) in parsed.clusters.iter().zip(&written).zip(&fragments) {
            prop_assert_eq!(cluster.timecode, frames[0].ms);
            prop_assert_eq!(&cluster.tags, tags);
            prop_assert_eq!(cluster.blocks.len(), frames.len());
            for (block, w) in cluster.blocks.iter().zip(frames) {
                prop_assert_eq!(block.track, 1);
                let ms = cluster.timecode as i64 + i64::from(block.relative_timecode);
                prop_assert_eq!(ms, w.ms as i64);
                prop_assert_eq!(block.keyframe, w.key);
                prop_assert_eq!(&block.data, &w.avcc);
            }
        }

        // Pushed in chunks of any size, the reader sees the same elements.
        let mut reader = MkvReader::new();
        let mut events = Vec::new();
        for part in body.chunks(chunk) {
            events.extend(reader.push(part).unwrap());
        }
        events.extend(reader.finish().unwrap());
        let mut whole = MkvReader::new();
        let mut expected = whole.push(&body).unwrap();
        expected.extend(whole.finish().unwrap());
        prop_assert_eq!(events, expected);
    }
}
