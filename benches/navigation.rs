//! Microbenchmarks of the navigation engine (divan): `cargo bench --bench navigation`.
//!
//! `bench/run.sh` runs this too and puts the medians in its report. Inputs are
//! fixed strings (no randomness), so runs are comparable:
//! - `short`: a typical one-line question;
//! - `chars_2000`: the body of the HTTP `query-2k` cases (same text);
//! - `chars_10000`: the longest query the API accepts (MAX_QUERY_CHARS);
//! - `from_embedded`: parsing and indexing `dimensions.json` (paid once at startup).

use divan::{Bencher, black_box};
use jessy::core::navigation::Navigator;

fn main() {
    divan::main();
}

/// The short query of the HTTP benchmark.
const SHORT: &str = "What is the meaning of life and existence?";

/// A sentence mixing ordinary words, keywords of several dimensions and
/// stopwords; repeated (and cut on a char boundary) to the wanted length.
const SENTENCE: &str = "I feel anxious about the future of my family and friends, \
    so I think about ethics, art and the meaning of life while I debug this code. ";

/// `SENTENCE` repeated to exactly `chars` characters (ASCII, so bytes too).
/// `bench/bench.py` builds the HTTP `query-2k` body the same way.
fn long_query(chars: usize) -> String {
    SENTENCE.chars().cycle().take(chars).collect()
}

fn navigator() -> Navigator {
    Navigator::from_embedded().expect("the embedded dimensions.json is valid")
}

#[divan::bench]
fn short(bencher: Bencher) {
    let nav = navigator();
    bencher.bench_local(|| nav.navigate(black_box(SHORT)));
}

#[divan::bench]
fn chars_2000(bencher: Bencher) {
    let nav = navigator();
    let query = long_query(2_000);
    bencher
        .counter(divan::counter::BytesCount::of_str(&query))
        .bench_local(|| nav.navigate(black_box(&query)));
}

#[divan::bench]
fn chars_10000(bencher: Bencher) {
    let nav = navigator();
    let query = long_query(10_000);
    bencher
        .counter(divan::counter::BytesCount::of_str(&query))
        .bench_local(|| nav.navigate(black_box(&query)));
}

#[divan::bench]
fn from_embedded() -> Navigator {
    navigator()
}
