//! Deterministic navigation of a query over JESSY's 14 dimensions.
//!
//! `POST /api/v1/query` hands the query text to [`Navigator::navigate`], which
//! is a pure function of the text and the embedded `dimensions.json` (no
//! randomness, no clock, no hash-map iteration order in the output): equal
//! input gives equal output, down to the bytes of the serialized JSON.
//!
//! # Data
//!
//! `dimensions.json` is the single source of the tables: the 14 dimensions
//! (`D01-Emotion` … `D14-Security`, each with a name, a base frequency in Hz
//! and a keyword table), the stopword list and the urgency words with their
//! boost. It is parsed and validated once ([`Navigator::from_embedded`]); the
//! resulting [`Navigator`] is immutable and meant to be shared behind an `Arc`.
//!
//! # Rules, in the order they are applied
//!
//! 1. **Keywords** ([`extract_keywords`]): the query is lowercased
//!    (Unicode-aware), split on every character that is not alphanumeric
//!    (apostrophes included, so `don't` gives `don` + `t`, both stopwords, and
//!    `Rust's` gives `rust`), stopwords are dropped, and duplicates are dropped
//!    keeping the first occurrence. Repeating a word therefore never raises a
//!    score: a score counts *distinct* words.
//! 2. **Scores**: a dimension's score is the number of keywords found in its
//!    table; it is *activated* when the score is above 0. A word may sit in
//!    several tables and then counts for each of them.
//! 3. **Confidence** = `1 − 2^(−score)` (1 → 0.5, 2 → 0.75, 3 → 0.875, …):
//!    each matched keyword halves the remaining doubt. It depends on the
//!    dimension's own evidence only, never on the other dimensions, and lies
//!    in (0, 1].
//! 4. **Order**: score descending, then confidence descending, then id
//!    ascending. Ids are unique, so no two entries compare equal: this is a
//!    total order and the sort result cannot depend on input order.
//! 5. **Security (D14) blocks**: if D14 is activated the result holds D14
//!    alone and `blocked = true`. This is checked first, so a blocked result
//!    is never "return to source" and never balanced. D14's table holds
//!    words of intent (`hack`, `steal`, `exploit`, `ddos`, …), not of being
//!    a victim: `hacked`, `stolen` and `exploited` are left out so that
//!    "my account was hacked" is not blocked.
//! 6. **Return to source**: with more than 6 activated dimensions only the
//!    top 3 are kept and `return_to_source = true`. `activated_count` always
//!    reports the number activated by the keywords, before any reduction.
//! 7. **Dominant frequency**: the confidence-weighted mean of the listed
//!    dimensions' base frequencies (0.5 Hz when none is listed), plus
//!    `boost_hz` (0.5) for every distinct urgency word, clamped to
//!    0.1–4.5 Hz and rounded to 3 decimals.
//! 8. **Balance**: if that frequency is above 3.5 Hz, D13-Balance is added to
//!    the list (if absent) and the frequency is pulled halfway to 0.8 Hz:
//!    `f' = 0.8 + (f − 0.8) × 0.5`, which is at most 2.65 Hz. The added D13
//!    keeps its keyword score when it had one (it may have been cut by rule
//!    6); otherwise it gets score 0 and confidence 0.5, its weight in that
//!    50/50 blend. Balance comes after return to source, so both flags can be
//!    set; it never applies to a blocked result.
//!
//! Every frequency and confidence in the output is rounded to 3 decimals
//! (`(x × 1000).round() / 1000`), and the dominant frequency is computed
//! from the rounded confidences, so it can be recomputed from the output.
//!
//! The engine never panics, whatever the `&str`: empty text, emoji,
//! combining marks, right-to-left scripts, NUL bytes, very long input. Work
//! is linear in the length of the query: one lowercase pass, one split, one
//! hash lookup per token (keyed by the token's bytes packed in a `u128` when
//! there are at most 16, which covers every word of `dimensions.json`), and
//! a bit test, not a second lookup, to drop a repeated table word. An ASCII
//! query, the common case, is lowercased and split by the ASCII rules, which
//! give the same tokens, and its token boundaries are read from a bitmap of
//! its letters and digits built 8 bytes at a time instead of decoding
//! characters.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::fmt;
use std::hash::BuildHasher;
use std::ops::Range;

use serde::{Deserialize, Serialize};

/// The data file, compiled into the binary so a deployment cannot lose it.
const EMBEDDED_DATA: &str = include_str!("dimensions.json");

/// The hasher of the word tables and of the per-query set of seen words.
/// With std's SipHash-1-3, hashing was a third of the instructions of a
/// 2,000-character query. foldhash (already in the tree through hashbrown) is
/// seeded per process, so hash flooding through crafted queries stays hard.
type Hasher = foldhash::fast::RandomState;
type WordMap<V> = HashMap<String, V, Hasher>;
type WordSet = HashSet<String, Hasher>;

/// The engine is written for exactly these ids, in this order; the data is
/// rejected otherwise, which lets D13 and D14 be found by position.
const DIMENSION_COUNT: usize = 14;
// A word's dimensions are a bit set in a u16.
const _: () = assert!(DIMENSION_COUNT <= 16);
const BALANCE_INDEX: usize = 12; // D13
const SECURITY_INDEX: usize = 13; // D14

const NEUTRAL_FREQUENCY_HZ: f64 = 0.5;
const MIN_FREQUENCY_HZ: f64 = 0.1;
const MAX_FREQUENCY_HZ: f64 = 4.5;
const BALANCE_THRESHOLD_HZ: f64 = 3.5;
const BALANCE_TARGET_HZ: f64 = 0.8;
/// Share of the distance to the target that balance keeps (and the
/// confidence given to a D13 that balance adds without keyword evidence).
const BALANCE_WEIGHT: f64 = 0.5;
const RETURN_TO_SOURCE_ABOVE: usize = 6;
const RETURN_TO_SOURCE_KEEP: usize = 3;

/// The navigation data is invalid (bad JSON, wrong shape, or a table that
/// breaks one of the checks in [`Navigator::from_json`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError(String);

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid navigation data: {}", self.0)
    }
}

impl Error for DataError {}

/// The result of navigating one query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Navigation {
    /// Distinct non-stopword tokens, in order of first appearance.
    pub keywords: Vec<String>,
    /// Listed dimensions, in the total order described in the module docs.
    pub dimensions: Vec<ActivatedDimension>,
    /// Dimensions activated by the keywords, before blocking or return to
    /// source reduced the list, and not counting a D13 added by balance.
    pub activated_count: usize,
    /// Dominant frequency in Hz, rounded to 3 decimals.
    pub dominant_frequency_hz: f64,
    /// More than 6 dimensions were activated; only the top 3 are listed.
    pub return_to_source: bool,
    /// The frequency went above 3.5 Hz; D13 was brought in and the
    /// frequency pulled toward 0.8 Hz.
    pub balance_applied: bool,
    /// D14-Security was activated; it is the only dimension listed.
    pub blocked: bool,
}

