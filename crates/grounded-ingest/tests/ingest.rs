//! Integration tests of grounded-ingest on real data: legacy encodings, the Rust
//! book as Markdown and as HTML. Data that is absent (a fresh clone has no
//! `shared/`, a toolchain may lack `rust-docs`, the model may not be fetched)
//! makes its test skip with a message.
//!
//! One test binary for the whole crate; each area is a module.

use std::path::{Path, PathBuf};

/// `shared/data/<name>` beside the project checkout, if it is there.
fn shared_data(name: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(name);
    if path.is_dir() {
        Some(path)
    } else {
        println!("skipping: {} not found", path.display());
        None
    }
}

/// The walk, decode and extract steps applied to one file.
fn decode_and_extract(
    path: &Path,
    kind: grounded_core::DocumentKind,
) -> Result<grounded_ingest::Extraction, grounded_ingest::IngestError> {
    let bytes = std::fs::read(path).unwrap();
    let decoded = grounded_ingest::decode_bytes(&bytes, kind)?;
    grounded_ingest::extract_document(kind, &decoded.text)
}

mod messy_encodings {
    use grounded_core::DocumentKind;
    use grounded_ingest::{Extraction, WalkOptions, decode_bytes, walk_paths};

    use super::*;

    /// Each file of `shared/data/messy`: the encodings it may be detected as, the
    /// one its folder names first, and a phrase of its text.
    ///
    /// The Greek file uses no byte on which ISO-8859-7 and windows-1253 differ,
    /// so both decode it to the same text and either answer is right; the test
    /// compares the whole text with the ISO-8859-7 decoding.
    const EXPECTED: &[(&str, &[&str], &str)] = &[
        (
            "EUC-KR/_ude_euc1.txt",
            &["EUC-KR"],
            "역사적 예수 연구자들은 복음서나",
        ),
        (
            "SHIFT_JIS/_ude_1.txt",
            &["Shift_JIS"],
            "羅生門の下で雨やみを待っていた",
        ),
        (
            "UTF-16LE/plane1-utf-16le.html",
            &["UTF-16LE"],
            "<BDO dir=\"rtl\">𐌓𐌀𐌔𐌍𐌀</BDO>",
        ),
        (
            "iso-8859-7-greek/_ude_1.txt",
            &["ISO-8859-7", "windows-1253"],
            "Ένας διαδικτυακός μας φίλος",
        ),
        (
            "utf-8/_mozilla_bug306272_text.html",
            &["UTF-8"],
            "Antti Näyhä &lt;Antti",
        ),
        (
            "utf-8-sig/_ude_4.txt",
            &["UTF-8"],
            "universalchardet プロジェクトの概要",
        ),
        (
            "windows-1251-russian/_ude_1.txt",
            &["windows-1251"],
            "В гимназии он не был в числе",
        ),
        (
            "windows-1252/_ude_1.txt",
            &["windows-1252"],
            "Die Deutsche Schule gehört zum",
        ),
    ];

    /// The file decoded by `encoding_rs` with the encoding its folder names.
    fn reference_text(bytes: &[u8], encoding: &str) -> String {
        let encoding = encoding_rs::Encoding::for_label(encoding.as_bytes()).unwrap();
        let (text, malformed) = encoding.decode_with_bom_removal(bytes);
        assert!(!malformed);
        text.into_owned()
    }

    #[test]
    fn every_messy_file_decodes_to_its_text() {
        let Some(root) = shared_data("messy") else {
            return;
        };
        let (files, errors) = walk_paths(std::slice::from_ref(&root), &WalkOptions::default());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            files.len(),
            EXPECTED.len(),
            "a messy file without an expectation"
        );

