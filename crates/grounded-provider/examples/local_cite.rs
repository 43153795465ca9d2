//! Does SmolLM2-135M-Instruct cite its sources, and how fast is it?
//!
//! Runs the local model on six questions about the Rust book, each with
//! three sources of about 250 tokens cut from the installed book, under
//! several prompt wordings, and counts the answers that hold at least one
//! `[n]` naming a real source (and the one that holds the answer). Then
//! measures prompt processing and generation speed on an 800-token prompt.
//! With `CONSTRAINED=1` the answers are generated with citations by
//! construction (`ChatRequest::cite_sources`): then each marker names the
//! source a sentence's words come from, and what the run measures is how
//! often that is the source holding the answer (one in three by chance).
//!
//! ```sh
//! cargo build --release --workspace --examples
//! CANDLE_NUM_THREADS=2 target/release/examples/local_cite
//! CONSTRAINED=1 VARIANT=grounded SKIP_MEASURE=1 target/release/examples/local_cite
//! ```

use std::path::PathBuf;
use std::time::Instant;

use grounded_core::ChatMessage;
use grounded_provider::local::{LocalChat, LocalModelOptions};
use grounded_provider::{ChatModel, ChatRequest};

/// One source: a book page, the heading it starts at, its text.
struct Source {
    page: &'static str,
    section: &'static str,
    text: String,
}

/// A question and its sources; `answer_in` is the 1-based number of the
/// source that answers it.
struct Case {
    question: &'static str,
    sources: Vec<Source>,
    answer_in: usize,
}

const PAGES: [(&str, &str); 5] = [
    ("ch04-01-what-is-ownership", "Ownership Rules"),
    ("ch04-01-what-is-ownership", "The Stack and the Heap"),
    (
        "ch04-02-references-and-borrowing",
        "The Rules of References",
    ),
    ("ch04-02-references-and-borrowing", "Dangling References"),
    ("ch08-01-vectors", "Reading Elements of Vectors"),
];

/// (question, the source that answers it, the two others), as indexes of
/// [`PAGES`] plus one for variables.
const QUESTIONS: [(&str, usize, [usize; 2]); 6] = [
    ("What are the ownership rules in Rust?", 0, [2, 4]),
    (
        "What is the difference between the stack and the heap?",
        1,
        [0, 3],
    ),
    ("What are the rules of references?", 2, [0, 1]),
    ("What is a dangling reference?", 3, [4, 2]),
    ("How do you read an element of a vector?", 4, [1, 3]),
    ("Are variables in Rust mutable by default?", 5, [0, 4]),
];

fn book_dir() -> PathBuf {
    let sysroot = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .expect("rustc runs");
    let sysroot = String::from_utf8(sysroot.stdout).expect("utf-8 path");
    PathBuf::from(sysroot.trim()).join("share/doc/rust/html/book")
}

/// The text of a book page's `<main>`, tags removed, entities decoded.
fn page_text(page: &str) -> String {
    let html = std::fs::read_to_string(book_dir().join(format!("{page}.html"))).expect("page");
    let start = html.find("<main>").expect("main");
    let end = html.find("</main>").expect("/main");
    let mut text = String::new();
    let mut in_tag = false;
    for c in html[start..end].chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    for (entity, plain) in [
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&quot;", "\""),
        ("&#39;", "'"),
    ] {
        text = text.replace(entity, plain);
    }
    text.replace("&amp;", "&")
}

/// About `tokens` tokens of `page` from the heading `section` on.
fn source(chat: &LocalChat, page: &'static str, section: &'static str, tokens: usize) -> Source {
    let text = page_text(page);
    let start = text.find(section).expect("section in page");
    let mut end = start;
    for (i, c) in text[start..].char_indices() {
        if c.is_whitespace() {
            if chat.count_tokens(&text[start..start + i]) > tokens {
                break;
            }
            end = start + i;
        }
    }
    let body = text[start + section.len()..end].trim().to_owned();
    Source {
        page,
        section,
        text: body,
    }
}

fn cases(chat: &LocalChat) -> Vec<Case> {
    let variables = || Source {
        section: "Variables and Mutability",
        ..source(
            chat,
            "ch03-01-variables-and-mutability",
            "Variables and Mutability",
            250,
        )
    };
    let make = |index: usize| {
        if index == 5 {
            return variables();
        }
        let (page, section) = PAGES[index];
        source(chat, page, section, 250)
    };
    QUESTIONS
        .iter()
        .enumerate()
        .map(|(n, (question, answer, others))| {
            // The answering source moves between positions 1, 2 and 3.
            let slot = n % 3;
            let mut sources: Vec<Source> = others.iter().map(|&i| make(i)).collect();
            sources.insert(slot, make(*answer));
            Case {
                question,
                sources,
                answer_in: slot + 1,
            }
        })
        .collect()
}

/// The sources as grounded's prompt lays them out today.
fn sources_block(case: &Case) -> String {
    let blocks: Vec<String> = case
        .sources
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "[{}] book/{}.md (lines 1-40) — {}\n{}",
                i + 1,
                s.page,
                s.section,
                s.text
            )
        })
        .collect();
    blocks.join("\n\n")
}