/// One dimension in a [`Navigation`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivatedDimension {
    /// `"D01"` … `"D14"`.
    pub id: String,
    /// `"Emotion"`, `"Philosophical"`, …
    pub name: String,
    /// Distinct query keywords found in this dimension's table.
    pub score: u32,
    /// `1 − 2^(−score)`, rounded to 3 decimals.
    pub confidence: f64,
    /// The dimension's base frequency in Hz (from the data), rounded to 3
    /// decimals.
    pub frequency_hz: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawData {
    stopwords: Vec<String>,
    urgency: RawUrgency,
    dimensions: Vec<RawDimension>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUrgency {
    boost_hz: f64,
    words: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDimension {
    id: String,
    name: String,
    frequency_hz: f64,
    keywords: Vec<String>,
}

#[derive(Clone)]
struct Dimension {
    id: String,
    name: String,
    frequency_hz: f64,
}

/// The navigation engine: validated tables plus a word index built once,
/// so navigating costs one hash lookup per query token. Immutable and
/// `Send + Sync`; load it at startup and share it with an `Arc` (there is no
/// global state).
#[derive(Clone)]
pub struct Navigator {
    dimensions: Vec<Dimension>,
    /// Every word of the tables (stopwords, keywords, urgency words) → what
    /// it means. Only ever looked up, never iterated, so its order cannot
    /// leak out.
    words: WordIndex,
    /// Table words that are not stopwords (the range of [`Word::Meaningful`]).
    meaningful_count: usize,
    stopwords: WordSet,
    urgency_boost_hz: f64,
}

/// What a table word means for a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Word {
    Stop,
    Meaningful {
        /// Dense number among the meaningful words: a query's repeats are
        /// dropped with a bit set indexed by it instead of a second hash.
        id: usize,
        /// Bit `d` is set when dimension `d`'s table has the word.
        dimensions: u16,
        urgent: bool,
    },
}

impl fmt::Debug for Navigator {
    // Hand-written so that even debug output is deterministic (no hash order).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Navigator")
            .field("dimensions", &self.dimension_labels())
            .field("meaningful_words", &self.meaningful_count)
            .field("stopwords", &self.stopwords.len())
            .field("urgency_boost_hz", &self.urgency_boost_hz)
            .finish()
    }
}

impl Navigator {
    /// Parses the `dimensions.json` compiled into the binary.
    ///
    /// # Errors
    ///
    /// Only if that file is invalid, which the unit tests rule out.
    pub fn from_embedded() -> Result<Navigator, DataError> {
        Self::from_json(EMBEDDED_DATA)
    }

    /// Parses and validates JSON text of the same shape as `dimensions.json`.
    ///
    /// The checks make every table entry reachable and the output
    /// well-defined: exactly 14 dimensions with ids `D01`…`D14` in order,
    /// non-empty names, base frequencies within 0.1–4.5 Hz, no empty
    /// keyword table, every word (keyword, stopword, urgency word) a
    /// lowercase alphanumeric token as [`extract_keywords`] produces, no
    /// duplicates within a list, and no keyword or urgency word that is also
    /// a stopword (it could never match).
    ///
    /// # Errors
    ///
    /// [`DataError`] naming the first check that failed (or the JSON error).
    pub fn from_json(json: &str) -> Result<Navigator, DataError> {
        let raw: RawData =
            serde_json::from_str(json).map_err(|e| DataError(format!("JSON: {e}")))?;

        let stopwords = word_set("stopwords", &raw.stopwords, None)?;

        let boost = raw.urgency.boost_hz;
        if !(boost.is_finite() && (0.0..=MAX_FREQUENCY_HZ).contains(&boost)) {
            return Err(DataError(format!(
                "urgency.boost_hz {boost} is outside 0–{MAX_FREQUENCY_HZ}"
            )));
        }
        let urgency_words = word_set("urgency.words", &raw.urgency.words, Some(&stopwords))?;

        if raw.dimensions.len() != DIMENSION_COUNT {
            return Err(DataError(format!(
                "expected {DIMENSION_COUNT} dimensions, found {}",
                raw.dimensions.len()
            )));
        }
        let mut dimensions = Vec::with_capacity(DIMENSION_COUNT);
        // Keyword → bit set of the dimensions whose table has it.
        let mut index: WordMap<u16> = WordMap::default();
        for (i, dim) in raw.dimensions.into_iter().enumerate() {
            let expected = format!("D{:02}", i + 1);
            if dim.id != expected {
                return Err(DataError(format!(
                    "dimension {} has id {:?}, expected {expected:?}",
                    i + 1,
                    dim.id
                )));
            }
            if dim.name.trim().is_empty() {
                return Err(DataError(format!("{expected}: empty name")));
            }
            let hz = dim.frequency_hz;
            if !(hz.is_finite() && (MIN_FREQUENCY_HZ..=MAX_FREQUENCY_HZ).contains(&hz)) {
                return Err(DataError(format!(
                    "{expected}: frequency_hz {hz} is outside {MIN_FREQUENCY_HZ}–{MAX_FREQUENCY_HZ}"
                )));
            }
            if dim.keywords.is_empty() {
                return Err(DataError(format!("{expected}: empty keyword table")));
            }
            let table = word_set(
                &format!("{expected}.keywords"),
                &dim.keywords,
                Some(&stopwords),
            )?;
            for word in table {
                *index.entry(word).or_default() |= 1 << i;
            }
            dimensions.push(Dimension {
                id: dim.id,
                name: dim.name,
                frequency_hz: hz,
            });
        }

        // Meaningful words get ids in sorted order, so the table (and its
        // Debug output) does not depend on hash order.
        let mut meaningful: Vec<&String> = index.keys().chain(&urgency_words).collect();
        meaningful.sort_unstable();
        meaningful.dedup();
        let mut words = WordIndex::default();
        for word in &stopwords {
            words.insert(word, Word::Stop);
        }
        for (id, word) in meaningful.iter().enumerate() {
            let meaning = Word::Meaningful {
                id,
                dimensions: index.get(*word).copied().unwrap_or(0),
                urgent: urgency_words.contains(*word),
            };
            words.insert(word, meaning);
        }

        Ok(Navigator {
            dimensions,
            meaningful_count: meaningful.len(),
            words,
            stopwords,
            urgency_boost_hz: boost,
        })
    }

    /// Labels like `"D01-Emotion"`, in id order (for `GET /status`).
    #[must_use]
    pub fn dimension_labels(&self) -> Vec<String> {
        self.dimensions
            .iter()
            .map(|d| format!("{}-{}", d.id, d.name))
            .collect()
    }

    /// The stopword set, for callers of [`extract_keywords`].
    #[must_use]
    pub fn stopwords(&self) -> &HashSet<String, impl BuildHasher> {
        &self.stopwords
    }

    /// [`extract_keywords`] with this navigator's stopwords.
    #[must_use]
    pub fn keywords(&self, query: &str) -> Vec<String> {
        self.scan(query).keywords
    }

    /// Rules 1 and 2 in one pass: the keywords, the dimensions' scores and
    /// the number of distinct urgency words. Gives the same keywords as
    /// [`extract_keywords`] (a test compares them), with one hash lookup per
    /// token instead of two.
    fn scan(&self, query: &str) -> Scan {
        if query.is_ascii() {
            self.scan_ascii(query)
        } else {
            self.scan_unicode(query)
        }
    }

    /// [`Navigator::scan`] for any query.
    fn scan_unicode(&self, query: &str) -> Scan {
        let lowered = query.to_lowercase();
        let mut scanner = Scanner::new(self);
        for token in tokens(&lowered) {
            scanner.add(Token::new(token));
        }
        scanner.scan
    }

