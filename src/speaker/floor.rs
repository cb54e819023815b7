//! Who may talk through the speaker: one viewer at a time (pure; time is an input).
//!
//! A viewer takes the floor with the `talk` command's `start`; while it holds it, its
//! audio is played and everyone else's is dropped, and other viewers asking are told who
//! holds it. The floor frees when the talker says `stop`, leaves, or has been silent
//! (nothing loud heard) for the configured time.

use std::time::{Duration, Instant};

/// A viewer, as the floor knows it: the session serial (unique for the daemon's life)
/// and the name shown to the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Talker {
    pub serial: u64,
    pub name: String,
}

/// Why the floor was freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    Stopped,
    Left,
    Silent,
}

impl Release {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Left => "left",
            Self::Silent => "silent",
        }
    }
}

/// What happened, for the task to act on (start or stop playback, tell, count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Granted(Talker),
    Released(Talker, Release),
}

/// The answer to a `talk start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The asker holds the floor (newly, or still).
    Granted,
    /// Someone else holds it.
    Busy { holder: String },
}

#[derive(Debug)]
struct Holding {
    talker: Talker,
    last_heard: Instant,
}

/// The floor.
#[derive(Debug)]
pub struct Floor {
    silence: Duration,
    holder: Option<Holding>,
}

impl Floor {
    /// A floor that frees after `silence` without anything loud heard from the talker.
    pub fn new(silence: Duration) -> Self {
        Self {
            silence,
            holder: None,
        }
    }

    /// Who holds the floor.
    pub fn holder(&self) -> Option<&Talker> {
        self.holder.as_ref().map(|h| &h.talker)
    }

    /// `talk start` from `who`.
    pub fn start(&mut self, now: Instant, who: Talker) -> (Answer, Option<Change>) {
        match &mut self.holder {
            Some(h) if h.talker.serial == who.serial => {
                h.last_heard = now;
                (Answer::Granted, None)
            }
            Some(h) => (
                Answer::Busy {
                    holder: h.talker.name.clone(),
                },
                None,
            ),
            None => {
                self.holder = Some(Holding {
                    talker: who.clone(),
                    last_heard: now,
                });
                (Answer::Granted, Some(Change::Granted(who)))
            }
        }
    }

    /// `talk stop` from `serial` (or it left): frees the floor if it held it.
    pub fn stop(&mut self, serial: u64, why: Release) -> Option<Change> {
        if self.holder()?.serial != serial {
            return None;
        }
        let h = self.holder.take()?;
        Some(Change::Released(h.talker, why))
    }

    /// Whether audio from `serial` is played.
    pub fn plays(&self, serial: u64) -> bool {
        self.holder().is_some_and(|t| t.serial == serial)
    }

    /// The talker's audio was loud (speech, not silence) at `now`.
    pub fn heard(&mut self, now: Instant) {
        if let Some(h) = &mut self.holder {
            h.last_heard = h.last_heard.max(now);
        }
    }

    /// Frees the floor of a talker silent for too long.
    pub fn tick(&mut self, now: Instant) -> Option<Change> {
        let h = self.holder.as_ref()?;
        if now.saturating_duration_since(h.last_heard) < self.silence {
            return None;
        }
        let serial = h.talker.serial;
        self.stop(serial, Release::Silent)
    }

    /// When `tick` should next run, if someone holds the floor.
    pub fn deadline(&self) -> Option<Instant> {
        self.holder.as_ref().map(|h| h.last_heard + self.silence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(serial: u64, name: &str) -> Talker {
        Talker {
            serial,
            name: name.into(),
        }
    }

    #[test]
    fn the_first_to_ask_talks_and_the_others_are_told_who_until_the_floor_frees() {
        let t0 = Instant::now();
        let mut floor = Floor::new(Duration::from_secs(10));
        let (answer, change) = floor.start(t0, who(1, "Dad"));
        assert_eq!(answer, Answer::Granted);
        assert_eq!(change, Some(Change::Granted(who(1, "Dad"))));
        assert!(floor.plays(1));

        let (answer, change) = floor.start(t0, who(2, "Mum"));
        assert_eq!(
            answer,
            Answer::Busy {
                holder: "Dad".into()
            }
        );
        assert_eq!(change, None);
        assert!(!floor.plays(2), "the other viewer's audio is dropped");

        assert_eq!(
            floor.stop(2, Release::Stopped),
            None,
            "only the talker frees it"
        );
        assert_eq!(
            floor.stop(1, Release::Stopped),
            Some(Change::Released(who(1, "Dad"), Release::Stopped))
        );
        assert_eq!(floor.start(t0, who(2, "Mum")).0, Answer::Granted);
    }

    #[test]
    fn a_talker_who_leaves_or_stays_silent_frees_the_floor() {
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        let mut floor = Floor::new(secs(10));
        floor.start(t0, who(1, "Dad"));
        assert_eq!(
            floor.stop(1, Release::Left),
            Some(Change::Released(who(1, "Dad"), Release::Left))
        );

        floor.start(t0, who(2, "Mum"));
        floor.heard(t0 + secs(8));
        assert_eq!(floor.tick(t0 + secs(17)), None, "heard 9 s ago");
        assert_eq!(floor.deadline(), Some(t0 + secs(18)));
        assert_eq!(
            floor.tick(t0 + secs(18)),
            Some(Change::Released(who(2, "Mum"), Release::Silent))
        );
        assert_eq!(floor.deadline(), None);
        assert_eq!(floor.tick(t0 + secs(60)), None);
    }

    #[test]
    fn asking_again_while_holding_keeps_the_floor() {
        let t0 = Instant::now();
        let mut floor = Floor::new(Duration::from_secs(5));
        floor.start(t0, who(1, "Dad"));
        let (answer, change) = floor.start(t0 + Duration::from_secs(4), who(1, "Dad"));
        assert_eq!((answer, change), (Answer::Granted, None));
        assert_eq!(floor.tick(t0 + Duration::from_secs(6)), None);
    }
}
