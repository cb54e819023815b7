//! The ONVIF Events service's PullPoint (WS-BaseNotification as ONVIF profiles it): a
//! client creates a subscription, pulls the changes of what the camera sees (motion,
//! and with the detector people, vehicles and animals), renews and unsubscribes. The
//! subscriptions are kept here, behind one lock only the web handlers take; what the
//! camera sees comes in as a `Scene` the caller reads.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use super::answers::Camera;
use super::call::{Answer, Call, Reply, Scene};
use super::soap::{self, TEV, WSNT};

/// Subscriptions kept at once; a new one beyond it replaces the one closest to expiry.
const MAX_SUBSCRIPTIONS: usize = 16;
/// Longest subscription a client may ask for (it renews before).
const MAX_TERM: Duration = Duration::from_secs(3600);
/// Longest a PullMessages may wait for something to happen.
pub const MAX_PULL_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Subscription {
    expires: DateTime<Utc>,
    /// What the client was last told, topic by topic (`Scene::items` order); `None`:
    /// nothing yet (or it asked to be told everything again).
    told: Option<[Option<bool>; 4]>,
}

/// The live subscriptions.
#[derive(Debug, Default)]
pub struct Subscriptions {
    inner: Mutex<(u64, BTreeMap<u64, Subscription>)>,
}