    /// [`Navigator::scan`] for an ASCII query, the common case. There,
    /// Unicode lowercasing is ASCII lowercasing and the alphanumeric
    /// characters are the ASCII letters and digits: the tokens are the same
    /// (a test compares the two paths), found without decoding characters.
    fn scan_ascii(&self, query: &str) -> Scan {
        // Spaces after the text, so that every token start has 16 bytes from
        // it, which `pack_at` reads at once. Spaces add no token.
        const PADDING: &str = "               ";
        let mut lowered = String::with_capacity(query.len() + PADDING.len());
        lowered.push_str(query);
        lowered.make_ascii_lowercase();
        lowered.push_str(PADDING);
        let mut scanner = Scanner::new(self);
        for_each_run(&alphanumeric_bitmap(lowered.as_bytes()), |run| {
            scanner.add(Token::at(&lowered, run));
        });
        scanner.scan
    }

    /// Navigates `query` by the rules in the module docs. Total: any `&str`
    /// gives a result.
    #[must_use]
    pub fn navigate(&self, query: &str) -> Navigation {
        self.navigation(self.scan(query))
    }

    /// Rules 3 to 8, applied to the result of rules 1 and 2.
    fn navigation(&self, scan: Scan) -> Navigation {
        let Scan {
            keywords,
            scores,
            urgency_words,
        } = scan;
        let urgency_hz = f64::from(urgency_words) * self.urgency_boost_hz;

        let mut ranked: Vec<ActivatedDimension> = scores
            .iter()
            .enumerate()
            .filter(|&(_, &score)| score > 0)
            .map(|(i, &score)| self.entry(i, score, confidence(score)))
            .collect();
        ranked.sort_by(rank_order);
        let activated_count = ranked.len();

        // Rule 5: security first; nothing else applies to a blocked result.
        let security_score = scores[SECURITY_INDEX];
        if security_score > 0 {
            let dimensions =
                vec![self.entry(SECURITY_INDEX, security_score, confidence(security_score))];
            let dominant_frequency_hz = round3(clamp_hz(weighted_mean(&dimensions) + urgency_hz));
            return Navigation {
                keywords,
                dimensions,
                activated_count,
                dominant_frequency_hz,
                return_to_source: false,
                balance_applied: false,
                blocked: true,
            };
        }

        // Rule 6: return to source.
        let return_to_source = activated_count > RETURN_TO_SOURCE_ABOVE;
        let mut dimensions = ranked;
        if return_to_source {
            dimensions.truncate(RETURN_TO_SOURCE_KEEP);
        }

        // Rule 7: dominant frequency of what is listed.
        let base = if dimensions.is_empty() {
            NEUTRAL_FREQUENCY_HZ
        } else {
            weighted_mean(&dimensions)
        };
        // Rounded before the threshold test so a reported 3.5 is never balanced.
        let mut dominant_frequency_hz = round3(clamp_hz(base + urgency_hz));

        // Rule 8: balance.
        let mut balance_applied = false;
        if dominant_frequency_hz > BALANCE_THRESHOLD_HZ {
            let balance_id = &self.dimensions[BALANCE_INDEX].id;
            if !dimensions.iter().any(|d| &d.id == balance_id) {
                let score = scores[BALANCE_INDEX];
                let conf = if score > 0 {
                    confidence(score)
                } else {
                    BALANCE_WEIGHT
                };
                dimensions.push(self.entry(BALANCE_INDEX, score, conf));
                dimensions.sort_by(rank_order);
            }
            dominant_frequency_hz = round3(
                BALANCE_TARGET_HZ + (dominant_frequency_hz - BALANCE_TARGET_HZ) * BALANCE_WEIGHT,
            );
            balance_applied = true;
        }

        Navigation {
            keywords,
            dimensions,
            activated_count,
            dominant_frequency_hz,
            return_to_source,
            balance_applied,
            blocked: false,
        }
    }

    fn entry(&self, index: usize, score: u32, confidence: f64) -> ActivatedDimension {
        let dim = &self.dimensions[index];
        ActivatedDimension {
            id: dim.id.clone(),
            name: dim.name.clone(),
            score,
            confidence: round3(confidence),
            frequency_hz: round3(dim.frequency_hz),
        }
    }
}

/// Splits `query` into keywords: Unicode lowercase, split on every
/// non-alphanumeric character (apostrophes included), drop empty tokens and
/// `stopwords`, drop repeats keeping the first occurrence. Linear in the
/// length of `query`; never panics.
///
/// Lowercasing happens before splitting because lowercasing can itself
/// produce non-alphanumeric characters (`İ` → `i` + U+0307), so every
/// returned token is lowercase and purely alphanumeric — the same form the
/// data tables are validated to have.
#[must_use]
pub fn extract_keywords<S: BuildHasher>(
    query: &str,
    stopwords: &HashSet<String, S>,
) -> Vec<String> {
    let lowered = query.to_lowercase();
    let mut seen: HashSet<&str, Hasher> = HashSet::default();
    let mut keywords = Vec::new();
    for token in tokens(&lowered) {
        if stopwords.contains(token) {
            continue;
        }
        if seen.insert(token) {
            keywords.push(token.to_owned());
        }
    }
    keywords
}

/// The non-empty runs of alphanumeric characters of an already lowercased
/// query.
fn tokens(lowered: &str) -> impl Iterator<Item = &str> {
    lowered
        .split(|c: char| !c.is_alphanumeric())
        .filter(|token| !token.is_empty())
}

/// Bit `i % 64` of word `i / 64` is set when `bytes[i]` is a lowercase ASCII
/// letter or digit; bits past the end are clear. `bytes` must be ASCII.
/// Token boundaries are then found a word, not a byte, at a time.
fn alphanumeric_bitmap(bytes: &[u8]) -> Vec<u64> {
    let (blocks, tail) = bytes.as_chunks::<64>();
    let mut last = [0; 64];
    last[..tail.len()].copy_from_slice(tail);
    blocks
        .iter()
        .chain([&last])
        .map(|block| {
            let (chunks, _) = block.as_chunks::<8>();
            chunks.iter().rev().fold(0, |word, chunk| {
                word << 8 | u64::from(alphanumeric_bits(*chunk))
            })
        })
        .collect()
}

/// Bit `i` is set when `chunk[i]` is a lowercase ASCII letter or digit,
/// computed for the 8 bytes at once. Every byte must be ASCII.
fn alphanumeric_bits(chunk: [u8; 8]) -> u8 {
    const fn splat(byte: u8) -> u64 {
        u64::from_le_bytes([byte; 8])
    }
    let bytes = u64::from_le_bytes(chunk);
    // For a byte b < 0x80, b + (0x80 - n) has its top bit set iff b >= n,
    // and does not carry into the next byte.
    let at_least = |n: u8| bytes + splat(0x80 - n);
    let letters = at_least(b'a') & !at_least(b'z' + 1);
    let digits = at_least(b'0') & !at_least(b'9' + 1);
    let tops = (letters | digits) & splat(0x80);
    // The multiply gathers the 8 top bits, in order, into the top byte.
    let gathered = (tops >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56;
    gathered as u8
}

/// Calls `f` with each run of set bits of `bitmap`, in order.
fn for_each_run(bitmap: &[u64], mut f: impl FnMut(Range<usize>)) {
    // The top bit of the word before.
    let mut carry = 0;
    for (index, &word) in bitmap.iter().enumerate() {
        let mut starts = word & !(word << 1 | carry);
        carry = word >> 63;
        while starts != 0 {
            let bit = starts.trailing_zeros();
            starts &= starts - 1;
            let start = index * 64 + bit as usize;
            let mut end = start + (word >> bit).trailing_ones() as usize;
            // A run that reaches the end of its word goes on in the next.
            if end.is_multiple_of(64) {
                for &next in &bitmap[index + 1..] {
                    end += next.trailing_ones() as usize;
                    if next != u64::MAX {
                        break;
                    }
                }
            }
            f(start..end);
        }
    }
}

/// A token of a lowercased query, `source[start..end]`, with its packed
/// key. Most tokens are settled by the key alone, so the text is sliced out
/// only when it is needed.
#[derive(Clone, Copy)]
struct Token<'q> {
    source: &'q str,
    start: usize,
    end: usize,
    /// `pack` of the token's bytes.
    packed: Option<u128>,
}

