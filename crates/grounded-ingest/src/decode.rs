//! Turning a file's bytes into text, whatever its encoding, or saying clearly
//! that it cannot be done.
//!
//! The order of evidence: a byte order mark; the pattern of NUL bytes that
//! ASCII-heavy UTF-16 leaves; valid UTF-8; for HTML, the encoding the page
//! declares in a `<meta>` tag; last, a statistical guess by `chardetng`.
//! Decoding itself is `encoding_rs`, never with replacement characters: a
//! malformed byte sequence, an unconvincing guess or text that looks like
//! mojibake is an [`IngestError::Undecodable`], because storing garbled text
//! silently would poison search results.
//!
//! Known shortcoming: UTF-16 without a byte order mark is recognised only by
//! its NUL bytes, so UTF-16 text made mostly of non-Latin characters (which
//! has few NULs) is not recognised and is reported as binary or undecodable
//! rather than decoded. Recognising it would need a statistical model of
//! UTF-16 code units, which `chardetng` does not have.

use chardetng::EncodingDetector;
use encoding_rs::{Encoding, UTF_8, UTF_16BE, UTF_16LE};
use grounded_core::DocumentKind;

use crate::IngestError;

/// Text decoded from a file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedText {
    /// The text, without any byte order mark.
    pub text: String,
    /// The encoding it was decoded from, by its WHATWG name (`UTF-8`,
    /// `Shift_JIS`, `windows-1251`, …).
    pub encoding: &'static str,
}

/// How many bytes the UTF-16 and control-character checks look at.
const SAMPLE_BYTES: usize = 64 * 1024;
/// How far into an HTML file to look for a `<meta charset>` declaration.
const META_PRESCAN_BYTES: usize = 4096;

/// Decodes `bytes` to text; `kind` enables the HTML `<meta charset>` lookup.
///
/// # Errors
/// [`IngestError::Binary`] when the bytes hold NULs or control characters that
/// no text encoding explains, [`IngestError::Undecodable`] when the bytes are
/// malformed in the encoding that fits them best, when the encoding guess is
/// not convincing, or when the decoded text looks like mojibake.
pub fn decode_bytes(bytes: &[u8], kind: DocumentKind) -> Result<DecodedText, IngestError> {
    let decoded = decode_any(bytes, kind)?;
    check_plausible(&decoded)?;
    Ok(decoded)
}

fn decode_any(bytes: &[u8], kind: DocumentKind) -> Result<DecodedText, IngestError> {
    if let Some((encoding, bom_length)) = Encoding::for_bom(bytes) {
        return decode_strict(encoding, &bytes[bom_length..]);
    }
    if let Some(encoding) = sniff_utf16(bytes) {
        return decode_strict(encoding, bytes);
    }
    if let Some(offset) = first_nul(bytes) {
        return Err(IngestError::Binary {
            reason: format!("NUL byte at offset {offset}, and the bytes are not UTF-16"),
        });
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok(DecodedText {
            text: text.to_owned(),
            encoding: UTF_8.name(),
        });
    }
    if kind == DocumentKind::Html {
        let declared = declared_html_encoding(bytes);
        if let Some(decoded) = declared.and_then(|encoding| decode_strict(encoding, bytes).ok()) {
            return Ok(decoded);
        }
    }
    decode_guessed(bytes)
}

/// Decodes with `encoding`, failing on any malformed sequence.
fn decode_strict(encoding: &'static Encoding, bytes: &[u8]) -> Result<DecodedText, IngestError> {
    match encoding.decode_without_bom_handling_and_without_replacement(bytes) {
        Some(text) => Ok(DecodedText {
            text: text.into_owned(),
            encoding: encoding.name(),
        }),
        None => Err(IngestError::Undecodable {
            encoding: encoding.name(),
            reason: "malformed byte sequence".into(),
        }),
    }
}

fn decode_guessed(bytes: &[u8]) -> Result<DecodedText, IngestError> {
    let mut detector = EncodingDetector::new();
    detector.feed(bytes, true);
    let (encoding, convincing) = detector.guess_assess(None, false);

    if !convincing {
        return Err(IngestError::Undecodable {
            encoding: encoding.name(),
            reason: "not valid UTF-8 and no legacy encoding fits clearly".into(),
        });
    }
    decode_strict(encoding, bytes)
}

fn first_nul(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == 0)
}

