//! The shipped, commented `config/edgecam.toml` must stay true to the code: every
//! commented-out line is a key with its real default, and every key is documented.

use edgecam::config::{self, Config};

const SHIPPED: &str = include_str!("../config/edgecam.toml");

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
    // The lines that are switched on in the dev copy are the only differences.
    let mut expected = Config::default();
    expected.camera.pipeline_dir = Some("pipelines".into());
    expected.storage.data_dir = "var".into();
    assert_eq!(shipped, expected);
}

#[test]
fn every_key_is_documented() {
    let documented: toml::Table = uncommented().parse().unwrap();
    let mut all = Config::default();
    all.camera.pipeline_dir = Some("x".into()); // an unset Option is not serialized
    let known = toml::Table::try_from(all).unwrap();
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
