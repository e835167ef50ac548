//! A checkpoint save on a thread of its own, so that the next superstep can run while
//! the disk syncs the previous barrier's checkpoint.

use super::{Checkpoint, CheckpointStore};
use std::sync::{Arc, Condvar, Mutex};

/// A save in progress; clones wait for the same save.
#[derive(Clone)]
pub(crate) struct BackgroundSave {
    outcome: Arc<(Mutex<Option<Result<String, String>>>, Condvar)>,
}

impl BackgroundSave {
    /// Starts saving `checkpoint` to `store`; `what` names it in the error.
    pub(crate) fn start(
        store: Arc<dyn CheckpointStore>,
        checkpoint: Checkpoint,
        what: String,
    ) -> BackgroundSave {
        let save = BackgroundSave {
            outcome: Arc::default(),
        };
        let done = save.clone();
        let spawned = std::thread::Builder::new()
            .name("superstep-checkpoint".into())
            .spawn(move || {
                let saved = store
                    .save(&checkpoint)
                    .map_err(|error| format!("{what}: {error:#}"));
                done.finish(saved);
            });
        if let Err(error) = spawned {
            save.finish(Err(format!("cannot start the checkpoint writer: {error}")));
        }
        save
    }

    fn finish(&self, saved: Result<String, String>) {
        let (outcome, done) = &*self.outcome;
        *outcome.lock().expect("checkpoint save lock") = Some(saved);
        done.notify_all();
    }

    /// Waits until the checkpoint is durable; returns where the store put it, or why it
    /// could not.
    pub(crate) fn wait(&self) -> Result<String, String> {
        let (outcome, done) = &*self.outcome;
        let finished = done
            .wait_while(outcome.lock().expect("checkpoint save lock"), |outcome| {
                outcome.is_none()
            })
            .expect("checkpoint save lock");
        finished.clone().expect("finished")
    }
}