/// An ISO 8601 duration (`PT600S`, `PT1M`, `P1DT2H`) or, for a termination time, an
/// absolute time (then measured from `now`).
pub fn duration(text: &str, now: DateTime<Utc>) -> Option<Duration> {
    let t = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return (at.with_timezone(&Utc) - now).to_std().ok();
    }
    let rest = t.strip_prefix('P')?;
    let (days, time) = match rest.split_once('T') {
        Some((d, t)) => (d, t),
        None => (rest, ""),
    };
    let mut secs = 0f64;
    let mut take = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut number = String::new();
        for c in part.chars() {
            match units.iter().find(|(u, _)| *u == c) {
                Some((_, scale)) => {
                    secs += number.parse::<f64>().ok()? * scale;
                    number.clear();
                }
                None if c.is_ascii_digit() || c == '.' => number.push(c),
                None => return None,
            }
        }
        number.is_empty().then_some(())
    };
    take(
        days,
        &[
            ('Y', 365.0 * 86400.0),
            ('M', 30.0 * 86400.0),
            ('W', 604_800.0),
            ('D', 86400.0),
        ],
    )?;
    take(time, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)))
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Subscriptions {
    fn with<T>(&self, f: impl FnOnce(&mut (u64, BTreeMap<u64, Subscription>)) -> T) -> T {
        // A poisoned lock only means a handler panicked mid-update; the map stays usable.
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// A new subscription for `term`; its id and termination time.
    pub fn create(&self, now: DateTime<Utc>, term: Duration) -> (u64, DateTime<Utc>) {
        let expires = now + chrono::Duration::from_std(term.min(MAX_TERM)).unwrap_or_default();
        self.with(|(next, subs)| {
            subs.retain(|_, s| s.expires > now);
            if subs.len() >= MAX_SUBSCRIPTIONS {
                let soonest = subs.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k);
                if let Some(k) = soonest {
                    subs.remove(&k);
                }
            }
            *next += 1;
            subs.insert(
                *next,
                Subscription {
                    expires,
                    told: None,
                },
            );
            (*next, expires)
        })
    }

    /// Extends a subscription; its new termination time, `None` if it is gone.
    pub fn renew(&self, id: u64, now: DateTime<Utc>, term: Duration) -> Option<DateTime<Utc>> {
        let expires = now + chrono::Duration::from_std(term.min(MAX_TERM)).unwrap_or_default();
        self.with(|(_, subs)| {
            let s = subs.get_mut(&id).filter(|s| s.expires > now)?;
            s.expires = expires;
            Some(expires)
        })
    }

    pub fn remove(&self, id: u64) -> bool {
        self.with(|(_, subs)| subs.remove(&id).is_some())
    }

    /// The next pull tells the client every topic's state again.
    pub fn synchronize(&self, id: u64, now: DateTime<Utc>) -> bool {
        self.with(
            |(_, subs)| match subs.get_mut(&id).filter(|s| s.expires > now) {
                Some(s) => {
                    s.told = None;
                    true
                }
                None => false,
            },
        )
    }

    /// The notification messages (XML) for what changed since the client was last told,
    /// at most `limit`, marking them told; `None` if the subscription is gone. An empty
    /// list means nothing changed.
    pub fn pull(
        &self,
        id: u64,
        scene: Scene,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Option<(Vec<String>, DateTime<Utc>)> {
        self.with(|(_, subs)| {
            let s = subs.get_mut(&id).filter(|s| s.expires > now)?;
            let mut out = Vec::new();
            // What the client knows, topic by topic: only what is sent becomes known.
            let mut told = s.told.unwrap_or([None; 4]);
            for (i, (topic, item, value)) in scene.items().into_iter().enumerate() {
                let op = match told[i] {
                    None => "Initialized",
                    Some(v) if v != value => "Changed",
                    Some(_) => continue,
                };
                if out.len() >= limit.max(1) {
                    break;
                }
                out.push(message(topic, item, value, op, now));
                told[i] = Some(value);
            }
            s.told = Some(told);
            Some((out, s.expires))
        })
    }
}

fn message(topic: &str, item: &str, value: bool, op: &str, now: DateTime<Utc>) -> String {
    format!(
        "<wsnt:NotificationMessage><wsnt:Topic \
         Dialect=\"http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet\">{topic}</wsnt:Topic>\
         <wsnt:Message><tt:Message UtcTime=\"{}\" PropertyOperation=\"{op}\"><tt:Source>\
         <tt:SimpleItem Name=\"VideoSourceConfigurationToken\" Value=\"vsc0\"/>\
         <tt:SimpleItem Name=\"VideoAnalyticsConfigurationToken\" Value=\"va0\"/>\
         <tt:SimpleItem Name=\"Rule\" Value=\"edgecam\"/></tt:Source>\
         <tt:Data><tt:SimpleItem Name=\"{item}\" Value=\"{value}\"/></tt:Data>\
         </tt:Message></wsnt:Message></wsnt:NotificationMessage>",
        stamp(now)
    )
}

/// A subscription's default term when the client names none.
const DEFAULT_TERM: Duration = Duration::from_secs(600);
/// PullMessages' wait when the client names none.
const DEFAULT_PULL_WAIT: Duration = Duration::from_secs(10);

fn gone() -> Reply {
    Reply::Now(Answer::fault(
        400,
        "env:Sender",
        "ter:InvalidArgVal",
        "no such subscription (it expired or was unsubscribed): create a new one",
    ))
}

/// Answers an Events service request (`request` already authorized).
pub fn reply(
    subs: &Subscriptions,
    request: &soap::Request,
    call: &Call,
    camera: &Camera,
    now: DateTime<Utc>,
) -> Reply {
    let arg = |name: &str| request.argument(name);
    let body = match (request.namespace.as_str(), request.operation.as_str()) {
        (TEV, "GetServiceCapabilities") => format!(
            "<tev:GetServiceCapabilitiesResponse>{}</tev:GetServiceCapabilitiesResponse>",
            super::answers::events_capabilities()
        ),
        (TEV, "GetEventProperties") => properties(),
        (TEV, "CreatePullPointSubscription") => {
            let term = arg("InitialTerminationTime")
                .and_then(|t| duration(t, now))
                .unwrap_or(DEFAULT_TERM);
            let (id, expires) = subs.create(now, term);
            let address = format!("{}/{id}", call.at.subscription_base(camera));
            created(&address, now, expires)
        }
        (TEV, "PullMessages") => {
            let Some(id) = call.subscription else {
                return gone();
            };
            let wait = arg("Timeout")
                .and_then(|t| duration(t, now))
                .unwrap_or(DEFAULT_PULL_WAIT)
                .min(MAX_PULL_WAIT);
            let limit = arg("MessageLimit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(100);
            let Some((messages, expires)) = subs.pull(id, call.scene, now, limit) else {
                return gone();
            };
            if messages.is_empty() && call.may_wait && !wait.is_zero() {
                return Reply::Wait(wait);
            }
            pulled(&messages, now, expires)
        }
        (TEV, "SetSynchronizationPoint") => match call.subscription {
            Some(id) if subs.synchronize(id, now) => {
                "<tev:SetSynchronizationPointResponse/>".into()
            }
            _ => return gone(),
        },
        (WSNT, "Renew") => {
            let term = arg("TerminationTime")
                .and_then(|t| duration(t, now))
                .unwrap_or(DEFAULT_TERM);
            match call.subscription.and_then(|id| subs.renew(id, now, term)) {
                Some(expires) => renewed(now, expires),
                None => return gone(),
            }
        }
        (WSNT, "Unsubscribe") => match call.subscription {
            Some(id) if subs.remove(id) => "<wsnt:UnsubscribeResponse/>".into(),
            _ => return gone(),
        },
        (_, op) => {
            return Reply::Now(Answer::fault(
                500,
                "env:Receiver",
                "ter:ActionNotSupported",
                &format!("Optional Action Not Implemented: {op}"),
            ))
        }
    };
    Reply::Now(Answer::ok(body))
}

/// CreatePullPointSubscription's answer.
pub fn created(address: &str, now: DateTime<Utc>, expires: DateTime<Utc>) -> String {
    format!(
        "<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference>\
         <wsa:Address>{}</wsa:Address></tev:SubscriptionReference>\
         <wsnt:CurrentTime>{}</wsnt:CurrentTime><wsnt:TerminationTime>{}</wsnt:TerminationTime>\
         </tev:CreatePullPointSubscriptionResponse>",
        super::soap::esc(address),
        stamp(now),
        stamp(expires)
    )
}

/// PullMessages' answer.
pub fn pulled(messages: &[String], now: DateTime<Utc>, expires: DateTime<Utc>) -> String {
    format!(
        "<tev:PullMessagesResponse><tev:CurrentTime>{}</tev:CurrentTime>\
         <tev:TerminationTime>{}</tev:TerminationTime>{}</tev:PullMessagesResponse>",
        stamp(now),
        stamp(expires),
        messages.concat()
    )
}

/// Renew's answer.
pub fn renewed(now: DateTime<Utc>, expires: DateTime<Utc>) -> String {
    format!(
        "<wsnt:RenewResponse><wsnt:TerminationTime>{}</wsnt:TerminationTime>\
         <wsnt:CurrentTime>{}</wsnt:CurrentTime></wsnt:RenewResponse>",
        stamp(expires),
        stamp(now)
    )
}

/// GetEventProperties' answer: the topics this camera raises.
pub fn properties() -> String {
    let described = |item: &str| {
        format!(
            "<tt:MessageDescription IsProperty=\"true\"><tt:Source>\
             <tt:SimpleItemDescription Name=\"VideoSourceConfigurationToken\" Type=\"tt:ReferenceToken\"/>\
             <tt:SimpleItemDescription Name=\"VideoAnalyticsConfigurationToken\" Type=\"tt:ReferenceToken\"/>\
             <tt:SimpleItemDescription Name=\"Rule\" Type=\"xs:string\"/></tt:Source>\
             <tt:Data><tt:SimpleItemDescription Name=\"{item}\" Type=\"xs:boolean\"/></tt:Data>\
             </tt:MessageDescription>"
        )
    };
    format!(
        "<tev:GetEventPropertiesResponse>\
         <tev:TopicNamespaceLocation>http://www.onvif.org/onvif/ver10/topics/topicns.xml</tev:TopicNamespaceLocation>\
         <wsnt:FixedTopicSet>true</wsnt:FixedTopicSet>\
         <wstop:TopicSet><tns1:RuleEngine>\
         <CellMotionDetector><Motion wstop:topic=\"true\">{}</Motion></CellMotionDetector>\
         <MyRuleDetector><PeopleDetect wstop:topic=\"true\">{s}</PeopleDetect>\
         <VehicleDetect wstop:topic=\"true\">{s}</VehicleDetect>\
         <DogCatDetect wstop:topic=\"true\">{s}</DogCatDetect></MyRuleDetector>\
         </tns1:RuleEngine></wstop:TopicSet>\
         <wsnt:TopicExpressionDialect>http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet</wsnt:TopicExpressionDialect>\
         <wsnt:TopicExpressionDialect>http://docs.oasis-open.org/wsn/t-1/TopicExpression/Concrete</wsnt:TopicExpressionDialect>\
         <tev:MessageContentFilterDialect>http://www.onvif.org/ver10/tev/messageContentFilter/ItemFilter</tev:MessageContentFilterDialect>\
         <tev:MessageContentSchemaLocation>http://www.onvif.org/onvif/ver10/schema/onvif.xsd</tev:MessageContentSchemaLocation>\
         </tev:GetEventPropertiesResponse>",
        described("IsMotion"),
        s = described("State")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        "2026-12-08T10:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::seconds(s)
    }

    #[test]
    fn durations_as_onvif_clients_write_them() {
        let now = at(0);
        assert_eq!(duration("PT600S", now), Some(Duration::from_secs(600)));
        assert_eq!(duration("PT1M", now), Some(Duration::from_secs(60)));
        assert_eq!(
            duration("P1DT1H0.5S", now),
            Some(Duration::from_secs_f64(90_000.5))
        );
        assert_eq!(
            duration("2026-12-08T10:10:00Z", now),
            Some(Duration::from_secs(600))
        );
        for bad in ["600", "PTXS", "P", "PT-1S", ""] {
            assert!(duration(bad, now).is_none_or(|d| d.is_zero()), "{bad}");
        }
    }

    #[test]
    fn a_subscription_is_told_everything_first_then_only_changes() {
        let subs = Subscriptions::default();
        let (id, expires) = subs.create(at(0), Duration::from_secs(600));
        assert_eq!(expires, at(600));
        let still = Scene::default();
        let (first, _) = subs.pull(id, still, at(1), 100).unwrap();
        assert_eq!(first.len(), 4);
        assert!(first
            .iter()
            .all(|m| m.contains("PropertyOperation=\"Initialized\"")));
        assert!(first[0].contains("tns1:RuleEngine/CellMotionDetector/Motion"));
        let (none, _) = subs.pull(id, still, at(2), 100).unwrap();
        assert!(none.is_empty());
        let walking = Scene::new(true, ["person"]);
        let (changed, _) = subs.pull(id, walking, at(3), 100).unwrap();
        assert_eq!(changed.len(), 2, "motion and person");
        assert!(changed[1].contains("PeopleDetect") && changed[1].contains("Value=\"true\""));
        // A limit of one tells one change at a time, and the rest at the next pull.
        let (one, _) = subs.pull(id, Scene::default(), at(3), 1).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(
            subs.pull(id, Scene::default(), at(3), 1).unwrap().0.len(),
            1
        );
        assert!(subs
            .pull(id, Scene::default(), at(3), 1)
            .unwrap()
            .0
            .is_empty());
        assert!(subs.synchronize(id, at(4)));
        assert_eq!(subs.pull(id, walking, at(5), 100).unwrap().0.len(), 4);
        // Renewed, it lives on; unrenewed, it is gone.
        assert_eq!(
            subs.renew(id, at(500), Duration::from_secs(600)),
            Some(at(1100))
        );
        assert!(subs.pull(id, walking, at(1101), 100).is_none());
        assert!(subs.renew(id, at(1101), Duration::from_secs(60)).is_none());
    }

    #[test]
    fn subscriptions_are_bounded() {
        let subs = Subscriptions::default();
        let ids: Vec<_> = (0..40)
            .map(|i| subs.create(at(i), Duration::from_secs(600)).0)
            .collect();
        assert!(
            subs.pull(ids[0], Scene::default(), at(41), 10).is_none(),
            "the oldest went"
        );
        assert!(subs.pull(ids[39], Scene::default(), at(41), 10).is_some());
        assert!(subs.remove(ids[39]));
        assert!(!subs.remove(ids[39]));
    }
}
