//! Byte-level BPE tokenizer built from a GGUF file's `tokenizer.ggml.*` metadata (the gpt2 /
//! Qwen2 flavour: `tokenizer.ggml.model = "gpt2"`, `tokenizer.ggml.pre = "qwen2"`).
//!
//! Why hand-written rather than the `tokenizers` crate: the crate version available here is a
//! release candidate split into many sub-crates, and its dependency tree costs minutes of build
//! time on the 2-core CI machine for what is ~200 lines: a byte<->unicode table, a
//! pre-tokenizer regex and rank-ordered merges. FALSIFY-QW3-TOKENIZER-002 compares our ids
//! with llama.cpp's on the same file, so a divergence from the reference is caught.

use std::collections::HashMap;

use fancy_regex::Regex;

/// Qwen2's pre-tokenizer pattern, as llama.cpp writes it for `pre = "qwen2"`: contractions,
/// letter runs with one optional leading non-letter, single digits, punctuation runs, newline
/// runs, and whitespace that is not followed by a non-space.
const QWEN2_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF `tokenizer.ggml.token_type` values that mark special (control) tokens.
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer model `{0}` is not supported (only `gpt2` byte-level BPE)")]
    UnsupportedModel(String),
    #[error("pre-tokenizer `{0}` is not supported (supported: qwen2, default)")]
    UnsupportedPre(String),
    #[error(
        "tokenizer.ggml.merges entry {index} (`{merge}`) is not two tokens separated by one space"
    )]
    BadMerge { index: usize, merge: String },
    #[error("tokenizer.ggml.tokens is empty")]
    EmptyVocab,
    #[error("{key} = {id} is outside the vocabulary of {vocab} tokens")]
    IdOutOfRange {
        key: &'static str,
        id: u32,
        vocab: usize,
    },
    #[error("token id {id} is outside the vocabulary of {vocab} tokens")]
    UnknownId { id: u32, vocab: usize },
    #[error("pre-tokenizer regex failed: {0}")]
    Regex(String),
}

/// What the tokenizer needs from the GGUF metadata.
#[derive(Clone, Debug, Default)]
pub struct TokenizerSpec {
    /// `tokenizer.ggml.model`
    pub model: String,
    /// `tokenizer.ggml.pre` (empty when absent)
    pub pre: String,
    /// `tokenizer.ggml.tokens`
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type` (empty when absent)
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.merges`: "left right"
    pub merges: Vec<String>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
}

/// A byte-level BPE tokenizer.
pub struct Tokenizer {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
    ranks: HashMap<(String, String), usize>,
    /// Control/user-defined tokens, longest first (matched before BPE when asked to).
    specials: Vec<(String, u32)>,
    pre: Regex,
    byte_to_char: [char; 256],
    char_to_byte: HashMap<char, u8>,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
}