        for file in &files {
            let relative = file.path.strip_prefix(&root).unwrap().to_str().unwrap();
            let Some(&(_, encodings, phrase)) = EXPECTED.iter().find(|(p, ..)| *p == relative)
            else {
                panic!("no expectation for {relative}");
            };
            let bytes = std::fs::read(&file.path).unwrap();
            let decoded = decode_bytes(&bytes, file.kind)
                .unwrap_or_else(|e| panic!("{}", e.in_file(relative)));

            println!("{relative}: decoded as {}", decoded.encoding);
            assert!(
                encodings.contains(&decoded.encoding),
                "{relative}: {}",
                decoded.encoding
            );
            assert!(
                decoded.text.contains(phrase),
                "{relative}: {phrase:?} not found"
            );
            assert!(
                decoded.text == reference_text(&bytes, encodings[0]),
                "{relative}"
            );
        }
    }

    #[test]
    fn messy_html_extracts_to_text() {
        let Some(root) = shared_data("messy") else {
            return;
        };
        let cases = [
            (
                "UTF-16LE/plane1-utf-16le.html",
                "# Unicode Plane 1 Example Usage",
                "𐌓𐌀𐌔𐌍𐌀",
            ),
            (
                "utf-8/_mozilla_bug306272_text.html",
                "Antti Näyhä <Antti",
                "Näyhä",
            ),
        ];
        for (relative, start, phrase) in cases {
            let extraction = decode_and_extract(&root.join(relative), DocumentKind::Html);
            let Ok(Extraction::Content(document)) = extraction else {
                panic!("{relative}: {extraction:?}");
            };
            assert!(
                document.text.starts_with(start),
                "{relative}: {}",
                document.text
            );
            assert!(document.text.contains(phrase));
            assert!(
                !document.text.contains("font-family"),
                "{relative}: css leaked"
            );
        }
    }
}

mod rust_book {
    use std::str::FromStr;

    use grounded_core::DocumentKind;
    use grounded_embed::TokenCounter;
    use grounded_ingest::{
        ChunkConfig, ChunkDraft, ExtractedDocument, Extraction, WalkOptions, chunk_document,
        walk_paths,
    };
    use tokenizers::Tokenizer;

    use super::*;

