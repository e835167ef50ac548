//! Checkpoints kept in memory.

use super::super::journal::JournalRecord;
use super::super::{Checkpoint, Summary};
use super::{CheckpointStore, Listed, sort_listing};
use crate::error::Result;
use crate::error::invalid;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Checkpoints kept in memory, encoded exactly as files are; for embedding and tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    documents: Mutex<BTreeMap<String, Vec<u8>>>,
    journals: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl CheckpointStore for MemoryStore {
    fn location(&self) -> String {
        "memory".to_string()
    }

    fn save(&self, checkpoint: &Checkpoint) -> Result<String> {
        let id = checkpoint.checkpoint_id.clone();
        self.documents
            .lock()
            .expect("checkpoint map lock")
            .insert(id.clone(), checkpoint.encode());
        Ok(format!("memory:{id}"))
    }

    fn load(&self, id: &str) -> Result<Checkpoint> {
        let documents = self.documents.lock().expect("checkpoint map lock");
        let bytes = documents
            .get(id)
            .ok_or_else(|| invalid(format!("no checkpoint '{id}' in memory")))?;
        Checkpoint::decode(bytes, &format!("memory:{id}"))
    }

    fn list(&self) -> Result<Vec<Listed>> {
        let documents = self.documents.lock().expect("checkpoint map lock");
        let mut listing: Vec<Listed> = documents
            .iter()
            .map(|(id, bytes)| Listed {
                id: id.clone(),
                location: format!("memory:{id}"),
                summary: Summary::read(bytes, &format!("memory:{id}")).map_err(|e| e.to_string()),
            })
            .collect();
        sort_listing(&mut listing);
        Ok(listing)
    }

    fn delete(&self, id: &str) -> Result<()> {
        let mut documents = self.documents.lock().expect("checkpoint map lock");
        documents
            .remove(id)
            .map(drop)
            .ok_or_else(|| invalid(format!("no checkpoint '{id}' in memory")))
    }

    fn append_journal(&self, base: &str, records: &[JournalRecord]) -> Result<()> {
        let mut journals = self.journals.lock().expect("journal map lock");
        let journal = journals.entry(base.to_string()).or_default();
        for record in records {
            journal.extend(record.encode(None));
        }
        Ok(())
    }

    fn read_journal(&self, base: &str) -> Result<Vec<JournalRecord>> {
        let journals = self.journals.lock().expect("journal map lock");
        match journals.get(base) {
            Some(bytes) => {
                JournalRecord::decode_all(bytes, &format!("memory:{base}.journal"), None)
            }
            None => Ok(Vec::new()),
        }
    }

    fn remove_journal(&self, base: &str) -> Result<()> {
        self.journals.lock().expect("journal map lock").remove(base);
        Ok(())
    }
}