const GROUNDED_SYSTEM: &str = "You answer questions using only the numbered sources \
in the user's message. Cite the source of every claim as [n], where n is the source's number, \
right after the claim; cite several as [1][3]. Do not use knowledge from outside the sources. \
If the sources do not contain the answer, say that they do not, and do not guess.";

const SHORT_SYSTEM: &str = "You answer questions from numbered sources. After each sentence, \
write the number of the source it comes from in square brackets, like [2].";

const AFTER_QUESTION: &str = "Answer in two or three sentences using the sources above. End \
each sentence with the number of its source in square brackets, for example [2].";

const EXAMPLE_USER: &str = "Sources:\n\n[1] book/ch01-01-installation.md — Installation\n\
The first step is to install Rust. We'll download Rust through rustup, a command line tool \
for managing Rust versions.\n\n[2] book/ch01-03-hello-cargo.md — Hello, Cargo!\nCargo is \
Rust's build system and package manager. You can build a project using cargo build.\n\n\
Question: How do you build a project?";

const EXAMPLE_ANSWER: &str = "You build a project with the command cargo build [2]. Cargo is \
Rust's build system and package manager [2].";

/// The sources with a short header: number and section only.
fn plain_block(case: &Case) -> String {
    let blocks: Vec<String> = case
        .sources
        .iter()
        .enumerate()
        .map(|(i, s)| format!("[{}] {}\n{}", i + 1, s.section, s.text))
        .collect();
    blocks.join("\n\n")
}

const ACCORDING_SYSTEM: &str = "You answer a question from numbered sources. Use the one \
source that answers it. Begin your answer with \"According to [n],\" where n is that source's \
number, and answer in one or two sentences.";

const ACCORDING_AFTER: &str = "Begin your answer with \"According to [n],\" naming the source \
that answers the question.";

const ACCORDING_EXAMPLE_USER: &str = "Sources:\n\n[1] Installation\nThe first step is to \
install Rust. We'll download Rust through rustup, a command line tool for managing Rust \
versions.\n\n[2] Hello, Cargo!\nCargo is Rust's build system and package manager. You can \
build a project using cargo build.\n\nQuestion: How do you build a project?";

const ACCORDING_EXAMPLE_ANSWER: &str = "According to [2], you build a project with the command \
cargo build.";

fn according_to(case: &Case) -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", ACCORDING_SYSTEM),
        ChatMessage::new(
            "user",
            format!(
                "Sources:\n\n{}\n\nQuestion: {}\n\n{ACCORDING_AFTER}",
                plain_block(case),
                case.question
            ),
        ),
    ]
}

fn according_to_one_shot(case: &Case) -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", ACCORDING_SYSTEM),
        ChatMessage::new("user", ACCORDING_EXAMPLE_USER),
        ChatMessage::new("assistant", ACCORDING_EXAMPLE_ANSWER),
        ChatMessage::new(
            "user",
            format!(
                "Sources:\n\n{}\n\nQuestion: {}\n\n{ACCORDING_AFTER}",
                plain_block(case),
                case.question
            ),
        ),
    ]
}

fn question_twice(case: &Case) -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", SHORT_SYSTEM),
        ChatMessage::new(
            "user",
            format!(
                "Question: {q}\n\nSources:\n\n{}\n\nQuestion: {q}\n\n{AFTER_QUESTION}",
                plain_block(case),
                q = case.question
            ),
        ),
    ]
}

/// A prompt wording: its name and the messages it makes for a case.
type Variant = (&'static str, fn(&Case) -> Vec<ChatMessage>);

fn grounded_today(case: &Case) -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", GROUNDED_SYSTEM),
        ChatMessage::new(
            "user",
            format!(
                "Sources:\n\n{}\n\nQuestion: {}",
                sources_block(case),
                case.question
            ),
        ),
    ]
}

fn instruction_after(case: &Case) -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", SHORT_SYSTEM),
        ChatMessage::new(
            "user",
            format!(
                "Sources:\n\n{}\n\nQuestion: {}\n\n{AFTER_QUESTION}",
                sources_block(case),
                case.question
            ),
        ),
    ]
}

fn one_shot(case: &Case) -> Vec<ChatMessage> {
    let mut messages = vec![
        ChatMessage::new("system", SHORT_SYSTEM),
        ChatMessage::new("user", EXAMPLE_USER),
        ChatMessage::new("assistant", EXAMPLE_ANSWER),
    ];
    messages.push(ChatMessage::new(
        "user",
        format!(
            "Sources:\n\n{}\n\nQuestion: {}",
            sources_block(case),
            case.question
        ),
    ));
    messages
}

fn one_shot_and_after(case: &Case) -> Vec<ChatMessage> {
    let mut messages = one_shot(case);
    if let Some(last) = messages.last_mut() {
        last.content.push_str("\n\n");
        last.content.push_str(AFTER_QUESTION);
    }
    messages
}