    /// A tokenizer with one token per word or run of punctuation.
    pub(super) fn word_tokenizer() -> Tokenizer {
        Tokenizer::from_str(
            r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
            "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,
            "decoder":null,"model":{"type":"WordLevel","vocab":{"[UNK]":0},"unk_token":"[UNK]"}}"#,
        )
        .unwrap()
    }

    /// The counting tokenizer of the real embedding model, exactly as the
    /// pipeline uses it; the model files are found or fetched as `grounded`
    /// does, so this only skips where no source of them is reachable.
    fn model_tokenizer() -> Option<Tokenizer> {
        use grounded_embed::{Embedder, MiniLm, resolve_model_files};

        let cache_dir = grounded_core::default_cache_dir();
        let files = match resolve_model_files(None, &cache_dir) {
            Ok((files, _)) => files,
            Err(error) => {
                println!("skipping the model tokenizer: {error}");
                return None;
            }
        };
        let embedder = MiniLm::load(&files).expect("model files verified but not loadable");
        match embedder.token_counter() {
            TokenCounter::HuggingFace(tokenizer) => Some(tokenizer.clone()),
            other => panic!("MiniLM counts with {other:?}"),
        }
    }

    fn count(counter: TokenCounter<'_>, text: &str) -> usize {
        counter.try_count(text).unwrap()
    }

    /// Order, bounds, budget and coverage of one document's chunks.
    fn assert_invariants(
        name: &str,
        doc: &ExtractedDocument,
        chunks: &[ChunkDraft],
        counter: TokenCounter<'_>,
        config: &ChunkConfig,
    ) {
        let mut covered_to = 0;
        for (i, chunk) in chunks.iter().enumerate() {
            let range = chunk.byte_range.clone();
            assert_eq!(chunk.ordinal as usize, i, "{name}");
            assert_eq!(
                doc.text.get(range.clone()),
                Some(chunk.text.as_str()),
                "{name}"
            );
            let tokens = count(counter, &chunk.text);
            assert!(
                tokens <= config.max_tokens,
                "{name}: chunk {i} has {tokens} tokens"
            );
            assert_eq!(tokens, chunk.token_count as usize, "{name}: chunk {i}");
            if let Some(previous) = i.checked_sub(1).map(|p| &chunks[p]) {
                assert!(
                    range.start > previous.byte_range.start,
                    "{name}: chunk {i} order"
                );
            }
            let gap = &doc.text[covered_to.min(range.start)..range.start];
            assert!(
                gap.trim().is_empty(),
                "{name}: text lost before chunk {i}: {gap:?}"
            );
            covered_to = covered_to.max(range.end);

            let location = &chunk.location;
            assert!(location.line_start >= 1 && location.line_start <= location.line_end);
        }
        assert!(
            doc.text[covered_to..].trim().is_empty(),
            "{name}: text lost at the end"
        );
    }

    fn markdown_documents() -> Option<Vec<(String, ExtractedDocument)>> {
        let root = shared_data("rust-book-md")?.join("src");
        let (files, errors) = walk_paths(&[root], &WalkOptions::default());
        let unsupported_only = errors
            .iter()
            .all(|error| matches!(error, grounded_ingest::IngestError::UnsupportedFile { .. }));
        assert!(unsupported_only, "{errors:?}");
        assert!(files.len() > 100);

        let documents = files
            .iter()
            .filter(|file| file.kind == DocumentKind::Markdown)
            .map(|file| match decode_and_extract(&file.path, file.kind) {
                Ok(Extraction::Content(doc)) => (file.source_path.clone(), doc),
                other => panic!("{}: {other:?}", file.source_path),
            })
            .collect();
        Some(documents)
    }

    /// The chunking the pipeline uses by default: the model's limit of 254
    /// word-pieces (256 less the two special tokens), 32 of overlap.
    const MODEL_CHUNKING: ChunkConfig = ChunkConfig {
        max_tokens: 254,
        overlap_tokens: 32,
    };

    fn chunk_all(documents: &[(String, ExtractedDocument)], counter: TokenCounter<'_>) -> usize {
        let config = ChunkConfig {
            max_tokens: 200,
            overlap_tokens: 20,
        };
        chunk_all_with(documents, counter, &config)
    }

    fn chunk_all_with(
        documents: &[(String, ExtractedDocument)],
        counter: TokenCounter<'_>,
        config: &ChunkConfig,
    ) -> usize {
        let mut total = 0;
        for (name, doc) in documents {
            let chunks = chunk_document(doc, counter, config).unwrap();
            assert_invariants(name, doc, &chunks, counter, config);
            total += chunks.len();
        }
        total
    }

    #[test]
    fn markdown_book_chunks_keep_the_invariants() {
        let Some(documents) = markdown_documents() else {
            return;
        };
        let chunks = chunk_all(&documents, TokenCounter::HuggingFace(&word_tokenizer()));
        println!(
            "{} markdown files, {chunks} chunks with the word tokenizer",
            documents.len()
        );

        let tiktoken = TokenCounter::for_openai_model("text-embedding-3-small");
        let chunks = chunk_all_with(&documents, tiktoken, &MODEL_CHUNKING);
        println!("{chunks} chunks for text-embedding-3-small, none over 254 tiktoken tokens");

        if let Some(tokenizer) = model_tokenizer() {
            let counter = TokenCounter::HuggingFace(&tokenizer);
            let chunks = chunk_all_with(&documents, counter, &MODEL_CHUNKING);
            println!("{chunks} chunks with the model tokenizer, none over 254 word-pieces");
        }
    }

    #[test]
    fn markdown_book_sections_and_titles() {
        let Some(documents) = markdown_documents() else {
            return;
        };
        let (_, ownership) = documents
            .iter()
            .find(|(name, _)| name.ends_with("/ch04-01-what-is-ownership.md"))
            .unwrap();
        assert_eq!(ownership.title.as_deref(), Some("What Is Ownership?"));

        let config = ChunkConfig {
            max_tokens: 120,
            overlap_tokens: 0,
        };
        let words = word_tokenizer();
        let chunks = chunk_document(ownership, TokenCounter::HuggingFace(&words), &config).unwrap();
        let rules = chunks
            .iter()
            .find(|chunk| chunk.text.contains("Each value in Rust has an _owner_"))
            .unwrap();
        assert_eq!(
            rules.location.section,
            ["What Is Ownership?", "Ownership Rules"]
        );
        let line = ownership.text[..rules.byte_range.start].lines().count();
        assert!((line..=line + 1).contains(&(rules.location.line_start as usize)));
    }

    #[test]
    fn html_book_chunks_fit_the_model_and_cover_each_page() {
        let Some(book) = rust_book_html() else {
            return;
        };
        let Some(tokenizer) = model_tokenizer() else {
            return;
        };
        let (files, _) = walk_paths(&[book], &WalkOptions::default());
        let mut documents = Vec::new();
        for file in files.iter().filter(|file| file.kind == DocumentKind::Html) {
            if let Extraction::Content(doc) = decode_and_extract(&file.path, file.kind).unwrap() {
                documents.push((file.source_path.clone(), doc));
            }
        }
        let counter = TokenCounter::HuggingFace(&tokenizer);
        let chunks = chunk_all_with(&documents, counter, &MODEL_CHUNKING);
        println!(
            "{} html pages, {chunks} chunks, none over 254 word-pieces",
            documents.len()
        );
        assert!(documents.len() > 100 && chunks > 1000);
    }

    #[test]
    fn html_book_extracts_and_chunks() {
        let Some(book) = rust_book_html() else {
            return;
        };
        let (files, errors) = walk_paths(&[book], &WalkOptions::default());
        let unsupported_only = errors
            .iter()
            .all(|error| matches!(error, grounded_ingest::IngestError::UnsupportedFile { .. }));
        assert!(unsupported_only, "{errors:?}");

        let tokenizer = word_tokenizer();
        let counter = TokenCounter::HuggingFace(&tokenizer);
        let config = ChunkConfig {
            max_tokens: 200,
            overlap_tokens: 20,
        };
        let mut skipped = Vec::new();
        for file in files.iter().filter(|file| file.kind == DocumentKind::Html) {
            match decode_and_extract(&file.path, file.kind).unwrap() {
                Extraction::Skipped { reason } => skipped.push((file.source_path.clone(), reason)),
                Extraction::Content(doc) => {
                    let chunks = chunk_document(&doc, counter, &config).unwrap();
                    assert_invariants(&file.source_path, &doc, &chunks, counter, &config);
                    check_anchors(&file.source_path, &doc, &chunks);
                }
            }
        }
        assert!(
            skipped
                .iter()
                .any(|(path, _)| path.ends_with("book/print.html")),
            "{skipped:?}"
        );
    }

    /// Chunks of an mdBook page carry the anchor of a heading in force.
    fn check_anchors(name: &str, doc: &ExtractedDocument, chunks: &[ChunkDraft]) {
        for chunk in chunks {
            let Some(anchor) = &chunk.location.anchor else {
                continue;
            };
            let (offset, _) = doc.anchors.iter().find(|(_, id)| id == anchor).unwrap();
            assert!(
                *offset <= chunk.byte_range.start,
                "{name}: anchor after its chunk"
            );
            assert!(
                doc.text[*offset..].starts_with('#'),
                "{name}: anchor not at a heading"
            );
        }
    }

    fn rust_book_html() -> Option<PathBuf> {
        let output = std::process::Command::new("rustc")
            .args(["--print", "sysroot"])
            .output()
            .ok()?;
        let sysroot = String::from_utf8(output.stdout).ok()?;
        let book = Path::new(sysroot.trim()).join("share/doc/rust/html/book");
        if book.is_dir() {
            Some(book)
        } else {
            println!(
                "skipping: {} not found (no rust-docs component)",
                book.display()
            );
            None
        }
    }
}

