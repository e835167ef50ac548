//! Who waits for news of which run: a receiver per watcher, a sender per run watched,
//! dropped when nobody watches it any more.

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::watch;

/// The runs being watched.
#[derive(Default)]
pub struct Watchers {
    runs: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Watchers {
    /// A receiver that changes whenever [`Watchers::notify`] names `run_id`.
    pub fn watch(&self, run_id: &str) -> watch::Receiver<u64> {
        let mut runs = self.runs.lock().expect("watchers lock");
        if runs.len() >= 64 && runs.len().is_power_of_two() {
            runs.retain(|_, sender| sender.receiver_count() > 0);
        }
        runs.entry(run_id.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Tells the watchers of `run_id` that it has news.
    pub fn notify(&self, run_id: &str) {
        let mut runs = self.runs.lock().expect("watchers lock");
        if let Some(sender) = runs.get(run_id) {
            if sender.receiver_count() == 0 {
                runs.remove(run_id);
            } else {
                sender.send_modify(|n| *n += 1);
            }
        }
    }

    /// Tells every watcher that there may be news (after a lost connection, say).
    pub fn notify_all(&self) {
        let mut runs = self.runs.lock().expect("watchers lock");
        runs.retain(|_, sender| sender.receiver_count() > 0);
        for sender in runs.values() {
            sender.send_modify(|n| *n += 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watcher_hears_of_its_run_only() {
        let watchers = Watchers::default();
        let mut a = watchers.watch("a");
        let mut b = watchers.watch("b");
        a.borrow_and_update();
        b.borrow_and_update();
        watchers.notify("a");
        assert!(a.has_changed().unwrap());
        assert!(!b.has_changed().unwrap());
        watchers.notify_all();
        assert!(b.has_changed().unwrap());
    }

    #[test]
    fn a_run_nobody_watches_is_forgotten() {
        let watchers = Watchers::default();
        drop(watchers.watch("a"));
        watchers.notify("a");
        assert!(watchers.runs.lock().unwrap().is_empty());
    }
}