impl Tokenizer {
    pub fn from_spec(spec: TokenizerSpec) -> Result<Tokenizer, TokenizerError> {
        if spec.model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(spec.model));
        }
        // llama.cpp treats an absent or unknown `pre` as "default" (GPT-2's pattern). We only
        // ship the Qwen2 pattern, and the default one for files that do not name one.
        let pattern = match spec.pre.as_str() {
            "qwen2" => QWEN2_PATTERN,
            "" | "default" | "gpt2" => {
                r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
            }
            other => return Err(TokenizerError::UnsupportedPre(other.to_string())),
        };
        if spec.tokens.is_empty() {
            return Err(TokenizerError::EmptyVocab);
        }
        let vocab = spec.tokens.len();
        for (key, id) in [
            ("tokenizer.ggml.bos_token_id", spec.bos_id),
            ("tokenizer.ggml.eos_token_id", spec.eos_id),
        ] {
            if let Some(id) = id {
                if id as usize >= vocab {
                    return Err(TokenizerError::IdOutOfRange { key, id, vocab });
                }
            }
        }
        let mut ranks = HashMap::with_capacity(spec.merges.len());
        for (i, m) in spec.merges.iter().enumerate() {
            let mut parts = m.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => {
                    ranks.entry((a.to_string(), b.to_string())).or_insert(i);
                }
                _ => {
                    return Err(TokenizerError::BadMerge {
                        index: i,
                        merge: m.clone(),
                    });
                }
            }
        }
        let mut ids = HashMap::with_capacity(vocab);
        for (i, t) in spec.tokens.iter().enumerate() {
            ids.entry(t.clone()).or_insert(i as u32);
        }
        let mut specials: Vec<(String, u32)> = spec
            .token_types
            .iter()
            .enumerate()
            .filter(|(_, &t)| t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED)
            .filter_map(|(i, _)| spec.tokens.get(i).map(|s| (s.clone(), i as u32)))
            .filter(|(s, _)| !s.is_empty())
            .collect();
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let byte_to_char = bytes_to_unicode();
        let char_to_byte = byte_to_char
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        let pre = Regex::new(pattern).map_err(|e| TokenizerError::Regex(e.to_string()))?;
        Ok(Tokenizer {
            tokens: spec.tokens,
            ids,
            ranks,
            specials,
            pre,
            byte_to_char,
            char_to_byte,
            bos_id: spec.bos_id,
            eos_id: spec.eos_id,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// The token's text as stored in the vocabulary (byte-level form).
    pub fn token_str(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(|s| s.as_str())
    }

    /// Encodes `text`. With `parse_special`, control tokens written literally in the text (e.g.
    /// `<|im_start|>`) become their ids; without it they are ordinary text, as with llama.cpp's
    /// `tokenize(..., special=False)`.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>, TokenizerError> {
        let mut out = Vec::new();
        if !parse_special || self.specials.is_empty() {
            self.encode_plain(text, &mut out)?;
            return Ok(out);
        }
        let mut rest = text;
        'outer: while !rest.is_empty() {
            // Find the earliest special token (longest at a given offset).
            let mut best: Option<(usize, &str, u32)> = None;
            for (s, id) in &self.specials {
                if let Some(at) = rest.find(s.as_str()) {
                    if best.is_none_or(|(b, bs, _)| at < b || (at == b && s.len() > bs.len())) {
                        best = Some((at, s.as_str(), *id));
                    }
                }
            }
            match best {
                Some((at, s, id)) => {
                    self.encode_plain(&rest[..at], &mut out)?;
                    out.push(id);
                    rest = &rest[at + s.len()..];
                }
                None => {
                    self.encode_plain(rest, &mut out)?;
                    break 'outer;
                }
            }
        }
        Ok(out)
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        for piece in self.pre.find_iter(text) {
            let piece = piece.map_err(|e| TokenizerError::Regex(e.to_string()))?;
            let mapped: String = piece
                .as_str()
                .bytes()
                .map(|b| self.byte_to_char[b as usize])
                .collect();
            self.bpe(&mapped, out);
        }
        Ok(())
    }

    /// Applies the merges to one pre-tokenized, byte-mapped word: repeatedly merge the adjacent
    /// pair with the lowest rank (leftmost first among equals), as GPT-2's BPE does.
    fn bpe(&self, word: &str, out: &mut Vec<u32>) {
        if let Some(&id) = self.ids.get(word) {
            if self.ranks.is_empty() || word.chars().count() == 1 {
                out.push(id);
                return;
            }
        }
        let mut symbols: Vec<String> = word.chars().map(|c| c.to_string()).collect();
        loop {
            let mut best: Option<(usize, usize)> = None; // (rank, index)
            for i in 0..symbols.len().saturating_sub(1) {
                if let Some(&r) = self
                    .ranks
                    .get(&(symbols[i].clone(), symbols[i + 1].clone()))
                {
                    if best.is_none_or(|(br, _)| r < br) {
                        best = Some((r, i));
                    }
                }
            }
            let Some((_, i)) = best else { break };
            let merged = format!("{}{}", symbols[i], symbols[i + 1]);
            symbols[i] = merged;
            symbols.remove(i + 1);
        }
        for s in symbols {
            match self.ids.get(&s) {
                Some(&id) => out.push(id),
                // A symbol without a vocabulary entry: fall back to its single characters
                // (every byte has one in a byte-level vocabulary).
                None => {
                    for c in s.chars() {
                        if let Some(&id) = self.ids.get(c.to_string().as_str()) {
                            out.push(id);
                        }
                    }
                }
            }
        }
    }

    /// The raw bytes of a token (the byte-level form mapped back; special tokens as their
    /// text).
    pub fn token_bytes(&self, id: u32) -> Result<Vec<u8>, TokenizerError> {
        let s = self
            .tokens
            .get(id as usize)
            .ok_or(TokenizerError::UnknownId {
                id,
                vocab: self.tokens.len(),
            })?;
        if self.specials.iter().any(|(_, sid)| *sid == id) {
            return Ok(s.as_bytes().to_vec());
        }
        let mut out = Vec::with_capacity(s.len());
        for c in s.chars() {
            match self.char_to_byte.get(&c) {
                Some(&b) => out.push(b),
                None => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        Ok(out)
    }

    /// Decodes ids to text (invalid UTF-8 replaced by U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend(self.token_bytes(id)?);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// Turns a stream of token bytes into text pieces, holding back an incomplete UTF-8 sequence
/// until its last byte arrives (a multi-byte character is often split over tokens).
#[derive(Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) => match e.error_len() {
                // Invalid in the middle: emit it lossily, it will never become valid.
                Some(_) => self.pending.len(),
                None => e.valid_up_to(),
            },
        };
        let text = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
        self.pending.drain(..valid);
        text
    }

    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

