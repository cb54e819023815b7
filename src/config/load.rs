//! Reading a config file into [`Config`], with errors that name file, line and field.

use std::fmt;
use std::path::{Path, PathBuf};

use super::Config;

/// Why a config file cannot be used. Never worth retrying: a person must fix the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the config file: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render(.path, .problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

/// One problem in a file: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, when the field is written in the file.
    pub line: Option<usize>,
    /// Dotted path such as `camera.fps`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

fn render(path: &Path, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|p| match p.line {
            Some(line) => format!("{}:{line}: {p}", path.display()),
            None => format!("{}: {p}", path.display()),
        })
        .collect();
    lines.join("\n")
}

/// Reads, parses and validates the file at `path`, with the zones and masks drawn on
/// the viewer page (`<data_dir>/settings/areas.toml`, when there is one) in place of its
/// own.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut config = parse(&text).map_err(|problems| ConfigError::Invalid {
        path: path.to_owned(),
        problems,
    })?;
    let areas = super::areas::areas_path(&config.storage.data_dir);
    let drawn = match std::fs::read_to_string(&areas) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(config),
        Err(source) => {
            return Err(ConfigError::Read {
                path: areas,
                source,
            })
        }
    };
    let invalid = |message: String| ConfigError::Invalid {
        path: areas.clone(),
        problems: vec![Problem {
            line: None,
            field: String::new(),
            message: format!(
                "{message} (delete the file to use the config file's zones and masks)"
            ),
        }],
    };
    let drawn = super::areas_from_toml(&drawn).map_err(&invalid)?;
    let problems = super::areas_problems(&config, &drawn);
    if !problems.is_empty() {
        return Err(invalid(problems.join("; ")));
    }
    super::set_areas(&mut config, &drawn);
    Ok(config)
}

/// Parses and validates config text; the pure part of [`load`].
pub fn parse(text: &str) -> Result<Config, Vec<Problem>> {
    let de = toml::Deserializer::parse(text).map_err(|e| vec![syntax_problem(text, &e, "")])?;
    let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        vec![syntax_problem(text, e.inner(), &field)]
    })?;
    let problems: Vec<Problem> = config
        .validate()
        .into_iter()
        .map(|inv| Problem {
            line: line_of_key(text, inv.section, inv.key),
            field: format!("{}.{}", inv.section, inv.key),
            message: inv.message,
        })
        .collect();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

fn syntax_problem(text: &str, e: &toml::de::Error, field: &str) -> Problem {
    Problem {
        line: e.span().map(|s| line_at(text, s.start)),
        field: field.to_owned(),
        message: e.message().trim().to_owned(),
    }
}

fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Finds the line of `key = …` inside `[section]`, for errors on values that parsed.
fn line_of_key(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(rest) = line.strip_prefix('[') {
            current = rest.split(']').next().unwrap_or("").trim().to_owned();
            continue;
        }
        if current != section {
            continue;
        }
        let Some((k, _)) = line.split_once('=') else {
            continue;
        };
        if k.trim().trim_matches('"') == key {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_drawn_on_the_page_replace_the_files_own_and_are_checked_the_same_way() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edgecam.toml");
        let data = dir.path().join("data");
        std::fs::write(
            &path,
            format!(
                "[storage]\ndata_dir = \"{}\"\n[motion]\nmasks = [[0.0, 0.0, 0.5, 0.5]]\n",
                data.display()
            ),
        )
        .unwrap();
        assert_eq!(
            load(&path).unwrap().motion.masks.len(),
            1,
            "no areas file yet"
        );
        let areas = crate::events::Areas {
            privacy_masks: vec![crate::events::Polygon::from_xywh([0.5, 0.0, 0.5, 1.0])],
            ..Default::default()
        };
        crate::config::write_areas(&data, &areas).unwrap();
        let config = load(&path).unwrap();
        assert_eq!(
            crate::config::areas_of(&config),
            areas,
            "the file's replace"
        );
        // A zone wanting a label the detector does not look for is refused, naming the
        // areas file.
        let bad = "[[zones]]\nname = \"drive\"\npolygon = [0, 0, 1, 1]\nlabels = [\"boat\"]\n";
        std::fs::write(crate::config::areas_path(&data), bad).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.contains("settings/areas.toml") && err.contains("boat"),
            "{err}"
        );
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn wrong_type_names_line_and_field() {
        let text = "[camera]\nwidth = 640\nfps = \"fast\"\n";
        let p = &parse(text).unwrap_err()[0];
        assert_eq!(p.line, Some(3));
        assert_eq!(p.field, "camera.fps");
        assert!(p.message.contains("invalid type"), "{}", p.message);
    }

    #[test]
    fn unknown_key_is_refused_with_its_line() {
        let text = "[camera]\n\n\nfsp = 10\n";
        let p = &parse(text).unwrap_err()[0];
        assert_eq!(p.line, Some(4));
        assert!(p.message.contains("unknown field `fsp`"), "{}", p.message);
    }

    #[test]
    fn a_choice_outside_its_list_names_the_choices() {
        let text = "[upload]\nenabled = false\n\n[live]\nsignaling = \"kvss\"\n";
        let p = &parse(text).unwrap_err()[0];
        assert_eq!((p.line, p.field.as_str()), (Some(5), "live.signaling"));
        assert!(
            p.message.contains("`lan`") && p.message.contains("`kvs`"),
            "{}",
            p.message
        );
    }

    #[test]
    fn an_empty_optional_value_means_unset_as_it_always_did() {
        let c = parse("[live]\nchannel_name = \"\"\n[web]\ntoken = \"\"\n").unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn syntax_error_has_a_line() {
        let p = &parse("[camera]\nwidth = = 3\n").unwrap_err()[0];
        assert_eq!(p.line, Some(2));
    }

    #[test]
    fn validation_error_points_at_the_key() {
        let text =
            "# a comment\n[web]\nlisten = \"nowhere\"\n\n[camera]\nkeyframe_interval_s = 30\n";
        let problems = parse(text).unwrap_err();
        let fields: Vec<_> = problems
            .iter()
            .map(|p| (p.field.as_str(), p.line))
            .collect();
        assert_eq!(
            fields,
            [
                ("camera.keyframe_interval_s", Some(6)),
                ("web.listen", Some(3))
            ]
        );
    }

    #[test]
    fn rendered_error_names_file_line_field() {
        let err = ConfigError::Invalid {
            path: "/etc/edgecam/edgecam.toml".into(),
            problems: vec![Problem {
                line: Some(7),
                field: "camera.fps".into(),
                message: "must be between 1 and 60, got 0".into(),
            }],
        };
        assert_eq!(
            err.to_string(),
            "/etc/edgecam/edgecam.toml:7: camera.fps: must be between 1 and 60, got 0"
        );
    }
}