impl<'q> Token<'q> {
    /// The whole of `text`.
    fn new(text: &'q str) -> Self {
        Token {
            source: text,
            start: 0,
            end: text.len(),
            packed: pack(text.as_bytes()),
        }
    }

    /// `source[run]`.
    fn at(source: &'q str, run: Range<usize>) -> Self {
        Token {
            source,
            start: run.start,
            end: run.end,
            packed: pack_at(source.as_bytes(), run),
        }
    }

    fn text(&self) -> &'q str {
        &self.source[self.start..self.end]
    }
}

/// `bytes` packed in a `u128`, if there are at most 16. A token has no NUL
/// byte, so the zero padding keeps tokens of different lengths apart.
fn pack(bytes: &[u8]) -> Option<u128> {
    if bytes.len() > 16 {
        return None;
    }
    // Built in registers, 8 bytes at a time: copying the bytes into a buffer
    // read back as a `u128` made the Unicode path a third slower (the read
    // waits for the copy's small stores).
    let (low, high) = bytes.split_at(bytes.len().min(8));
    let half = |part: &[u8]| {
        part.iter()
            .rev()
            .fold(0, |half, &b| half << 8 | u64::from(b))
    };
    Some(u128::from(half(low)) | u128::from(half(high)) << 64)
}

/// `pack(&bytes[run])`, with one 16-byte load and a mask instead of a copy
/// when `bytes` has 16 bytes from the start of `run`.
fn pack_at(bytes: &[u8], run: Range<usize>) -> Option<u128> {
    let mask = LOW_BYTES.get(run.end - run.start)?;
    match bytes.get(run.start..).and_then(<[u8]>::first_chunk::<16>) {
        Some(window) => Some(u128::from_le_bytes(*window) & mask),
        None => pack(bytes.get(run)?),
    }
}

/// `LOW_BYTES[n]` keeps the low `n` bytes of a little-endian `u128`.
static LOW_BYTES: [u128; 17] = {
    let mut masks = [0; 17];
    let mut n = 1;
    while n < masks.len() {
        masks[n] = u128::MAX >> (8 * (16 - n));
        n += 1;
    }
    masks
};

/// Every table word → what it means. A word of at most 16 bytes, nearly
/// every word, is keyed by its packed bytes: hashing and comparing a `u128`
/// is much cheaper than hashing a string and calling `memcmp`.
#[derive(Clone, Default)]
struct WordIndex {
    packed: HashMap<u128, Word, Hasher>,
    long: HashMap<Box<str>, Word, Hasher>,
}

impl WordIndex {
    fn insert(&mut self, word: &str, meaning: Word) {
        match pack(word.as_bytes()) {
            Some(key) => self.packed.insert(key, meaning),
            None => self.long.insert(word.into(), meaning),
        };
    }

    fn get(&self, token: &Token<'_>) -> Option<Word> {
        match token.packed {
            Some(key) => self.packed.get(&key).copied(),
            None => self.get_long(token.text()),
        }
    }

    // Cold, so that `get`, run for every token, is small enough to inline.
    #[cold]
    fn get_long(&self, word: &str) -> Option<Word> {
        self.long.get(word).copied()
    }

    #[cfg(test)]
    fn values(&self) -> impl Iterator<Item = &Word> {
        self.packed.values().chain(self.long.values())
    }
}

/// A set of tokens, keyed like a [`WordIndex`].
#[derive(Default)]
struct TokenSet<'q> {
    packed: HashSet<u128, Hasher>,
    long: HashSet<&'q str, Hasher>,
}

impl<'q> TokenSet<'q> {
    /// Adds `token`, whose `pack` is `packed`; true if it was not there yet.
    fn insert(&mut self, packed: Option<u128>, token: &'q str) -> bool {
        match packed {
            Some(key) => self.packed.insert(key),
            None => self.long.insert(token),
        }
    }
}

/// Rules 1 and 2 for one query (see [`Navigator::scan`]).
#[derive(Default)]
struct Scan {
    keywords: Vec<String>,
    scores: [u32; DIMENSION_COUNT],
    urgency_words: u32,
}

/// [`Navigator::scan`], fed the tokens of one query in order.
struct Scanner<'n, 'q> {
    navigator: &'n Navigator,
    scan: Scan,
    /// Bit `id` is set once meaningful word `id` has been counted.
    seen_meaningful: Vec<u64>,
    /// The keywords so far that are not table words.
    seen_other: TokenSet<'q>,
}

impl<'n, 'q> Scanner<'n, 'q> {
    fn new(navigator: &'n Navigator) -> Self {
        Scanner {
            navigator,
            scan: Scan::default(),
            seen_meaningful: vec![0; navigator.meaningful_count.div_ceil(64)],
            seen_other: TokenSet::default(),
        }
    }

    // Inlined into the scan loops: as a call, with the token passed through
    // memory, it cost a fifth more instructions on a long ASCII query.
    #[inline(always)]
    fn add(&mut self, token: Token<'q>) {
        match self.navigator.words.get(&token) {
            Some(Word::Stop) => {}
            Some(Word::Meaningful {
                id,
                dimensions,
                urgent,
            }) => {
                let (slot, bit) = (id / 64, 1u64 << (id % 64));
                if self.seen_meaningful[slot] & bit == 0 {
                    self.seen_meaningful[slot] |= bit;
                    self.score(token.text(), dimensions, urgent);
                }
            }
            None => self.add_other(token.packed, token.text()),
        }
    }

    /// A table word met for the first time: a keyword that scores.
    fn score(&mut self, word: &str, dimensions: u16, urgent: bool) {
        let scan = &mut self.scan;
        scan.keywords.push(word.to_owned());
        for (d, score) in scan.scores.iter_mut().enumerate() {
            if dimensions & (1 << d) != 0 {
                *score = score.saturating_add(1);
            }
        }
        if urgent {
            scan.urgency_words = scan.urgency_words.saturating_add(1);
        }
    }

    /// A word outside the tables: a keyword the first time it is met.
    fn add_other(&mut self, packed: Option<u128>, word: &'q str) {
        if self.seen_other.insert(packed, word) {
            self.scan.keywords.push(word.to_owned());
        }
    }
}

/// Validates one word list from the data and returns it as a set.
fn word_set(
    what: &str,
    words: &[String],
    stopwords: Option<&WordSet>,
) -> Result<WordSet, DataError> {
    let mut set = WordSet::with_capacity_and_hasher(words.len(), Hasher::default());
    for word in words {
        if !is_token(word) {
            return Err(DataError(format!(
                "{what}: {word:?} is not a lowercase alphanumeric word"
            )));
        }
        if stopwords.is_some_and(|s| s.contains(word)) {
            return Err(DataError(format!(
                "{what}: {word:?} is a stopword and could never match"
            )));
        }
        if !set.insert(word.clone()) {
            return Err(DataError(format!("{what}: {word:?} is listed twice")));
        }
    }
    Ok(set)
}

