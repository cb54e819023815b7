//! `<prefix>/<label>` (retained): `ON` while an object of a `[detect]` label is in view,
//! `OFF` otherwise. Pure: what is in view now and what was said last in, what to send out.

use std::collections::{BTreeMap, BTreeSet};

use super::payload::Topics;

/// The labels `ON` now, and the `(topic, body)` messages that say what changed since
/// `before` (every label when there is no `before`: a new connection).
pub fn changes(
    t: &Topics,
    labels: &[String],
    present: &BTreeMap<String, u32>,
    before: Option<&BTreeSet<String>>,
) -> (BTreeSet<String>, Vec<(String, &'static str)>) {
    let on: BTreeSet<String> = labels
        .iter()
        .filter(|l| present.get(*l).is_some_and(|n| *n > 0))
        .cloned()
        .collect();
    let messages = labels
        .iter()
        .filter(|l| before.map(|b| b.contains(*l)) != Some(on.contains(*l)))
        .map(|l| (t.object(l), if on.contains(l) { "ON" } else { "OFF" }))
        .collect();
    (on, messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_go_out_and_a_new_connection_hears_every_label() {
        let t = Topics {
            prefix: "edgecam/cam1".into(),
        };
        let labels = ["person".to_owned(), "car".to_owned()];
        let person = BTreeMap::from([("person".to_owned(), 2), ("dog".to_owned(), 1)]);
        let (on, all) = changes(&t, &labels, &person, None);
        assert_eq!(
            all,
            [
                ("edgecam/cam1/person".into(), "ON"),
                ("edgecam/cam1/car".into(), "OFF")
            ]
        );
        let (same, none) = changes(&t, &labels, &person, Some(&on));
        assert!(none.is_empty());
        let (_, gone) = changes(&t, &labels, &BTreeMap::new(), Some(&same));
        assert_eq!(gone, [("edgecam/cam1/person".into(), "OFF")]);
    }
}
