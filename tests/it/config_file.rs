//! The shipped, commented `config/edgecam.toml` must stay true to the code: every
//! commented-out line is a key with its real default, and every key is documented; the
//! development copy `config/dev.toml` must be valid.

use edgecam::config::{self, Config};

const SHIPPED: &str = include_str!("../../config/edgecam.toml");

/// The file with every `#key = value` line switched on.
fn uncommented() -> String {
    SHIPPED
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn commented_values_are_the_defaults() {
    let shipped = config::parse(SHIPPED).expect("shipped config is valid");
    let all_on = config::parse(&uncommented()).expect("uncommented config is valid");
    assert_eq!(
        all_on, shipped,
        "a commented-out line shows a value that is not the default"
    );
    // The installed copy switches nothing on: it is the defaults.
    assert_eq!(shipped, Config::default());
}

#[test]
fn every_key_is_documented() {
    let documented: toml::Table = uncommented().parse().unwrap();
    // Options unset by default are not serialized; their example lines are written
    // "# key = …" so they stay examples.
    for example in [
        "# pipeline_dir = ",
        "# endpoint_url = ",
        "# speaker_sink = ",
        "# channel_name = ",
        "# thing_name = \"front-door\"",
        "# topic_prefix = ",
        "# stream_name = ",
        "# images_s3_uri = ",
        "# images_region = ",
        "# sns_topic_arn = ",
        "# token = ",
    ] {
        assert!(SHIPPED.contains(example), "{example} is documented");
    }
    let known = toml::Table::try_from(Config::default()).unwrap();
    for (section, keys) in &known {
        let keys = keys.as_table().unwrap();
        let doc = documented
            .get(section)
            .and_then(|t| t.as_table())
            .unwrap_or_else(|| panic!("[{section}] is not in config/edgecam.toml"));
        for key in keys.keys() {
            assert!(
                doc.contains_key(key),
                "{section}.{key} is not documented in config/edgecam.toml"
            );
        }
    }
}

#[test]
fn the_development_config_is_valid() {
    let dev =
        config::parse(include_str!("../../config/dev.toml")).expect("config/dev.toml is valid");
    assert_eq!(dev.storage.data_dir, std::path::PathBuf::from("var"));
}