mod odd_inputs {
    use grounded_core::DocumentKind;
    use grounded_ingest::{
        ChunkConfig, Extraction, chunk_document, decode_bytes, extract_document,
    };

    use grounded_embed::TokenCounter;

    use super::rust_book::word_tokenizer;

    const KINDS: [DocumentKind; 4] = [
        DocumentKind::Markdown,
        DocumentKind::Html,
        DocumentKind::Text,
        DocumentKind::Code,
    ];

    /// Runs decode, extract and chunk; any error is fine, a panic is not, and
    /// chunks must stay in the text and in budget. Returns whether it got as
    /// far as chunking.
    fn ingest(bytes: &[u8], kind: DocumentKind) -> bool {
        let config = ChunkConfig {
            max_tokens: 32,
            overlap_tokens: 4,
        };
        let Ok(decoded) = decode_bytes(bytes, kind) else {
            return false;
        };
        let Ok(Extraction::Content(doc)) = extract_document(kind, &decoded.text) else {
            return false;
        };
        let words = word_tokenizer();
        let chunks = chunk_document(&doc, TokenCounter::HuggingFace(&words), &config).unwrap();
        for chunk in &chunks {
            assert_eq!(
                doc.text.get(chunk.byte_range.clone()),
                Some(chunk.text.as_str())
            );
            assert!(chunk.token_count <= 32);
        }
        assert_eq!(chunks.is_empty(), doc.text.trim().is_empty());
        true
    }

