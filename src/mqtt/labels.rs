//! `<prefix>/<label>` and `<prefix>/zone/<name>` (retained): `ON` while an object of a
//! `[detect]` label is in view, or one that matters in the zone is in it; `OFF`
//! otherwise. Pure: what is in view now and what was said last in, what to send out.

use std::collections::{BTreeMap, BTreeSet};

use super::payload::StateFacts;
use super::settings::MqttSettings;

/// The labels and zones last said `ON`, per connection (`None`: nothing said yet).
#[derive(Debug, Default)]
pub struct Presence {
    labels: Option<BTreeSet<String>>,
    zones: Option<BTreeSet<String>>,
}

impl Presence {
    /// The `(topic, body)` messages for the labels and zones whose state changed (all
    /// of them on `force`).
    pub fn changes(
        &mut self,
        s: &MqttSettings,
        facts: &StateFacts,
        force: bool,
    ) -> Vec<(String, &'static str)> {
        let t = &s.topics;
        let before = self.labels.as_ref().filter(|_| !force);
        let (labels, mut messages) = changes(&s.labels, |l| t.object(l), &facts.objects, before);
        let before = self.zones.as_ref().filter(|_| !force);
        let (zones, more) = changes(&s.zones, |z| t.zone(z), &facts.zones, before);
        messages.extend(more);
        (self.labels, self.zones) = (Some(labels), Some(zones));
        messages
    }
}

/// The names (labels or zones) `ON` now, and the `(topic, body)` messages that say what
/// changed since `before` (every name when there is no `before`: a new connection).
pub fn changes(
    names: &[String],
    topic: impl Fn(&str) -> String,
    present: &BTreeMap<String, u32>,
    before: Option<&BTreeSet<String>>,
) -> (BTreeSet<String>, Vec<(String, &'static str)>) {
    let on: BTreeSet<String> = names
        .iter()
        .filter(|l| present.get(*l).is_some_and(|n| *n > 0))
        .cloned()
        .collect();
    let messages = names
        .iter()
        .filter(|l| before.map(|b| b.contains(*l)) != Some(on.contains(*l)))
        .map(|l| (topic(l), if on.contains(l) { "ON" } else { "OFF" }))
        .collect();
    (on, messages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::payload::Topics;

    #[test]
    fn only_changes_go_out_and_a_new_connection_hears_every_label() {
        let t = Topics {
            prefix: "edgecam/cam1".into(),
        };
        let labels = ["person".to_owned(), "car".to_owned()];
        let person = BTreeMap::from([("person".to_owned(), 2), ("dog".to_owned(), 1)]);
        let topic = |l: &str| t.object(l);
        let (on, all) = changes(&labels, topic, &person, None);
        assert_eq!(
            all,
            [
                ("edgecam/cam1/person".into(), "ON"),
                ("edgecam/cam1/car".into(), "OFF")
            ]
        );
        let (same, none) = changes(&labels, topic, &person, Some(&on));
        assert!(none.is_empty());
        let (_, gone) = changes(&labels, topic, &BTreeMap::new(), Some(&same));
        assert_eq!(gone, [("edgecam/cam1/person".into(), "OFF")]);
        // Zones the same way, on their own topics.
        let zones = ["front yard".to_owned()];
        let yard = BTreeMap::from([("front yard".to_owned(), 1)]);
        let (_, told) = changes(&zones, |z| t.zone(z), &yard, None);
        assert_eq!(told, [("edgecam/cam1/zone/front_yard".into(), "ON")]);
    }
}