/// True if `word` is something [`extract_keywords`] can return.
fn is_token(word: &str) -> bool {
    !word.is_empty() && word.chars().all(char::is_alphanumeric) && word.to_lowercase() == word
}

/// `1 − 2^(−score)`; exact for the small scores that occur (powers of two).
fn confidence(score: u32) -> f64 {
    // Beyond 64 the result is 1.0 in f64 anyway; the cap keeps powi's
    // exponent in i32 range.
    let exponent = i32::try_from(score.min(64)).unwrap_or(64);
    1.0 - 0.5f64.powi(exponent)
}

/// Score desc, confidence desc, id asc. Ids are unique in a list, so this
/// is a total order: the sorted result is unique.
fn rank_order(a: &ActivatedDimension, b: &ActivatedDimension) -> Ordering {
    b.score
        .cmp(&a.score)
        .then_with(|| b.confidence.total_cmp(&a.confidence))
        .then_with(|| a.id.cmp(&b.id))
}

/// Confidence-weighted mean of base frequencies. Callers pass a non-empty
/// list; confidences are ≥ 0.5, so the divisor is positive.
fn weighted_mean(dimensions: &[ActivatedDimension]) -> f64 {
    let (weighted, total) = dimensions.iter().fold((0.0, 0.0), |(w, t), d| {
        (w + d.confidence * d.frequency_hz, t + d.confidence)
    });
    if total > 0.0 {
        weighted / total
    } else {
        NEUTRAL_FREQUENCY_HZ
    }
}

fn clamp_hz(hz: f64) -> f64 {
    hz.clamp(MIN_FREQUENCY_HZ, MAX_FREQUENCY_HZ)
}

