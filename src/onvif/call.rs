//! A request as the web server hands it over, and what comes back.

use super::answers::Reached;
use super::soap;

/// One request as the web server has it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub body: &'a [u8],
    /// Where the client reached us.
    pub at: &'a Reached,
    /// The subscription in the request's path (`/onvif/subscription/<id>`).
    pub subscription: Option<u64>,
    /// What the camera sees now (for PullMessages).
    pub scene: Scene,
    /// A PullMessages with nothing to tell may be answered later (`Reply::Wait`).
    pub may_wait: bool,
    /// The same request again after a `Reply::Wait`: its token was checked (and its
    /// nonce used) the first time.
    pub again: bool,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Now(Answer),
    /// Nothing happened yet: ask again with `may_wait = false` when the scene changes or
    /// this long has passed.
    Wait(std::time::Duration),
}

/// An answer: HTTP status and SOAP envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub(super) fn ok(body: String) -> Self {
        Self {
            status: 200,
            body: soap::envelope(&body),
        }
    }
    pub(super) fn fault(status: u16, code: &str, subcode: &str, reason: &str) -> Self {
        Self {
            status,
            body: soap::fault(code, subcode, reason),
        }
    }
}

/// What the camera sees now, as events report it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scene {
    pub motion: bool,
    pub person: bool,
    pub vehicle: bool,
    pub animal: bool,
}

impl Scene {
    /// From the detector's labels in view (COCO names).
    pub fn new(motion: bool, labels: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        let mut s = Scene {
            motion,
            ..Scene::default()
        };
        for l in labels {
            match l.as_ref() {
                "person" => s.person = true,
                "bicycle" | "car" | "motorbike" | "motorcycle" | "bus" | "truck" => {
                    s.vehicle = true
                }
                "cat" | "dog" | "bird" | "horse" | "sheep" | "cow" => s.animal = true,
                _ => {}
            }
        }
        s
    }

    /// Each topic with its state: (topic, data item name, value).
    pub(super) fn items(&self) -> [(&'static str, &'static str, bool); 4] {
        [
            (
                "tns1:RuleEngine/CellMotionDetector/Motion",
                "IsMotion",
                self.motion,
            ),
            (
                "tns1:RuleEngine/MyRuleDetector/PeopleDetect",
                "State",
                self.person,
            ),
            (
                "tns1:RuleEngine/MyRuleDetector/VehicleDetect",
                "State",
                self.vehicle,
            ),
            (
                "tns1:RuleEngine/MyRuleDetector/DogCatDetect",
                "State",
                self.animal,
            ),
        ]
    }
}