    /// A deterministic pseudo-random sequence (a 64-bit LCG).
    fn random(seed: u64) -> impl FnMut() -> usize {
        let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize
        }
    }

    /// Arbitrary bytes, for the decoder.
    fn noise_bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut next = random(seed);
        (0..len).map(|_| (next() & 0xff) as u8).collect()
    }

    /// Text made of Markdown and HTML fragments in random order, for extraction
    /// and chunking.
    fn noise_text(seed: u64, pieces: usize) -> String {
        #[rustfmt::skip]
        const FRAGMENTS: &[&str] = &[
            "<p>", "</p>", "<pre>", "</pre>", "<code>", "</code>", "<h2 id=x>", "</h2>", "<h1>",
            "# ", "## ", "```", "~~~", "\n", "\n\n", "\r", "- ", "| ", "<li>", "<ul>", "</ul>",
            "<table><tr><td>", "</td><td>", "&amp;", "&lt;", "<br>", "<!--", "-->", "<script>",
            "<nav>", "<main>", "[link](x)", "word", "more words", "é", "日本語", " ", "\t", "\u{301}",
            "\u{200d}",
        ];
        let mut next = random(seed);
        (0..pieces)
            .map(|_| FRAGMENTS[next() % FRAGMENTS.len()])
            .collect()
    }

    #[test]
    fn random_bytes_never_panic() {
        for seed in 0..300 {
            let bytes = noise_bytes(seed, (seed as usize * 37) % 3000);
            for kind in KINDS {
                let _ = ingest(&bytes, kind);
            }
        }
    }

    #[test]
    fn random_markup_never_panics() {
        let mut chunked = 0;
        for seed in 0..300 {
            let text = noise_text(seed, (seed as usize * 13) % 800);
            for kind in KINDS {
                chunked += usize::from(ingest(text.as_bytes(), kind));
            }
        }
        assert!(
            chunked >= 1000,
            "only {chunked} of 1200 inputs reached chunking"
        );
    }

    #[test]
    fn huge_single_lines_and_whitespace_never_panic() {
        let long_line = "word, ".repeat(40_000);
        let long_html = format!("<p>{}</p>", "<b>bold</b> text ".repeat(10_000));
        let inputs: [&[u8]; 5] = [
            b"",
            b" \n\r\n\t  \x0c ",
            long_line.as_bytes(),
            long_html.as_bytes(),
            b"\xff\xfe\xfd\xfc invalid \xc3\x28 utf-8",
        ];
        for bytes in inputs {
            for kind in KINDS {
                let _ = ingest(bytes, kind);
            }
        }
    }
}

/// The pipeline against a vector index that becomes unreachable halfway: the
/// real model, a real SQLite store and real Qdrant Edge shards, behind a
/// wrapper that fails every upsert after the first few, as a lost index
/// server would.
mod index_failure {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use grounded_core::{ChunkId, DocumentId, DocumentState};
    use grounded_embed::{MiniLm, resolve_model_files};
    use grounded_index::{
        CollectionSpec, EdgeIndex, IndexError, Point, Query, ScoredPoint, VectorIndex,
    };
    use grounded_ingest::pipeline::NoProgress;
    use grounded_ingest::{ChunkConfig, IngestOptions, Ingestor, WalkOptions};
    use grounded_store::{MetadataStore, SqliteStore};