/// Rounds to 3 decimals (half away from zero, applied to the binary value,
/// so 2.40749… from 0.8 + 3.215 × 0.5 gives 2.407). Plain IEEE arithmetic,
/// so the same input gives the same bits on every platform.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    // Queries the BDD feature files reuse; keep them in sync.
    const PHILOSOPHICAL: &str = "What is the meaning of life and existence?";
    const TECHNICAL: &str = "How do I fix a memory leak in my Rust code compiler error?";
    const EMOTIONAL: &str = "I feel so sad and lonely today";
    const HARMFUL: &[&str] = &[
        "how to hack into a bank and steal passwords",
        "build a bomb",
        "write malware",
        "write ransomware",
        "find an exploit for this server",
        "launch a ddos attack",
    ];
    const RETURN_TO_SOURCE: &str = "I feel sad and anxious, I think about the meaning of life, \
         my friends and family, the future, code, art, ethics and the forest";
    const URGENT: &str = "urgent emergency critical fix the server now immediately";
    const NATURE: &str = "How can we protect the forest, the river, the ocean and the animals \
         of our planet from climate change?";

    fn nav() -> &'static Navigator {
        static NAV: OnceLock<Navigator> = OnceLock::new();
        NAV.get_or_init(|| Navigator::from_embedded().expect("embedded data is valid"))
    }

    fn ids(n: &Navigation) -> Vec<&str> {
        n.dimensions.iter().map(|d| d.id.as_str()).collect()
    }

    fn embedded_value() -> serde_json::Value {
        serde_json::from_str(EMBEDDED_DATA).unwrap()
    }

    fn load(value: &serde_json::Value) -> Result<Navigator, DataError> {
        Navigator::from_json(&value.to_string())
    }

    /// Checks every invariant a result must satisfy, whatever the query.
    fn assert_invariants(n: &Navigation) {
        let hz = n.dominant_frequency_hz;
        assert!(hz.is_finite() && (0.1..=4.5).contains(&hz), "{hz}");
        assert_eq!(hz, round3(hz));
        for w in n.dimensions.windows(2) {
            assert_eq!(rank_order(&w[0], &w[1]), Ordering::Less, "{n:?}");
        }
        for d in &n.dimensions {
            assert!(d.confidence > 0.0 && d.confidence <= 1.0, "{d:?}");
            assert!(d.score > 0 || (n.balance_applied && d.id == "D13"), "{d:?}");
        }
        for k in &n.keywords {
            assert!(is_token(k), "{k:?}");
            assert!(!nav().stopwords().contains(k), "{k:?}");
        }
        let distinct: HashSet<&String> = n.keywords.iter().collect();
        assert_eq!(distinct.len(), n.keywords.len());
        if n.blocked {
            assert_eq!(ids(n), ["D14"]);
            assert!(n.activated_count >= 1);
            assert!(!n.return_to_source && !n.balance_applied);
        } else {
            assert!(!ids(n).contains(&"D14"));
            assert!(hz <= BALANCE_THRESHOLD_HZ);
            assert_eq!(n.return_to_source, n.activated_count > 6);
            let kept = if n.return_to_source {
                3
            } else {
                n.activated_count
            };
            if n.balance_applied {
                assert!(ids(n).contains(&"D13"), "{n:?}");
                assert!((kept..=kept + 1).contains(&n.dimensions.len()), "{n:?}");
            } else {
                assert_eq!(n.dimensions.len(), kept, "{n:?}");
            }
        }
        serde_json::to_string(n).expect("serializes");
    }

    #[test]
    fn embedded_data_loads_and_is_clean() {
        let nav = nav();
        assert_eq!(
            nav.dimension_labels(),
            [
                "D01-Emotion",
                "D02-Cognition",
                "D03-Intention",
                "D04-Social",
                "D05-Temporal",
                "D06-Philosophical",
                "D07-Technical",
                "D08-Creative",
                "D09-Ethical",
                "D10-Meta",
                "D11-Ecological",
                "D12-Positivity",
                "D13-Balance",
                "D14-Security",
            ]
        );
        let frequencies: Vec<f64> = nav.dimensions.iter().map(|d| d.frequency_hz).collect();
        assert_eq!(
            frequencies,
            [
                1.0, 1.6, 1.4, 1.2, 1.1, 0.3, 2.0, 1.8, 0.7, 0.4, 0.6, 1.3, 0.8, 4.0
            ]
        );
        // Balance pulls toward D13's own frequency.
        assert_eq!(
            nav.dimensions[BALANCE_INDEX].frequency_hz,
            BALANCE_TARGET_HZ
        );
        assert_eq!(nav.dimensions[SECURITY_INDEX].id, "D14");
        assert_eq!(nav.urgency_boost_hz, 0.5);

        // Generous tables, and (re-checked here, independently of
        // from_json) no keyword or urgency word is a stopword.
        let raw: RawData = serde_json::from_str(EMBEDDED_DATA).unwrap();
        for dim in &raw.dimensions {
            assert!(
                (25..=90).contains(&dim.keywords.len()),
                "{}: {} keywords",
                dim.id,
                dim.keywords.len()
            );
            for k in &dim.keywords {
                assert!(!nav.stopwords.contains(k), "{}: {k}", dim.id);
            }
        }
        for w in &raw.urgency.words {
            assert!(!nav.stopwords.contains(w), "{w}");
        }
        for w in [
            "urgent",
            "emergency",
            "asap",
            "immediately",
            "hurry",
            "quickly",
            "now",
            "critical",
        ] {
            assert!(
                matches!(
                    nav.words.get(&Token::new(w)),
                    Some(Word::Meaningful { urgent: true, .. })
                ),
                "{w}"
            );
        }
    }

    #[test]
    fn navigator_is_shareable() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Navigator>();
        assert_send_sync::<Navigation>();
        let _ = format!("{:?}", nav());
    }

    #[test]
    fn keywords_lowercase_strip_punctuation_stopwords_and_repeats() {
        assert_eq!(
            nav().keywords("Hello, WORLD!! hello... world? (Code)-code"),
            ["hello", "world", "code"]
        );
        assert_eq!(
            nav().keywords(PHILOSOPHICAL),
            ["meaning", "life", "existence"]
        );
        // Apostrophes split words; the fragments are stopwords.
        assert_eq!(
            nav().keywords("Don't panic, it's Rust's fault"),
            ["panic", "rust", "fault"]
        );
        assert_eq!(nav().keywords("don’t worry"), ["worry"]);
        // Unicode-aware lowercasing; non-Latin letters and digits are kept.
        assert_eq!(
            nav().keywords("ÉTÉ Straße ΟΔΥΣΣΕΥΣ 2024 Ünïcödé"),
            ["été", "straße", "οδυσσευς", "2024", "ünïcödé"]
        );
        // "İ" lowercases to "i" + U+0307, a combining mark that is not
        // alphanumeric, so the word splits (and "i" is a stopword). No
        // Unicode normalization is attempted: predictable beats clever.
        assert_eq!(nav().keywords("İstanbul"), ["stanbul"]);
        assert!(nav().keywords("").is_empty());
        assert!(nav().keywords("the and of, a!").is_empty());
        // The free function with an explicit stopword set.
        let stop: HashSet<String> = ["b".to_owned()].into();
        assert_eq!(extract_keywords("A b C a", &stop), ["a", "c"]);
    }

    #[test]
    fn confidence_formula() {
        assert_eq!(confidence(1), 0.5);
        assert_eq!(confidence(2), 0.75);
        assert_eq!(confidence(3), 0.875);
        assert_eq!(round3(confidence(4)), 0.938);
        assert_eq!(round3(confidence(11)), 1.0);
        assert_eq!(confidence(u32::MAX), 1.0);
        for s in 1..200 {
            assert!(confidence(s) > 0.0 && confidence(s) <= 1.0);
            assert!(confidence(s + 1) >= confidence(s));
        }
    }

    #[test]
    fn rule1_philosophical_is_low_frequency() {
        let n = nav().navigate(PHILOSOPHICAL);
        assert_eq!(ids(&n), ["D06"]);
        assert_eq!(n.dimensions[0].score, 3);
        assert_eq!(n.dimensions[0].confidence, 0.875);
        assert_eq!(n.dominant_frequency_hz, 0.3);
        assert!(n.dominant_frequency_hz < 0.5);
        assert!(!n.blocked && !n.return_to_source && !n.balance_applied);
        assert_invariants(&n);
    }

    #[test]
    fn rule2_technical_comes_first() {
        let n = nav().navigate(TECHNICAL);
        assert_eq!(ids(&n), ["D07", "D02"]);
        assert_eq!(n.dimensions[0].score, 7);
        assert_eq!(n.dominant_frequency_hz, 1.866);
        assert_invariants(&n);
    }

    #[test]
    fn rule3_emotional_is_near_one_hertz() {
        let n = nav().navigate(EMOTIONAL);
        assert_eq!(n.keywords, ["feel", "sad", "lonely", "today"]);
        assert_eq!(ids(&n), ["D01", "D05"]);
        assert_eq!(n.dominant_frequency_hz, 1.036);
        assert!((n.dominant_frequency_hz - 1.0).abs() <= 0.25);
        assert_invariants(&n);
    }

    #[test]
    fn rule4_harmful_intent_is_blocked_by_security_alone() {
        for q in HARMFUL {
            let n = nav().navigate(q);
            assert!(n.blocked, "{q}");
            assert_eq!(ids(&n), ["D14"], "{q}");
            assert!(!n.return_to_source && !n.balance_applied, "{q}");
            assert_eq!(n.dominant_frequency_hz, 4.0, "{q}");
            assert_invariants(&n);
        }
        let n = nav().navigate(HARMFUL[0]);
        assert_eq!(n.keywords, ["hack", "bank", "steal", "passwords"]);
        // D07 (passwords) was activated too, but only D14 is listed.
        assert_eq!(n.activated_count, 2);
        assert_eq!(n.dimensions[0].score, 2);
        // Victim wording is not harmful intent.
        for q in ["my account was hacked", "my bike was stolen"] {
            assert!(!nav().navigate(q).blocked, "{q}");
        }
    }

    #[test]
    fn rule5_more_than_six_returns_to_source() {
        let n = nav().navigate(RETURN_TO_SOURCE);
        assert_eq!(n.activated_count, 9);
        assert!(n.return_to_source);
        // D04 and D06 tie on score and confidence; the id decides.
        assert_eq!(ids(&n), ["D01", "D04", "D06"]);
        assert_eq!(
            n.dimensions.iter().map(|d| d.score).collect::<Vec<_>>(),
            [3, 2, 2]
        );
        assert_eq!(n.dominant_frequency_hz, 0.842);
        assert!(!n.blocked && !n.balance_applied);
        assert_invariants(&n);

        // Exactly six is not enough.
        let six = nav().navigate("feel think plan friends future meaning");
        assert_eq!(six.activated_count, 6);
        assert!(!six.return_to_source);
        assert_eq!(six.dimensions.len(), 6);
    }

    #[test]
    fn rule6_high_frequency_brings_in_balance() {
        let n = nav().navigate(URGENT);
        assert!(n.balance_applied);
        assert_eq!(ids(&n), ["D05", "D07", "D13"]);
        let d13 = &n.dimensions[2];
        assert_eq!((d13.score, d13.confidence, d13.frequency_hz), (0, 0.5, 0.8));
        assert_eq!(n.activated_count, 2);
        // Before balance: (0.875·1.1 + 0.75·2.0) / 1.625 + 5 × 0.5 = 4.015;
        // 0.8 + 3.215 × 0.5 is 2.40749… in binary, hence 2.407.
        assert_eq!(n.dominant_frequency_hz, round3(0.8 + (4.015 - 0.8) * 0.5));
        assert_eq!(n.dominant_frequency_hz, 2.407);
        assert!(n.dominant_frequency_hz <= 3.5);
        assert!(!n.blocked && !n.return_to_source);
        assert_invariants(&n);

        // A D13 activated by keywords keeps its score and is not duplicated.
        let n = nav().navigate("urgent emergency critical now immediately asap calm");
        assert!(n.balance_applied);
        let d13: Vec<_> = n.dimensions.iter().filter(|d| d.id == "D13").collect();
        assert_eq!(d13.len(), 1);
        assert_eq!(d13[0].score, 1);

        // Never above 3.5 after balance, even from the 4.5 Hz ceiling.
        let n = nav().navigate("urgent emergency critical now immediately asap hurry quickly rush");
        assert!(n.balance_applied);
        assert_eq!(n.dominant_frequency_hz, round3(0.8 + (4.5 - 0.8) * 0.5));
    }

    #[test]
    fn rule7_nature_words_activate_ecological() {
        let n = nav().navigate(NATURE);
        assert_eq!(ids(&n), ["D11"]);
        assert_eq!(n.dimensions[0].score, 6);
        assert_eq!(n.dominant_frequency_hz, 0.6);
        for w in [
            "forest", "river", "ocean", "climate", "tree", "animals", "planet",
        ] {
            assert_eq!(ids(&nav().navigate(w)), ["D11"], "{w}");
        }
        assert_invariants(&n);
    }

    #[test]
    fn rule8_equal_input_equal_output() {
        // A second navigator has differently seeded hash maps; the output
        // must not notice.
        let other = Navigator::from_embedded().unwrap();
        let queries = [
            PHILOSOPHICAL,
            TECHNICAL,
            EMOTIONAL,
            HARMFUL[0],
            RETURN_TO_SOURCE,
            URGENT,
            NATURE,
            "",
        ];
        for q in queries {
            let a = nav().navigate(q);
            let b = other.navigate(q);
            assert_eq!(a, b);
            assert_eq!(a, nav().navigate(q));
            assert_eq!(
                serde_json::to_string(&a).unwrap(),
                serde_json::to_string(&b).unwrap()
            );
        }
        // Word order changes the keyword list, never the dimensions.
        let a = nav().navigate("code art forest sad");
        let b = nav().navigate("sad forest art code");
        assert_eq!(a.dimensions, b.dimensions);
        assert_eq!(a.dominant_frequency_hz, b.dominant_frequency_hz);
    }

    #[test]
    fn rule9_blocking_precedes_return_to_source_and_balance() {
        let q = format!("{URGENT} hack {RETURN_TO_SOURCE} asap hurry");
        let n = nav().navigate(&q);
        assert!(n.blocked);
        assert!(!n.return_to_source && !n.balance_applied);
        assert_eq!(ids(&n), ["D14"]);
        assert!(n.activated_count > 6);
        // 4.0 + 7 urgency words × 0.5, clamped and not balanced.
        assert_eq!(n.dominant_frequency_hz, 4.5);

        // Return to source first, then balance on what is left.
        let q = format!("{RETURN_TO_SOURCE} urgent emergency critical now immediately asap");
        let n = nav().navigate(&q);
        assert!(n.return_to_source && n.balance_applied && !n.blocked);
        assert_eq!(ids(&n), ["D05", "D01", "D04", "D13"]);
        assert_invariants(&n);
    }

    #[test]
    fn no_keywords_gives_neutral_frequency() {
        let n = nav().navigate("the of and");
        assert!(n.dimensions.is_empty() && n.keywords.is_empty());
        assert_eq!(n.activated_count, 0);
        assert_eq!(n.dominant_frequency_hz, 0.5);
        // Urgency still counts without any dimension: 0.5 + 0.5 × 2.
        let n = nav().navigate("asap hurry");
        assert!(n.dimensions.is_empty());
        assert_eq!(n.dominant_frequency_hz, 1.5);
    }

    #[test]
    fn serialized_shape() {
        let value = serde_json::to_value(nav().navigate(EMOTIONAL)).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = [
            "keywords",
            "dimensions",
            "activated_count",
            "dominant_frequency_hz",
            "return_to_source",
            "balance_applied",
            "blocked",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(
            value["dimensions"][0],
            serde_json::json!({
                "id": "D01", "name": "Emotion", "score": 3,
                "confidence": 0.875, "frequency_hz": 1.0
            })
        );
    }

    #[test]
    fn nasty_inputs_never_panic() {
        let long_words: String = "meaning forest code sad urgent ".repeat(400);
        let long_distinct: String = (0..3000).map(|i| format!("w{i} ")).collect();
        let nasty: Vec<String> = vec![
            String::new(),
            " ".into(),
            "\t\n\r".into(),
            "?!.,;:'\"()[]{}<>/\\|@#$%^&*-_=+`~".into(),
            "''''".into(),
            "🙂🔥💥👨‍👩‍👧‍👦🏳️‍🌈".into(),
            "sad😢lonely🌲forest".into(),
            "e\u{301}\u{302}\u{303} \u{301}\u{301}\u{301}".into(),
            "\u{200B}\u{200D}\u{FEFF}\u{202E}".into(),
            "مرحبا بالعالم ما معنى الحياة".into(),
            "שלום עולם".into(),
            "\u{202E}kcah\u{202C} hack".into(),
            "\0".into(),
            "a\0b\0\0sad\0".into(),
            "İIıi ǅ ΣΑΣ ß ﬃ".into(),
            "💥".repeat(10_000),
            "a".repeat(10_000),
            "İ".repeat(10_000),
            "\u{301}".repeat(10_000),
            "9".repeat(20_000),
            long_words,
            long_distinct,
            "\u{10FFFF}\u{E000}\u{FFFD}".into(),
        ];
        for q in &nasty {
            let n = nav().navigate(q);
            assert_invariants(&n);
            assert_eq!(n, nav().navigate(q));
        }
    }

    #[test]
    fn long_queries_keep_every_distinct_keyword() {
        // Speed is measured by the `navigation` benchmark, not asserted here;
        // this checks that a 200 kB query is handled whole and correctly.
        let words = [
            "meaning", "forest", "code", "sad", "friends", "art", "ethics", "calm", "the",
        ];
        let mut q = String::new();
        let mut i = 0usize;
        while q.len() < 200_000 {
            q.push_str(words[i % words.len()]);
            q.push_str(&format!(" x{i}, "));
            i += 1;
        }
        let n = nav().navigate(&q);
        assert!(n.return_to_source);
        assert!(n.keywords.len() > 10_000);
        assert_invariants(&n);
    }

    #[test]
    fn pseudo_random_queries_keep_invariants() {
        // Fixed-seed xorshift over a pool mixing keywords, urgency words,
        // stopwords, punctuation and odd characters.
        let pool = [
            "feel", "sad", "think", "plan", "friends", "today", "now", "meaning", "code", "rust",
            "art", "ethics", "self", "forest", "happy", "calm", "hack", "urgent", "asap",
            "critical", "the", "of", "don't", "İ", "🙂", "\u{301}", "\0", ",", "...", "שלום", "  ",
            "Forest", "CODE", "exploit",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2_000 {
            let len = usize::try_from(next() % 24).unwrap();
            let mut q = String::new();
            for _ in 0..len {
                let pick = usize::try_from(next() % pool.len() as u64).unwrap();
                q.push_str(pool[pick]);
                if next() % 3 != 0 {
                    q.push(' ');
                }
            }
            let n = nav().navigate(&q);
            assert_invariants(&n);
            // The one-pass scan and the reference definition agree.
            assert_eq!(n.keywords, extract_keywords(&q, nav().stopwords()), "{q:?}");
        }
    }

    #[test]
    fn scores_count_distinct_table_words_once_per_dimension() {
        // "code" repeated, in several cases, is one keyword and scores once;
        // an unknown word is a keyword that scores nothing.
        let n = nav().navigate("code CODE Code zzyzx zzyzx");
        assert_eq!(n.keywords, ["code", "zzyzx"]);
        let technical = n.dimensions.iter().find(|d| d.id == "D07").unwrap();
        assert_eq!(technical.score, 1);
        // Every meaningful word has its own id: the bit sets cannot collide.
        let mut ids: Vec<usize> = nav()
            .words
            .values()
            .filter_map(|w| match w {
                Word::Meaningful { id, .. } => Some(*id),
                Word::Stop => None,
            })
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..nav().meaningful_count).collect::<Vec<_>>());
    }

    #[test]
    fn invalid_data_is_rejected() {
        assert!(load(&embedded_value()).is_ok());

        let err = Navigator::from_json("{").unwrap_err();
        assert!(
            err.to_string().starts_with("invalid navigation data: JSON"),
            "{err}"
        );
        assert!(Navigator::from_json("").is_err());
        assert!(Navigator::from_json("[]").is_err());

        type Edit = fn(&mut serde_json::Value);
        let cases: &[(&str, Edit)] = &[
            ("expected 14 dimensions", |v| {
                v["dimensions"].as_array_mut().unwrap().pop();
            }),
            ("expected \"D01\"", |v| {
                v["dimensions"].as_array_mut().unwrap().swap(0, 1);
            }),
            ("empty keyword table", |v| {
                v["dimensions"][3]["keywords"] = serde_json::json!([]);
            }),
            ("empty name", |v| v["dimensions"][0]["name"] = " ".into()),
            ("is a stopword", |v| {
                v["dimensions"][5]["keywords"][0] = "the".into();
            }),
            ("is a stopword", |v| v["urgency"]["words"][0] = "and".into()),
            ("not a lowercase alphanumeric word", |v| {
                v["dimensions"][0]["keywords"][0] = "Feel".into();
            }),
            ("not a lowercase alphanumeric word", |v| {
                v["dimensions"][0]["keywords"][0] = "free will".into();
            }),
            ("not a lowercase alphanumeric word", |v| {
                v["stopwords"][0] = "".into();
            }),
            ("listed twice", |v| {
                v["dimensions"][0]["keywords"][1] = "feel".into();
            }),
            ("outside", |v| {
                v["dimensions"][0]["frequency_hz"] = 0.0.into()
            }),
            ("outside", |v| {
                v["dimensions"][0]["frequency_hz"] = 9.0.into()
            }),
            ("outside", |v| v["urgency"]["boost_hz"] = (-1.0).into()),
            ("unknown field", |v| v["extra"] = true.into()),
            ("unknown field", |v| v["dimensions"][0]["weight"] = 1.into()),
        ];
        for (expected, edit) in cases {
            let mut v = embedded_value();
            edit(&mut v);
            let err = load(&v).unwrap_err();
            assert!(err.to_string().contains(expected), "{expected}: {err}");
        }
    }

    /// xorshift64 with a fixed seed: reproducible pseudo-random inputs
    /// without a dependency.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// A number in `0..n`.
        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }

        /// `len` bytes picked from `bytes`, as a string.
        fn string(&mut self, bytes: &[u8], len: usize) -> String {
            (0..len).map(|_| char::from(*self.pick(bytes))).collect()
        }
    }

    #[test]
    fn ascii_path_matches_unicode_path() {
        // Table words of every kind, from the data itself.
        let raw: RawData = serde_json::from_str(EMBEDDED_DATA).unwrap();
        let mut words = raw.stopwords;
        words.extend(raw.urgency.words);
        for dim in raw.dimensions {
            words.extend(dim.keywords);
        }
        let alphanumeric: Vec<u8> = (b'0'..=b'9')
            .chain(b'a'..=b'z')
            .chain(b'A'..=b'Z')
            .collect();
        let ascii: Vec<u8> = (0..0x80).collect();
        // "" glues two parts into one token.
        let separators: &[&str] = &[
            " ", " ", "  ", ", ", ". ", "'", "-", "\n", "\t", "?!", "\0", "",
        ];
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        for case in 0..3_000 {
            // Every tenth query is long, so that tokens cross bitmap words.
            let parts = rng.below(if case % 10 == 0 { 400 } else { 30 });
            let mut query = String::new();
            for _ in 0..parts {
                let word = rng.pick(&words);
                match rng.below(10) {
                    0..=4 => query.push_str(word),
                    5 => query.push_str(&word.to_ascii_uppercase()),
                    // Mixed case.
                    6 => query.extend(word.chars().map(|c| {
                        if rng.below(2) == 0 {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        }
                    })),
                    // Around the 16 bytes a packed key holds.
                    7 => {
                        let len = 1 + rng.below(20);
                        query.push_str(&rng.string(&alphanumeric, len));
                    }
                    // Longer than a bitmap word.
                    8 => {
                        let len = 50 + rng.below(100);
                        query.push_str(&rng.string(&alphanumeric, len));
                    }
                    _ => {
                        let len = 1 + rng.below(4);
                        query.push_str(&rng.string(&ascii, len));
                    }
                }
                let separator = rng.pick(separators);
                query.push_str(separator);
            }
            assert!(query.is_ascii());
            let fast = nav().navigation(nav().scan_ascii(&query));
            let general = nav().navigation(nav().scan_unicode(&query));
            assert_eq!(fast, general, "{query:?}");
            assert_eq!(nav().navigate(&query), general, "{query:?}");
        }
    }

    #[test]
    fn alphanumeric_bits_classify_every_ascii_byte() {
        let expected = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        for x in 0..0x80 {
            for y in 0..0x80 {
                let chunk = [x, y, y, x, x, y, x, y];
                let bits = alphanumeric_bits(chunk);
                for (i, &b) in chunk.iter().enumerate() {
                    assert_eq!(bits >> i & 1 == 1, expected(b), "{chunk:?}");
                }
            }
        }
    }

    #[test]
    fn alphanumeric_bitmap_covers_every_byte_and_no_more() {
        let ascii: Vec<u8> = (0..0x80).collect();
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for len in (0..200).chain([255, 256, 257, 1000]) {
            let text = rng.string(&ascii, len).to_ascii_lowercase();
            let bitmap = alphanumeric_bitmap(text.as_bytes());
            assert!(bitmap.len() * 64 >= len);
            for i in 0..bitmap.len() * 64 {
                let expected = text
                    .as_bytes()
                    .get(i)
                    .is_some_and(u8::is_ascii_alphanumeric);
                assert_eq!(
                    bitmap[i / 64] >> (i % 64) & 1 == 1,
                    expected,
                    "{text:?} {i}"
                );
            }
        }
    }

    #[test]
    fn for_each_run_gives_the_runs_of_set_bits() {
        fn naive(bitmap: &[u64]) -> Vec<Range<usize>> {
            let bits = bitmap.len() * 64;
            let set = |i: usize| i < bits && bitmap[i / 64] >> (i % 64) & 1 == 1;
            let mut runs = Vec::new();
            let mut start = None;
            for i in 0..=bits {
                match (set(i), start) {
                    (true, None) => start = Some(i),
                    (false, Some(s)) => {
                        runs.push(s..i);
                        start = None;
                    }
                    _ => {}
                }
            }
            runs
        }
        let patterns = [
            0,
            u64::MAX,
            1,
            1 << 63,
            0x5555_5555_5555_5555,
            u64::MAX << 1,
        ];
        let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
        for _ in 0..5_000 {
            let words = rng.below(6);
            let bitmap: Vec<u64> = (0..words)
                .map(|_| match rng.below(3) {
                    0 => *rng.pick(&patterns),
                    1 => rng.next(),
                    _ => rng.next() | rng.next() | rng.next(),
                })
                .collect();
            let mut runs = Vec::new();
            for_each_run(&bitmap, |run| runs.push(run));
            assert_eq!(runs, naive(&bitmap), "{bitmap:x?}");
        }
    }

    #[test]
    fn pack_at_is_pack_of_the_run() {
        let bytes = b"abcdefghijklmnopqrstuvwxyz0123456789";
        for start in 0..bytes.len() {
            // Up to 17 bytes, near the end too, where no 16-byte load fits.
            for end in start + 1..=bytes.len().min(start + 17) {
                let expected = pack(&bytes[start..end]);
                assert_eq!(expected.is_some(), end - start <= 16);
                assert_eq!(pack_at(bytes, start..end), expected, "{start}..{end}");
            }
        }
        // Tokens have no NUL, so the padding cannot make two of them equal.
        assert_ne!(pack(b"ab"), pack(b"abc"));
    }
}