/// Recognises BOM-less UTF-16 by where its NUL bytes sit: ASCII characters in
/// UTF-16LE have a zero high byte at every odd offset, in UTF-16BE at every even
/// offset. Text with few ASCII characters leaves too few NULs to tell.
fn sniff_utf16(bytes: &[u8]) -> Option<&'static Encoding> {
    let sample = &bytes[..bytes.len().min(SAMPLE_BYTES)];
    let units = sample.len() / 2;
    if units < 2 {
        return None;
    }
    let (mut even_nuls, mut odd_nuls) = (0usize, 0usize);
    for pair in sample.chunks_exact(2) {
        even_nuls += usize::from(pair[0] == 0);
        odd_nuls += usize::from(pair[1] == 0);
    }

    // At least 30% ASCII-range code units, and far fewer NULs in the other byte
    // of the pair: there they come only from characters like U+4E00 or
    // surrogates like U+D800. Binary data that passes this test decodes to
    // control characters, which the plausibility check rejects.
    let dominant = |nuls: usize| nuls * 10 >= units * 3;
    let rare = |nuls: usize, other: usize| nuls * 5 <= other;
    if dominant(odd_nuls) && rare(even_nuls, odd_nuls) {
        Some(UTF_16LE)
    } else if dominant(even_nuls) && rare(odd_nuls, even_nuls) {
        Some(UTF_16BE)
    } else {
        None
    }
}

/// The encoding an HTML page declares in its first bytes, by
/// `<meta charset="…">` or `<meta http-equiv="Content-Type" content="…; charset=…">`.
///
/// A declared UTF-16 is ignored, as browsers do: bytes that reach this point
/// have no UTF-16 pattern, so the declaration is wrong.
fn declared_html_encoding(bytes: &[u8]) -> Option<&'static Encoding> {
    let head = &bytes[..bytes.len().min(META_PRESCAN_BYTES)];
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();

    let encoding = head
        .split("<meta")
        .skip(1)
        .filter_map(|tag| charset_label(tag.split('>').next().unwrap_or_default()))
        .find_map(|label| Encoding::for_label(label.as_bytes()))?;
    let usable = encoding != UTF_16LE && encoding != UTF_16BE && encoding.is_ascii_compatible();
    usable.then_some(encoding)
}

/// The value after `charset=` in the attributes of one `<meta>` tag.
fn charset_label(attributes: &str) -> Option<&str> {
    let (_, rest) = attributes.split_once("charset")?;
    let rest = rest.trim_start().strip_prefix('=')?.trim_start();
    let rest = rest.trim_start_matches(['"', '\'']);
    let end = rest
        .find(|c: char| c == '"' || c == '\'' || c == ';' || c == '/' || c.is_whitespace())
        .unwrap_or(rest.len());
    let label = &rest[..end];
    (!label.is_empty()).then_some(label)
}

/// Rejects decoded text that is not plausibly what the author wrote.
fn check_plausible(decoded: &DecodedText) -> Result<(), IngestError> {
    let sample = sample_chars(&decoded.text);
    if let Some(reason) = binary_reason(sample) {
        return Err(IngestError::Binary { reason });
    }

    let single_byte =
        Encoding::for_label(decoded.encoding.as_bytes()).is_some_and(Encoding::is_single_byte);
    let mojibake = mojibake_reason(sample)
        .or_else(|| single_byte.then(|| symbol_run_reason(sample)).flatten());
    match mojibake {
        Some(reason) => Err(IngestError::Undecodable {
            encoding: decoded.encoding,
            reason,
        }),
        None => Ok(()),
    }
}

