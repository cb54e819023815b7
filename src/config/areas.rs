//! Zones and masks changed at run time (on the viewer page), kept in the data directory
//! as `settings/areas.toml` and laid over the config file at start: the file the owner
//! wrote stays as it is (it may be read-only), and a camera that reboots keeps what was
//! drawn. The file is written in the config file's own words (`[camera]
//! privacy_masks`, `[motion] masks`, `[[zones]]`), holds nothing else, and replaces those
//! three keys whole.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Config;
use crate::events::{Areas, Polygon, Zone};

/// Where the areas drawn on the page are kept, under the data directory.
pub const AREAS_FILE: &str = "settings/areas.toml";

/// `settings/areas.toml` as written: sections of the config file, only these keys.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AreasFile {
    #[serde(default)]
    camera: CameraAreas,
    #[serde(default)]
    motion: MotionAreas,
    #[serde(default)]
    zones: Vec<Zone>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CameraAreas {
    #[serde(default)]
    privacy_masks: Vec<Polygon>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MotionAreas {
    #[serde(default)]
    masks: Vec<Polygon>,
}

/// The areas a config sets.
pub fn areas_of(config: &Config) -> Areas {
    Areas {
        zones: config.zones.clone(),
        privacy_masks: config.camera.privacy_masks.clone(),
        motion_masks: config.motion.masks.clone(),
    }
}

/// Puts `areas` into `config`, in place of its own.
pub fn set_areas(config: &mut Config, areas: &Areas) {
    config.zones = areas.zones.clone();
    config.camera.privacy_masks = areas.privacy_masks.clone();
    config.motion.masks = areas.motion_masks.clone();
}

/// What is wrong with `config` once `areas` replace its own, in the config file's words
/// (`zones.polygon: …`): the rules of the config file, whoever draws the areas.
pub fn areas_problems(config: &Config, areas: &Areas) -> Vec<String> {
    let mut candidate = config.clone();
    set_areas(&mut candidate, areas);
    let problems = candidate.validate().into_iter();
    problems
        .map(|inv| format!("{}.{}: {}", inv.section, inv.key, inv.message))
        .collect()
}

/// The areas file's text.
pub fn areas_to_toml(areas: &Areas) -> Result<String, String> {
    let file = AreasFile {
        camera: CameraAreas {
            privacy_masks: areas.privacy_masks.clone(),
        },
        motion: MotionAreas {
            masks: areas.motion_masks.clone(),
        },
        zones: areas.zones.clone(),
    };
    let body = toml::to_string(&file).map_err(|e| e.to_string())?;
    Ok(format!(
        "# Written by edgecam when zones or masks were changed on the viewer page.\n\
             # Read at start over the config file: these keys replace its own.\n\
             # Delete this file to go back to the config file's zones and masks.\n\n{body}"
    ))
}

/// Reads the areas file's text.
pub fn areas_from_toml(text: &str) -> Result<Areas, String> {
    let file: AreasFile = toml::from_str(text).map_err(|e| e.message().trim().to_owned())?;
    Ok(Areas {
        zones: file.zones,
        privacy_masks: file.camera.privacy_masks,
        motion_masks: file.motion.masks,
    })
}

/// The areas file of a data directory.
pub fn areas_path(data_dir: &Path) -> PathBuf {
    data_dir.join(AREAS_FILE)
}

/// Writes the areas file whole (a new file synced, then renamed over the old one), so a
/// power cut leaves the old areas or the new, never half a file.
pub fn write_areas(data_dir: &Path, areas: &Areas) -> std::io::Result<()> {
    use std::io::Write;
    let text = areas_to_toml(areas).map_err(std::io::Error::other)?;
    let path = areas_path(data_dir);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("toml.new");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drawn() -> Areas {
        Areas {
            zones: vec![Zone {
                name: "front yard".into(),
                polygon: Polygon(vec![[0.0, 0.5], [1.0, 0.5], [1.0, 1.0]]),
                labels: vec!["person".into()],
            }],
            privacy_masks: vec![Polygon::from_xywh([0.5, 0.0, 0.5, 0.5])],
            motion_masks: vec![Polygon::from_xywh([0.0, 0.0, 0.25, 0.25])],
        }
    }

    #[test]
    fn the_file_reads_back_what_was_written_in_the_config_files_words() {
        let text = areas_to_toml(&drawn()).unwrap();
        assert!(text.contains("[camera]\nprivacy_masks"), "{text}");
        assert!(text.contains("[[zones]]"), "{text}");
        assert_eq!(areas_from_toml(&text).unwrap(), drawn());
        // As a config file would say it, it means the same.
        let config: Config = toml::from_str(&text).unwrap();
        assert_eq!(areas_of(&config), drawn());
    }

    #[test]
    fn the_file_holds_only_areas() {
        let wrong = areas_from_toml("[camera]\nfps = 30\n").unwrap_err();
        assert!(wrong.contains("fps"), "{wrong}");
        assert_eq!(areas_from_toml("").unwrap(), Areas::default());
    }

    #[test]
    fn written_whole_and_read_again() {
        let dir = tempfile::tempdir().unwrap();
        write_areas(dir.path(), &drawn()).unwrap();
        let text = std::fs::read_to_string(areas_path(dir.path())).unwrap();
        assert_eq!(areas_from_toml(&text).unwrap(), drawn());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("settings"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["areas.toml"]);
    }
}
