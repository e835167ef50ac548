//! The consistency of a checkpoint that the JSON schema alone does not give: plain ids,
//! payloads that decode, shared bodies and references that exist, a status that agrees
//! with the queues.

use super::{Checkpoint, Field, Status, blobs};
use crate::message::{INPUT_SOURCE, Payload, parse_request_id};
use std::collections::BTreeSet;

impl Checkpoint {
    /// Consistency checks that the JSON schema alone does not make.
    pub(super) fn check(&self) -> Result<(), String> {
        check_ids(&self.checkpoint_id, self.parent_id.as_deref())?;
        for (field, payload) in self.blob_capable() {
            match payload {
                Payload::Blob(blob) => blobs::check_ref(&field.to_string(), blob)?,
                Payload::Shared(n) if matches!(field, Field::QueuedBody(..)) => {
                    if *n >= self.shared_bodies.len() {
                        return Err(format!(
                            "{field}: shared body {n} does not exist (there are {})",
                            self.shared_bodies.len()
                        ));
                    }
                }
                _ => drop(payload.decode().map_err(|e| format!("{field}: {e}"))?),
            }
        }
        let payloads = self
            .shared_state
            .iter()
            .map(|(k, v)| (format!("shared_state.{k}"), v))
            .chain(
                self.pending_requests
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (format!("pending_requests[{i}].body"), &r.body)),
            )
            .chain(self.responses.iter().flat_map(|(id, responses)| {
                responses
                    .iter()
                    .enumerate()
                    .map(move |(i, r)| (format!("responses.{id}[{i}].body"), &r.body))
            }))
            .chain(
                self.outputs
                    .iter()
                    .enumerate()
                    .map(|(i, o)| (format!("outputs[{i}].body"), &o.body)),
            );
        for (field, payload) in payloads {
            payload.decode().map_err(|e| format!("{field}: {e}"))?;
        }
        self.check_references()?;
        let expected = Status::of(self.queued_count(), self.pending_requests.len());
        if self.status != expected {
            return Err(format!(
                "status is {} but {} message(s) or response(s) are queued and {} request(s) pending (that is {})",
                self.status.as_str(),
                self.queued_count(),
                self.pending_requests.len(),
                expected.as_str()
            ));
        }
        Ok(())
    }

    /// Checks that everything the checkpoint names is in it: queues, requests, responses
    /// and outputs name its executors, and happened before its superstep.
    pub(crate) fn check_references(&self) -> Result<(), String> {
        self.check_queues()?;
        let mut asked = BTreeSet::new();
        self.check_requests(&mut asked)?;
        self.check_responses(&mut asked)?;
        for (i, output) in self.outputs.iter().enumerate() {
            self.known(&format!("outputs[{i}].source"), &output.source)?;
            self.before(&format!("outputs[{i}].superstep"), output.superstep)?;
        }
        Ok(())
    }

    /// An error naming `field` unless `id` is one of the checkpoint's executors.
    fn known(&self, field: &str, id: &str) -> Result<(), String> {
        match self.executors.contains_key(id) {
            true => Ok(()),
            false => Err(format!("{field}: unknown executor '{id}'")),
        }
    }

    /// An error naming `field` unless `superstep` came before the checkpoint's own.
    fn before(&self, field: &str, superstep: u64) -> Result<(), String> {
        match superstep < self.superstep {
            true => Ok(()),
            false => Err(format!(
                "{field}: superstep {superstep} is not before the checkpoint's own ({})",
                self.superstep
            )),
        }
    }

    /// Queued messages are for and from its executors (or the run's input, before the
    /// first superstep).
    fn check_queues(&self) -> Result<(), String> {
        for (id, queue) in &self.queued {
            if !self.executors.contains_key(id) {
                return Err(format!("queued: messages for unknown executor '{id}'"));
            }
            for (i, message) in queue.iter().enumerate() {
                let input = message.source == INPUT_SOURCE && self.superstep == 0;
                if !input {
                    self.known(&format!("queued.{id}[{i}].source"), &message.source)?;
                }
            }
        }
        Ok(())
    }

    /// Each pending request was made by its executor in an earlier superstep, once;
    /// `asked` collects their ids.
    fn check_requests<'a>(&'a self, asked: &mut BTreeSet<&'a str>) -> Result<(), String> {
        for (i, request) in self.pending_requests.iter().enumerate() {
            let field = format!("pending_requests[{i}]");
            self.known(&format!("{field}.executor"), &request.executor)?;
            self.before(&format!("{field}.superstep"), request.superstep)?;
            let made_by = parse_request_id(&request.request_id)
                .is_some_and(|(e, s, _)| e == request.executor && s == request.superstep);
            if !made_by {
                return Err(format!(
                    "{field}.request_id: '{}' is not the id of a request that executor '{}' made in superstep {}",
                    request.request_id, request.executor, request.superstep
                ));
            }
            if !asked.insert(request.request_id.as_str()) {
                return Err(format!(
                    "{field}.request_id: request '{}' is listed twice",
                    request.request_id
                ));
            }
        }
        Ok(())
    }

    /// Each response answers a request of its executor from an earlier superstep, one
    /// that is not also pending or answered twice.
    fn check_responses<'a>(&'a self, asked: &mut BTreeSet<&'a str>) -> Result<(), String> {
        for (id, responses) in &self.responses {
            if !self.executors.contains_key(id) {
                return Err(format!("responses: responses for unknown executor '{id}'"));
            }
            for (i, response) in responses.iter().enumerate() {
                let field = format!("responses.{id}[{i}].request_id");
                let superstep = parse_request_id(&response.request_id)
                    .filter(|(executor, _, _)| executor == id)
                    .map(|(_, superstep, _)| superstep)
                    .ok_or_else(|| {
                        format!(
                            "{field}: '{}' is not the id of a request of executor '{id}'",
                            response.request_id
                        )
                    })?;
                self.before(&field, superstep)?;
                if !asked.insert(response.request_id.as_str()) {
                    return Err(format!(
                        "{field}: request '{}' is answered twice, or both answered and pending",
                        response.request_id
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Checks that a checkpoint's own id and its parent's can name files.
pub(super) fn check_ids(checkpoint_id: &str, parent_id: Option<&str>) -> Result<(), String> {
    if !is_plain_id(checkpoint_id) {
        return Err(format!("checkpoint_id '{checkpoint_id}' is not a plain id"));
    }
    match parent_id {
        Some(parent) if !is_plain_id(parent) => {
            Err(format!("parent_id '{parent}' is not a plain id"))
        }
        _ => Ok(()),
    }
}

/// Checkpoint ids name files: only ASCII letters, digits and `-`.
pub fn is_plain_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::super::*;
    use crate::hash::sha256_hex;
    use crate::message::INPUT_SOURCE;

    fn refusal(checkpoint: &Checkpoint) -> String {
        Checkpoint::decode(&checkpoint.encode(), "f.json")
            .unwrap_err()
            .to_string()
    }

    fn request(executor: &str, superstep: u64, n: usize) -> RequestRecord {
        RequestRecord {
            request_id: crate::message::request_id(executor, superstep, n),
            executor: executor.into(),
            superstep,
            kind: "ask".into(),
            body: Payload::encode(b"1"),
        }
    }

    #[test]
    fn refuses_references_to_executors_it_does_not_hold() {
        let mut queue_for_stranger = sample();
        let queue = queue_for_stranger.queued.remove("a").unwrap();
        queue_for_stranger.queued.insert("z".into(), queue);
        assert!(
            refusal(&queue_for_stranger).ends_with("queued: messages for unknown executor 'z'")
        );
        let mut from_stranger = sample();
        from_stranger.queued.get_mut("a").unwrap()[0].source = "z".into();
        assert!(refusal(&from_stranger).ends_with("queued.a[0].source: unknown executor 'z'"));
        let mut late_input = sample();
        late_input.queued.get_mut("a").unwrap()[0].source = INPUT_SOURCE.into();
        assert!(refusal(&late_input).ends_with("queued.a[0].source: unknown executor '$input'"));
        let mut output = sample();
        output.outputs.push(OutputRecord {
            superstep: 0,
            source: "z".into(),
            kind: "k".into(),
            body: Payload::encode(b"1"),
        });
        assert!(refusal(&output).ends_with("outputs[0].source: unknown executor 'z'"));
        output.outputs[0].source = "a".into();
        output.outputs[0].superstep = 1;
        assert!(
            refusal(&output).ends_with(
                "outputs[0].superstep: superstep 1 is not before the checkpoint's own (1)"
            )
        );
    }

    #[test]
    fn refuses_requests_and_responses_that_no_executor_could_have_made() {
        let with = |requests: Vec<RequestRecord>, responses: Vec<(&str, &str)>| {
            let mut checkpoint = sample();
            checkpoint.pending_requests = requests;
            for (executor, id) in responses {
                checkpoint
                    .responses
                    .entry(executor.into())
                    .or_default()
                    .push(ResponseRecord {
                        request_id: id.into(),
                        kind: "response".into(),
                        body: Payload::encode(b"true"),
                    });
            }
            checkpoint
        };
        assert!(
            Checkpoint::decode(
                &with(vec![request("a", 0, 1)], vec![("a", "a:0:2")]).encode(),
                "f"
            )
            .is_ok()
        );
        assert!(
            refusal(&with(vec![request("z", 0, 1)], vec![]))
                .ends_with("pending_requests[0].executor: unknown executor 'z'")
        );
        assert!(refusal(&with(vec![request("a", 1, 1)], vec![])).ends_with(
            "pending_requests[0].superstep: superstep 1 is not before the checkpoint's own (1)"
        ));
        let mut misnamed = request("a", 0, 1);
        misnamed.request_id = "b:0:1".into();
        assert!(refusal(&with(vec![misnamed], vec![])).ends_with(
            "pending_requests[0].request_id: 'b:0:1' is not the id of a request that executor 'a' made in superstep 0"
        ));
        assert!(
            refusal(&with(vec![request("a", 0, 1), request("a", 0, 1)], vec![]))
                .ends_with("pending_requests[1].request_id: request 'a:0:1' is listed twice")
        );
        assert!(
            refusal(&with(vec![], vec![("z", "z:0:1")]))
                .ends_with("responses: responses for unknown executor 'z'")
        );
        assert!(refusal(&with(vec![], vec![("a", "b:0:1")])).ends_with(
            "responses.a[0].request_id: 'b:0:1' is not the id of a request of executor 'a'"
        ));
        assert!(refusal(&with(vec![], vec![("a", "a:1:1")])).ends_with(
            "responses.a[0].request_id: superstep 1 is not before the checkpoint's own (1)"
        ));
        assert!(
            refusal(&with(vec![request("a", 0, 1)], vec![("a", "a:0:1")]))
                .ends_with("request 'a:0:1' is answered twice, or both answered and pending")
        );
    }

    #[test]
    fn refuses_a_key_given_twice() {
        let text = String::from_utf8(sample().encode()).unwrap();
        let start = text.find("\"checkpoint\": ").unwrap() + "\"checkpoint\": ".len();
        let end = text.rfind('}').unwrap();
        let content = &text[start..end].trim_end();
        let doubled = content.replacen(
            "\"executors\": {",
            "\"executors\": {\"a\": {\"component\": \"sha256:11\", \"state\": {\"json\": 2}},",
            1,
        );
        let file = format!(
            "{{\"format\": \"{FORMAT}\", \"format_version\": 2, \"checksum\": \"{}\", \"checkpoint\": {doubled}}}",
            sha256_hex(doubled.as_bytes())
        );
        let error = Checkpoint::decode(file.as_bytes(), "f.json")
            .unwrap_err()
            .to_string();
        assert!(error.contains("key 'a' appears twice"), "{error}");
        let error = Summary::read(file.as_bytes(), "f.json")
            .unwrap_err()
            .to_string();
        assert!(error.contains("key 'a' appears twice"), "{error}");
    }
}
