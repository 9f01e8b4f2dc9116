//! The BDD suite: `tests/features/*.feature` run by cucumber inside one
//! ordinary test, so `cargo nextest run` (and coverage) run it with the rest
//! and a failing step fails the run.
//!
//! Locally each scenario starts its own core and gateway on loopback. With
//! `JESSY_STACK_API_URL` set (the compose `test` profile), the scenarios run
//! against that running gateway instead, and those tagged `@local` (which
//! need to reconfigure or stop services) are left out.

mod steps;
mod world;

#[allow(dead_code)]
#[path = "../integration/helpers.rs"]
mod helpers;

use cucumber::World as _;

fn has_tag(tags: &[String], tag: &str) -> bool {
    tags.iter().any(|t| t == tag)
}

#[tokio::test(flavor = "multi_thread")]
async fn features() {
    let dir = std::env::var("JESSY_FEATURES_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/features").to_owned());
    let remote = world::remote_api().is_some();
    world::JessyWorld::cucumber()
        .with_default_cli()
        .fail_on_skipped()
        .max_concurrent_scenarios(8)
        .filter_run_and_exit(dir, move |feature, _, scenario| {
            !(remote && (has_tag(&feature.tags, "local") || has_tag(&scenario.tags, "local")))
        })
        .await;
}
