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

/// Reads, parses and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|problems| ConfigError::Invalid {
        path: path.to_owned(),
        problems,
    })
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