    /// Delegates to a real index until `upserts_left` runs out.
    struct FailingIndex<'a> {
        inner: &'a EdgeIndex,
        upserts_left: AtomicUsize,
    }

    impl FailingIndex<'_> {
        fn check(&self) -> Result<(), IndexError> {
            let left = self.upserts_left.load(Ordering::SeqCst);
            if left == 0 {
                return Err(IndexError::Backend {
                    path: "qdrant".into(),
                    message: "connection refused (the index went away)".into(),
                });
            }
            self.upserts_left.store(left - 1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[async_trait]
    impl VectorIndex for FailingIndex<'_> {
        async fn ensure_collection(
            &self,
            name: &str,
            spec: CollectionSpec,
        ) -> Result<(), IndexError> {
            self.inner.ensure_collection(name, spec).await
        }
        async fn list_collections(&self) -> Result<Vec<String>, IndexError> {
            self.inner.list_collections().await
        }
        async fn delete_collection(&self, name: &str) -> Result<(), IndexError> {
            self.inner.delete_collection(name).await
        }
        async fn upsert(&self, collection: &str, points: Vec<Point>) -> Result<(), IndexError> {
            self.check()?;
            self.inner.upsert(collection, points).await
        }
        async fn delete_points(&self, collection: &str, ids: &[ChunkId]) -> Result<(), IndexError> {
            self.inner.delete_points(collection, ids).await
        }
        async fn delete_document(
            &self,
            collection: &str,
            document: DocumentId,
        ) -> Result<(), IndexError> {
            self.inner.delete_document(collection, document).await
        }
        async fn document_points(
            &self,
            collection: &str,
            document: DocumentId,
        ) -> Result<Vec<ChunkId>, IndexError> {
            self.inner.document_points(collection, document).await
        }
        async fn search(
            &self,
            collection: &str,
            query: &Query,
        ) -> Result<Vec<ScoredPoint>, IndexError> {
            self.inner.search(collection, query).await
        }
        async fn count(&self, collection: &str) -> Result<usize, IndexError> {
            self.inner.count(collection).await
        }
        async fn release(&self, collection: &str) -> Result<(), IndexError> {
            self.inner.release(collection).await
        }
    }

    fn options() -> IngestOptions {
        IngestOptions {
            collection: "notes".into(),
            chunking: ChunkConfig {
                max_tokens: 254,
                overlap_tokens: 0,
            },
            walk: WalkOptions::default(),
            prune: false,
            batch_chunks: 1,
            tags: Vec::new(),
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_lost_index_leaves_old_chunks_visible_and_the_next_run_completes() {
        let cache_dir = grounded_core::default_cache_dir();
        let files = match resolve_model_files(None, &cache_dir) {
            Ok((files, _)) => files,
            Err(error) => {
                println!("skipping: no model files: {error}");
                return;
            }
        };
        let embedder = MiniLm::load(&files).unwrap();
        let root = tempfile::tempdir().unwrap();
        let corpus = root.path().join("notes");
        std::fs::create_dir(&corpus).unwrap();
        for (name, text) in [
            ("a.md", "# Otters\n\nOtters hold hands while they sleep."),
            ("b.md", "# Herons\n\nHerons stand still in shallow water."),
            ("c.md", "# Moles\n\nMoles dig tunnels under lawns."),
        ] {
            std::fs::write(corpus.join(name), text).unwrap();
        }
        let store = SqliteStore::open(&root.path().join("grounded.db"))
            .await
            .unwrap();
        let edge = EdgeIndex::open(&root.path().join("index")).unwrap();
        let roots = vec![corpus.clone()];

        let healthy = Ingestor::new(&embedder, &store, &edge);
        healthy.run(&roots, &options(), &NoProgress).await.unwrap();
        let before = store.collection_counts("notes").await.unwrap();
        assert_eq!(before.ready_documents, 3);

        // Every file changes; the index takes one document's points, then fails.
        for name in ["a.md", "b.md", "c.md"] {
            let path = corpus.join(name);
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, format!("{text}\n\nEdited once.\n")).unwrap();
        }
        let failing = FailingIndex {
            inner: &edge,
            upserts_left: AtomicUsize::new(1),
        };
        let error = Ingestor::new(&embedder, &store, &failing)
            .run(&roots, &options(), &NoProgress)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("the index went away"), "{error}");

        // The interrupted document still shows its old, committed chunks, and
        // every point the index holds is either committed or invisible.
        let documents = store.list_documents("notes").await.unwrap();
        let interrupted: Vec<_> = documents
            .iter()
            .filter(|d| d.state == DocumentState::Indexing)
            .collect();
        assert_eq!(interrupted.len(), 1, "{documents:?}");
        let old = store.document_chunks(interrupted[0].id).await.unwrap();
        assert!(!old.is_empty() && !old[0].text.contains("Edited once"));
        let query = Query::dense(vec![0.1; 384], 100);
        let hits = edge.search("notes", &query).await.unwrap();
        let ids: Vec<ChunkId> = hits.iter().map(|hit| hit.id).collect();
        let visible = store.visible_chunks(&ids).await.unwrap();
        for chunk in &old {
            assert!(visible.contains(&chunk.id), "an old chunk vanished");
        }

        let report = healthy.run(&roots, &options(), &NoProgress).await.unwrap();
        assert_eq!(report.documents_changed, 2, "{report:?}");
        assert_eq!(report.documents_unchanged, 1);
        let after = store.collection_counts("notes").await.unwrap();
        assert_eq!((after.ready_documents, after.indexing_documents), (3, 0));
        assert_eq!(edge.count("notes").await.unwrap() as u64, after.chunks);
        for document in store.list_documents("notes").await.unwrap() {
            let chunks = store.document_chunks(document.id).await.unwrap();
            assert!(chunks.iter().all(|c| c.text.contains("Edited once")));
        }
    }
}
