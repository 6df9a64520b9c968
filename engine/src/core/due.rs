//! A set of ids each due at one time, taken in order of when they are due: the notifications whose next
//! delivery attempt is due.

use std::collections::BTreeSet;

use foldhash::HashMap;

use crate::model::Micros;

#[derive(Default)]
pub struct DueSet {
    by_time: BTreeSet<(Micros, String)>,
    at: HashMap<String, Micros>,
}

impl DueSet {
    /// Makes `id` due at `at`, or not due at all (None), replacing when it was due before.
    pub fn set(&mut self, id: &str, at: Option<Micros>) {
        if let Some(old) = self.at.remove(id) {
            self.by_time.remove(&(old, id.to_string()));
        }
        if let Some(at) = at {
            self.by_time.insert((at, id.to_string()));
            self.at.insert(id.to_string(), at);
        }
    }

    /// Up to `max` ids due by `now`, soonest first (they stay due until set again).
    pub fn due(&self, now: Micros, max: usize) -> Vec<String> {
        self.by_time.iter().take_while(|(at, _)| *at <= now).take(max).map(|(_, id)| id.clone()).collect()
    }
}