/// The first [`SAMPLE_BYTES`] or so of `text`, cut at a character boundary.
fn sample_chars(text: &str) -> &str {
    let mut end = text.len().min(SAMPLE_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Text has almost no control characters besides tab, line breaks, form feed
/// and escape; the C1 controls appear only when a legacy encoding was
/// misjudged.
fn binary_reason(sample: &str) -> Option<String> {
    if sample.contains('\0') {
        return Some("the text holds NUL characters".into());
    }
    let total = sample.chars().count();
    let controls = sample.chars().filter(|&c| is_unusual_control(c)).count();
    let too_many = controls > 0 && controls * 100 > total;
    too_many.then(|| format!("{controls} control characters in the first {total} characters"))
}

fn is_unusual_control(c: char) -> bool {
    let c0 = c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0c' | '\x1b');
    let c1 = ('\u{80}'..='\u{9f}').contains(&c);
    c0 || c1
}

/// Recognises UTF-8 that was once decoded as Latin-1 or windows-1252 and
/// encoded again: every non-ASCII character then shows as a pair such as `Ã©`.
fn mojibake_reason(sample: &str) -> Option<String> {
    let non_ascii = sample.chars().filter(|c| !c.is_ascii()).count();
    let mut pairs = 0usize;
    let mut chars = sample.chars().peekable();
    while let Some(c) = chars.next() {
        let lead = ('\u{c2}'..='\u{f4}').contains(&c);
        if lead
            && chars
                .peek()
                .is_some_and(|&next| is_mojibake_continuation(next))
        {
            pairs += 1;
            chars.next();
        }
    }

    let mostly_pairs = pairs >= 3 && pairs * 2 * 10 >= non_ascii * 6;
    mostly_pairs.then(|| {
        format!("{pairs} character pairs like \"Ã©\": UTF-8 that was decoded as Latin-1 once")
    })
}

/// The characters that UTF-8 continuation bytes 0x80-0xBF become in Latin-1 or
/// windows-1252.
fn is_mojibake_continuation(c: char) -> bool {
    const WINDOWS_1252_HIGH: &str = "€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ";
    ('\u{80}'..='\u{bf}').contains(&c) || WINDOWS_1252_HIGH.contains(c)
}

/// Recognises multi-byte text (Shift_JIS, EUC-KR, GBK, …) decoded with a
/// single-byte encoding: its bytes turn into symbols and punctuation run
/// together (`‚М•й`, `¿ª»ç`), where real text in an alphabetic script has
/// letters. Measured on real samples: under 5% of the non-ASCII characters in
/// correctly decoded text, 20-50% in such mojibake.
fn symbol_run_reason(sample: &str) -> Option<String> {
    let chars: Vec<char> = sample.chars().collect();
    let is_high = |c: &char| !c.is_ascii() && !c.is_whitespace();
    let non_ascii = chars.iter().filter(|c| !c.is_ascii()).count();

    let symbols_in_runs = (0..chars.len())
        .filter(|&i| is_high(&chars[i]) && !chars[i].is_alphabetic())
        .filter(|&i| {
            let before = i.checked_sub(1).is_some_and(|j| is_high(&chars[j]));
            before || chars.get(i + 1).is_some_and(is_high)
        })
        .count();

    let suspicious = non_ascii >= 16 && symbols_in_runs * 100 > non_ascii * 12;
    suspicious.then(|| {
        format!(
            "{symbols_in_runs} of {non_ascii} non-ASCII characters are symbols run together, \
             typical of text decoded with the wrong encoding"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Result<DecodedText, IngestError> {
        decode_bytes(bytes, DocumentKind::Text)
    }

    fn utf16(text: &str, little_endian: bool) -> Vec<u8> {
        let units = text.encode_utf16();
        if little_endian {
            units.flat_map(u16::to_le_bytes).collect()
        } else {
            units.flat_map(u16::to_be_bytes).collect()
        }
    }

    #[test]
    fn empty_input_is_empty_utf8() {
        let decoded = decode(b"").unwrap();
        assert_eq!((decoded.text.as_str(), decoded.encoding), ("", "UTF-8"));
    }

    #[test]
    fn boms_are_honoured_and_stripped() {
        let decoded = decode("\u{feff}héllo".as_bytes()).unwrap();
        assert_eq!(
            (decoded.text.as_str(), decoded.encoding),
            ("héllo", "UTF-8")
        );

        let mut le = vec![0xff, 0xfe];
        le.extend(utf16("日本語 text", true));
        let decoded = decode(&le).unwrap();
        assert_eq!(
            (decoded.text.as_str(), decoded.encoding),
            ("日本語 text", "UTF-16LE")
        );

        let mut be = vec![0xfe, 0xff];
        be.extend(utf16("Ελληνικά", false));
        let decoded = decode(&be).unwrap();
        assert_eq!(
            (decoded.text.as_str(), decoded.encoding),
            ("Ελληνικά", "UTF-16BE")
        );
    }

    #[test]
    fn utf16_without_bom_is_recognised_by_its_nul_bytes() {
        let text = "Plain ASCII-heavy text, with 𐌓𐌀𐌔𐌍𐌀 from plane 1.\n";
        let decoded = decode(&utf16(text, true)).unwrap();
        assert_eq!(
            (decoded.text.as_str(), decoded.encoding),
            (text, "UTF-16LE")
        );

        let decoded = decode(&utf16(text, false)).unwrap();
        assert_eq!(
            (decoded.text.as_str(), decoded.encoding),
            (text, "UTF-16BE")
        );
    }

    #[test]
    fn nul_bytes_that_are_not_utf16_are_binary() {
        let png_like = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x01\0\0\0\x01\0\x08\x06\0\0\0";
        assert!(matches!(decode(png_like), Err(IngestError::Binary { .. })));

        let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
        elf.extend(std::iter::repeat_n(0u8, 64));
        assert!(matches!(decode(&elf), Err(IngestError::Binary { .. })));
    }

    #[test]
    fn control_characters_without_nuls_are_binary() {
        let bytes: Vec<u8> = (1u8..32).cycle().take(400).collect();
        assert!(matches!(decode(&bytes), Err(IngestError::Binary { .. })));
    }

    #[test]
    fn legacy_encodings_are_guessed() {
        let text = "Съешь же ещё этих мягких французских булок, да выпей чаю. ".repeat(4);
        let (bytes, _, _) = encoding_rs::WINDOWS_1251.encode(&text);
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.encoding, "windows-1251");
        assert!(decoded.text.starts_with("Съешь же ещё"));
    }

    #[test]
    fn html_meta_charset_beats_the_guess() {
        let page = "<html><head><meta http-equiv=\"Content-Type\" \
                    content=\"text/html; charset=ISO-8859-7\"></head><body>Ένας φίλος</body>";
        let (bytes, _, _) = encoding_rs::ISO_8859_7.encode(page);
        let decoded = decode_bytes(&bytes, DocumentKind::Html).unwrap();
        assert_eq!(decoded.encoding, "ISO-8859-7");
        assert!(decoded.text.contains("Ένας φίλος"));

        assert_eq!(charset_label(" charset=\"koi8-r\""), Some("koi8-r"));
        assert_eq!(
            charset_label(" content='text/html;charset=euc-kr'"),
            Some("euc-kr")
        );
        assert_eq!(charset_label(" name=\"viewport\""), None);
    }

    #[test]
    fn malformed_or_mixed_legacy_text_is_undecodable() {
        let (mut shift_jis, _, _) = encoding_rs::SHIFT_JIS
            .encode("或日の暮方の事である。一人の下人が、羅生門の下で雨やみを待っていた。");
        let mut truncated = shift_jis.to_mut().clone();
        truncated.push(0x82);
        let error = decode(&truncated).unwrap_err();
        assert!(matches!(error, IngestError::Undecodable { .. }), "{error}");

        let mut mixed = "Été à la plage, café crème brûlée, déjà vu. "
            .as_bytes()
            .to_vec();
        mixed.extend(encoding_rs::WINDOWS_1252.encode("Grüße aus Köln").0.iter());
        let error = decode(&mixed).unwrap_err();
        assert!(matches!(error, IngestError::Undecodable { .. }), "{error}");
    }

    #[test]
    fn multibyte_text_read_as_single_byte_is_mojibake() {
        let korean = "역사적 예수 연구자들은 복음서나 사도들의 서신서 속의 교리적 예수가 아닌";
        let (bytes, _, _) = encoding_rs::EUC_KR.encode(korean);
        let (as_latin, _, _) = encoding_rs::WINDOWS_1252.decode(&bytes);
        assert!(symbol_run_reason(&as_latin).is_some(), "{as_latin}");

        let real = [
            "В гимназии он не был в числе первых учеников — «исключение составляли математика»",
            "Die Deutsche Schule gehört zum Netzwerk der mehr als 140 Auslandsschulen „Grüße“",
            "Ένας διαδικτυακός μας φίλος, τον οποίο θα έχουμε υποδείξει εκ των προτέρων",
            "C’est l’été à Paris: « déjà vu », disait-il, l’œil sur l’église… ",
        ];
        for text in real {
            assert_eq!(symbol_run_reason(text), None, "{text}");
        }
    }

    #[test]
    fn double_encoded_utf8_is_mojibake() {
        let text = "Ã‰tÃ© Ã  la plage, cafÃ© et crÃ¨me brÃ»lÃ©e.";
        let error = decode(text.as_bytes()).unwrap_err();
        assert!(matches!(error, IngestError::Undecodable { .. }), "{error}");

        // Real accented text has no such pairs.
        let fine = "Été à la plage, café et crème brûlée. Ça va, Ångström?";
        assert_eq!(decode(fine.as_bytes()).unwrap().text, fine);
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let inputs: [&[u8]; 7] = [
            b"\xff",
            b"\xfe\xff\x00",
            b"\xff\xfe\x00\xd8",
            b"\x00",
            b"   \n\t ",
            b"\xef\xbb\xbf",
            &b"a".repeat(200_000),
        ];
        for bytes in inputs {
            for kind in [DocumentKind::Text, DocumentKind::Html] {
                let _ = decode_bytes(bytes, kind);
            }
        }
    }
}
