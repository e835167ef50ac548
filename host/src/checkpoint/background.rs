//! A checkpoint save that may run on a thread of its own, so that the next superstep
//! can run while the disk syncs the previous barrier's checkpoint.

use super::{Checkpoint, CheckpointStore};
use std::sync::{Arc, Condvar, Mutex};

/// Where the store put a checkpoint, or why it could not.
type Saved = Result<String, String>;

/// A checkpoint save, possibly still in progress; clones wait for the same save.
#[derive(Clone)]
pub(crate) struct SaveHandle {
    /// `None` until the save finished; the condvar announces it.
    outcome: Arc<(Mutex<Option<Saved>>, Condvar)>,
}

impl SaveHandle {
    /// Saves `checkpoint` to `store`, on a thread of its own when `background`, else
    /// before returning; `what` names it in the error.
    pub(crate) fn start(
        store: Arc<dyn CheckpointStore>,
        checkpoint: Checkpoint,
        what: String,
        background: bool,
    ) -> SaveHandle {
        let save = SaveHandle {
            outcome: Arc::default(),
        };
        let run = {
            let done = save.clone();
            move || {
                let saved = store
                    .save(&checkpoint)
                    .map_err(|error| format!("{what}: {error:#}"));
                done.finish(saved);
            }
        };
        if !background {
            run();
        } else if let Err(error) = std::thread::Builder::new()
            .name("superstep-checkpoint".into())
            .spawn(run)
        {
            save.finish(Err(format!("cannot start the checkpoint writer: {error}")));
        }
        save
    }

    fn finish(&self, saved: Saved) {
        let (outcome, done) = &*self.outcome;
        *outcome.lock().expect("checkpoint save lock") = Some(saved);
        done.notify_all();
    }

    /// Waits until the checkpoint is durable; returns where the store put it, or why it
    /// could not.
    pub(crate) fn wait(&self) -> Saved {
        let (outcome, done) = &*self.outcome;
        let finished = done
            .wait_while(outcome.lock().expect("checkpoint save lock"), |outcome| {
                outcome.is_none()
            })
            .expect("checkpoint save lock");
        finished.clone().expect("finished")
    }
}
