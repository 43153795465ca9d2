//! The JSON objects of OpenAI's answers.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// Token counts of one answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tokens {
    pub prompt: usize,
    pub completion: usize,
}

impl Tokens {
    fn to_json(self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
        })
    }
}

/// What every object of one completion shares.
#[derive(Debug, Clone)]
pub(crate) struct Completion {
    pub id: String,
    pub model: String,
    pub created: u64,
}

impl Completion {
    pub(crate) fn new(id: String, model: String) -> Self {
        Self {
            id,
            model,
            created: unix_now(),
        }
    }

    /// The `chat.completion` object of a whole answer.
    pub(crate) fn whole(&self, text: &str, usage: Option<Tokens>) -> Value {
        let mut object = json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": text, "refusal": null },
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "system_fingerprint": null,
        });
        if let Some(usage) = usage {
            object["usage"] = usage.to_json();
        }
        object
    }

    /// The `data:` events of a streamed answer, `[DONE]` included. With
    /// `usage`, every chunk has `"usage": null` and a last chunk with no
    /// choices holds the usage, as when `stream_options.include_usage` is set.
    pub(crate) fn stream_events(&self, deltas: &[&str], usage: Option<Tokens>) -> Vec<String> {
        let mut chunks = vec![self.chunk(json!({"role": "assistant", "content": ""}), None)];
        chunks.extend(
            deltas
                .iter()
                .map(|text| self.chunk(json!({ "content": text }), None)),
        );
        chunks.push(self.chunk(json!({}), Some("stop")));

        if let Some(usage) = usage {
            for chunk in &mut chunks {
                chunk["usage"] = Value::Null;
            }
            let mut last = self.base("chat.completion.chunk");
            last["choices"] = json!([]);
            last["usage"] = usage.to_json();
            chunks.push(last);
        }

        let mut events: Vec<String> = chunks.iter().map(|chunk| sse(&chunk.to_string())).collect();
        events.push(sse("[DONE]"));
        events
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        let mut chunk = self.base("chat.completion.chunk");
        chunk["choices"] = json!([{
            "index": 0,
            "delta": delta,
            "logprobs": null,
            "finish_reason": finish_reason,
        }]);
        chunk
    }

    fn base(&self, object: &str) -> Value {
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
        })
    }
}

fn sse(data: &str) -> String {
    format!("data: {data}\n\n")
}

/// The `list` of embeddings, in input order.
pub(crate) fn embeddings(model: &str, vectors: Vec<Vec<f32>>, tokens: usize) -> Value {
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, embedding)| json!({"object": "embedding", "index": index, "embedding": embedding}))
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    })
}

/// The `list` of models.
pub(crate) fn models(names: &[&str]) -> Value {
    let created = unix_now();
    let data: Vec<Value> = names
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": created, "owned_by": "system"}))
        .collect();
    json!({ "object": "list", "data": data })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