fn grounded_and_after(case: &Case) -> Vec<ChatMessage> {
    let mut messages = grounded_today(case);
    if let Some(last) = messages.last_mut() {
        last.content.push_str("\n\n");
        last.content.push_str(AFTER_QUESTION);
    }
    messages
}

/// The numbers inside `[n]` markers of `text`.
fn cited(text: &str) -> Vec<usize> {
    let mut numbers = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find(']') else { break };
        if let Ok(n) = rest[..close].trim().parse() {
            numbers.push(n);
        }
    }
    numbers
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let penalty: f32 = std::env::var("REPEAT_PENALTY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(grounded_provider::local::REPEAT_PENALTY);
    let options = LocalModelOptions {
        repeat_penalty: penalty,
        quantized: std::env::var("QUANTIZED").is_ok(),
        ..LocalModelOptions::new(grounded_core::default_cache_dir())
    };
    let started = Instant::now();
    let chat = LocalChat::load(&options).expect("model loads");
    println!("loaded in {:.2} s", started.elapsed().as_secs_f64());
    let only = std::env::var("VARIANT").ok();
    if let Ok(question) = std::env::var("QUESTION") {
        let request = ChatRequest {
            messages: vec![ChatMessage::new("user", question)],
            max_tokens: 120,
            temperature: 0.0,
            cite_sources: None,
        };
        let completion = chat.complete(&request).await.expect("completes");
        println!("{completion:?}");
        return;
    }

    if std::env::var("SKIP_CITE").is_err() {
        cite(&chat, only.as_deref(), penalty).await;
    }
    if std::env::var("SKIP_MEASURE").is_err() {
        measure(&chat).await;
    }
}

async fn cite(chat: &LocalChat, only: Option<&str>, penalty: f32) {
    let cases = cases(chat);
    let constrained = std::env::var("CONSTRAINED").is_ok();
    let variants: [Variant; 8] = [
        ("grounded today", grounded_today),
        (
            "grounded + instruction after the question",
            grounded_and_after,
        ),
        ("short system + instruction after", instruction_after),
        ("one-shot", one_shot),
        ("one-shot + instruction after", one_shot_and_after),
        ("according to", according_to),
        ("according to, one-shot", according_to_one_shot),
        ("question twice, plain headers", question_twice),
    ];
    for (name, make) in variants {
        if only.is_some_and(|only| !name.starts_with(only)) {
            continue;
        }
        println!("=== {name} (repeat penalty {penalty}, constrained citations {constrained})");
        let (mut valid, mut right) = (0, 0);
        let (mut markers, mut markers_right) = (0, 0);
        for case in &cases {
            let request = ChatRequest {
                messages: make(case),
                max_tokens: 160,
                temperature: 0.0,
                cite_sources: constrained
                    .then(|| case.sources.iter().map(|s| s.text.clone()).collect()),
            };
            let completion = chat.complete(&request).await.expect("completes");
            let numbers = cited(&completion.text);
            let is_valid = numbers.iter().any(|n| (1..=case.sources.len()).contains(n));
            let is_right = numbers.contains(&case.answer_in);
            valid += usize::from(is_valid);
            right += usize::from(is_right);
            markers += numbers.len();
            markers_right += numbers.iter().filter(|&&n| n == case.answer_in).count();
            println!(
                "--- {} (answer in [{}]; prompt {} tokens; cited {numbers:?}; {})\n{}",
                case.question,
                case.answer_in,
                completion.usage.prompt_tokens,
                completion.finish_reason.unwrap_or_default(),
                completion.text.trim()
            );
        }
        println!(
            "=== {name}: {valid}/6 cite a real source, {right}/6 the one with the answer; \
             {markers_right}/{markers} markers name the source with the answer\n"
        );
    }
}

/// Prompt processing and generation speed, on an 800-token prompt.
async fn measure(chat: &LocalChat) {
    let text = page_text("ch04-01-what-is-ownership");
    let mut end = 0;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if chat.count_tokens(&text[..i]) > 760 {
                break;
            }
            end = i;
        }
    }
    let messages = vec![ChatMessage::new(
        "user",
        format!(
            "{}\n\nRewrite the text above as a long, detailed tutorial.",
            &text[..end]
        ),
    )];
    let prompt_tokens = chat.prompt_ids(&messages).expect("ids").len();
    let run = |max_tokens| ChatRequest {
        messages: messages.clone(),
        max_tokens,
        temperature: 0.0,
        cite_sources: None,
    };

    for _ in 0..2 {
        let started = Instant::now();
        chat.complete(&run(1)).await.expect("one token");
        let prefill = started.elapsed().as_secs_f64();

        let started = Instant::now();
        let long = chat.complete(&run(100)).await.expect("100 tokens");
        let total = started.elapsed().as_secs_f64();
        let generated = long.usage.completion_tokens as f64;
        println!(
            "prompt {prompt_tokens} tokens in {prefill:.2} s ({:.0} tokens/s); \
             {generated} tokens generated in {:.2} s after it ({:.1} tokens/s); {:?}",
            prompt_tokens as f64 / prefill,
            total - prefill,
            (generated - 1.0) / (total - prefill),
            long.finish_reason
        );
    }
}
