//! Who the camera says it is to ONVIF clients: its name, a UUID and a MAC-like address
//! that stay the same across restarts (NVRs and Home Assistant key the device on them),
//! and the stream's parameters, from the config and this machine.

use sha1::{Digest, Sha1};

use super::answers::Camera;
use super::discovery::Identity;
use super::Onvif;
use crate::config::Config;

/// A name-based UUID (SHA-1, version 5 layout) of `seed`.
fn uuid_of(seed: &str) -> String {
    let h = Sha1::digest(seed.as_bytes());
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-5{:01x}{:02x}-{:02x}{:02x}-{}",
        h[0],
        h[1],
        h[2],
        h[3],
        h[4],
        h[5],
        h[6] & 0x0f,
        h[7],
        (h[8] & 0x3f) | 0x80,
        h[9],
        hex::encode(&h[10..16])
    )
}

/// The MAC address of the first network interface that has one (not loopback), else
/// one made from `seed` (locally administered, so it cannot clash with a real one).
fn mac(seed: &str) -> String {
    let mut names: Vec<_> = std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // Real interfaces only (a device link): bridges and veths come and go.
        .filter(|n| std::path::Path::new(&format!("/sys/class/net/{n}/device")).exists())
        .collect();
    names.sort();
    let real = names.iter().find_map(|n| {
        std::fs::read_to_string(format!("/sys/class/net/{n}/address"))
            .ok()
            .map(|a| a.trim().to_owned())
            .filter(|a| a.len() == 17 && a != "00:00:00:00:00:00")
    });
    real.unwrap_or_else(|| {
        let h = Sha1::digest(seed.as_bytes());
        format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            (h[0] & 0xfc) | 0x02,
            h[1],
            h[2],
            h[3],
            h[4],
            h[5]
        )
    })
}

/// The ONVIF services of the configured camera; `None` when `[onvif]` is off. `https`:
/// whether the local HTTP server speaks HTTPS; `audio`: whether the camera has sound.
pub fn from_config(config: &Config, https: bool, audio: bool) -> Option<Onvif> {
    if !config.onvif.enabled {
        return None;
    }
    let host = crate::net::hostname().unwrap_or_else(|| "edgecam".into());
    let thing = (!config.aws.thing_name.is_empty()).then(|| config.aws.thing_name.clone());
    let name = config
        .onvif
        .name
        .clone()
        .or_else(|| thing.clone())
        .unwrap_or_else(|| host.clone());
    let machine = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    let seed = format!(
        "edgecam:{}:{}",
        machine.trim(),
        thing.as_deref().unwrap_or(&host)
    );
    let c = &config.camera;
    let camera = Camera {
        name,
        model: "edgecam camera".into(),
        firmware: env!("CARGO_PKG_VERSION").into(),
        serial: thing.unwrap_or(host),
        urn: format!("urn:uuid:{}", uuid_of(&seed)),
        mac: mac(&seed),
        width: c.width,
        height: c.height,
        fps: c.fps,
        bitrate_kbps: c.bitrate_kbps,
        gov_length: c.keyframe_interval_frames(),
        audio: audio.then_some((config.audio.sample_rate, config.audio.aac_bitrate_kbps)),
        rtsp_port: config
            .rtsp
            .listen_addr(&config.web)
            .map_or(8554, |a| a.port()),
        rtsp_path: config.rtsp.path.clone(),
        scheme: if https { "https" } else { "http" },
    };
    Some(Onvif::new(camera, config.rtsp.credentials(&config.web)))
}

/// What discovery says, for the HTTP server on `port`.
pub fn discovery_identity(onvif: &Onvif, port: u16) -> Identity {
    Identity {
        urn: onvif.camera.urn.clone(),
        scopes: super::answers::scopes(&onvif.camera),
        port,
        scheme: onvif.camera.scheme,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uuid_is_stable_and_shaped_as_version_5() {
        let a = uuid_of("edgecam:machine:porch");
        assert_eq!(a, uuid_of("edgecam:machine:porch"));
        assert_ne!(a, uuid_of("edgecam:machine:garden"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "5");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }
}