/// GPT-2's reversible byte -> printable-unicode table: printable Latin-1 bytes map to
/// themselves, the rest to U+0100 onwards in byte order.
pub fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        let printable =
            (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
        let c = if printable {
            b
        } else {
            let c = next;
            next += 1;
            c
        };
        table[b as usize] = char::from_u32(c).unwrap_or('\u{fffd}');
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-level vocabulary: the 256 byte tokens, a few merges, one control token.
    pub(crate) fn test_spec() -> TokenizerSpec {
        let table = bytes_to_unicode();
        let mut tokens: Vec<String> = table.iter().map(|c| c.to_string()).collect();
        let merges = vec!["Ġ t", "h e", "Ġt he", "i n", "Ġ a"];
        for m in &merges {
            tokens.push(m.replace(' ', ""));
        }
        tokens.push("<|endoftext|>".to_string());
        let n = tokens.len();
        let mut token_types = vec![1; n];
        token_types[n - 1] = TOKEN_TYPE_CONTROL;
        TokenizerSpec {
            model: "gpt2".into(),
            pre: "qwen2".into(),
            tokens,
            token_types,
            merges: merges.into_iter().map(String::from).collect(),
            bos_id: None,
            eos_id: Some((n - 1) as u32),
        }
    }

    #[test]
    fn byte_table_is_a_bijection() {
        let t = bytes_to_unicode();
        let set: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(set.len(), 256);
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[b' ' as usize], 'Ġ');
    }

    #[test]
    fn merges_apply_by_rank_and_round_trip() {
        let tok = Tokenizer::from_spec(test_spec()).unwrap();
        let ids = tok.encode("the in a", false).unwrap();
        // "the" -> t,h,e -> "he" merge (rank 1) -> [t, he]; " in" -> Ġ,in; " a" -> Ġa
        let strs: Vec<&str> = ids.iter().map(|&i| tok.token_str(i).unwrap()).collect();
        assert_eq!(strs, vec!["t", "he", "Ġ", "in", "Ġa"]);
        assert_eq!(tok.decode(&ids).unwrap(), "the in a");
        let ids = tok.encode(" the", false).unwrap();
        let strs: Vec<&str> = ids.iter().map(|&i| tok.token_str(i).unwrap()).collect();
        assert_eq!(strs, vec!["Ġthe"]);
    }

    #[test]
    fn special_tokens_only_when_asked() {
        let tok = Tokenizer::from_spec(test_spec()).unwrap();
        let eos = tok.eos_id().unwrap();
        assert_eq!(
            tok.encode("a<|endoftext|>", true).unwrap().last(),
            Some(&eos)
        );
        assert!(!tok.encode("a<|endoftext|>", false).unwrap().contains(&eos));
    }

    #[test]
    fn unicode_round_trips_and_stream_decoder_holds_partial_chars() {
        let tok = Tokenizer::from_spec(test_spec()).unwrap();
        let s = "héllo 世界 🙂\n\n  x  123";
        let ids = tok.encode(s, false).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), s);
        let mut d = StreamDecoder::default();
        let mut text = String::new();
        for &id in &ids {
            text += &d.push(&tok.token_bytes(id).unwrap());
        }
        text += &d.finish();
        assert_eq!(text, s);
        let mut d = StreamDecoder::default();
        assert_eq!(d.push(&[0xe4, 0xb8]), "");
        assert_eq!(d.push(&[0x96]), "世");
    }

    #[test]
    fn bad_metadata_is_an_error() {
        let mut s = test_spec();
        s.model = "llama".into();
        assert!(matches!(
            Tokenizer::from_spec(s),
            Err(TokenizerError::UnsupportedModel(_))
        ));
        let mut s = test_spec();
        s.merges.push("abc".into());
        assert!(matches!(
            Tokenizer::from_spec(s),
            Err(TokenizerError::BadMerge { .. })
        ));
        let mut s = test_spec();
        s.eos_id = Some(100_000);
        assert!(matches!(
            Tokenizer::from_spec(s),
            Err(TokenizerError::IdOutOfRange { .. })
        ));
    }
}
