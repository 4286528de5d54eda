//! What the public health answer reveals, and who gets the per-district detail: the real host,
//! the real component, a fake Clever.

use clever_auth_tests::fake_clever::FakeClever;
use clever_auth_tests::host_process::HostProcess;
use clever_auth_tests::http_client;
use clever_auth_tests::scenario::{self, two_districts, wait_health, HEALTH};
use std::time::Duration;

const READY: Duration = Duration::from_secs(20);
const SIGNAL: &str = "clever-auth-health-view";

async fn host_for(
    fake: &FakeClever,
    public: bool,
    env: &[(&str, &str)],
) -> anyhow::Result<HostProcess> {
    let mut opts = scenario::host_options(fake, env, &[], true);
    if public {
        opts = opts.public_health();
    }
    HostProcess::start(opts).await
}

/// Waits until every one of `n` districts passes, as the public answer counts them.
async fn all_pass(host: &HostProcess, n: u64) -> anyhow::Result<scenario::Health> {
    wait_health(host, READY, |h| {
        h.body["status"] == "pass" && h.body["districts"]["pass"] == n
    })
    .await
}

#[tokio::test]
async fn the_public_answer_names_no_district_and_a_client_cannot_ask_for_more() -> anyhow::Result<()>
{
    let fake = FakeClever::start(two_districts()).await?;
    let host = host_for(&fake, true, &[("WEBSITE_INSTANCE_ID", "inst-e2e-42")]).await?;
    let h = all_pass(&host, 2).await?;
    assert_eq!(h.status, 200);
    assert_eq!(
        h.body["districts"],
        serde_json::json!({"total": 2, "pass": 2, "warn": 0, "fail": 0})
    );
    assert_eq!(h.body["instanceId"], "inst-e2e-42");
    assert!(h.body.get("checks").is_none(), "{}", h.body);

    // Asking for the detail, with any spelling of the header, changes nothing.
    for value in ["detail", "DETAIL"] {
        let reply = http_client::request_with_headers(
            "GET",
            &host.url(&format!("{HEALTH}?page=1")),
            &[(SIGNAL, value)],
        )
        .await?;
        let text = reply.text();
        for secret_ish in ["d-alpha", "d-beta", "checks", "127.0.0.1", "rateLimit"] {
            assert!(!text.contains(secret_ish), "{secret_ish} in {text}");
        }
    }
    // The host's own lines carry the instance too.
    let logs = host.output.text();
    assert!(
        logs.lines()
            .filter(|l| l.starts_with('{'))
            .all(|l| l.contains(r#""instance_id":"inst-e2e-42""#)),
        "{logs}"
    );
    Ok(())
}

#[tokio::test]
async fn the_public_body_does_not_grow_with_the_number_of_districts() -> anyhow::Result<()> {
    let mut sizes = Vec::new();
    for n in [2usize, 600] {
        let fake = FakeClever::start(clever_auth_tests::fake_clever::FakeCleverConfig {
            district_ids: vec![],
            generated_districts: n,
            ..Default::default()
        })
        .await?;
        let host = host_for(&fake, true, &[("CLEVER_PROBE_BATCH", "1000")]).await?;
        let h = all_pass(&host, n as u64).await?;
        sizes.push(h.body.to_string().len());
    }
    // Only digits may differ (the counts, "2" against "600", and the error's and times'
    // figures); one district's entry alone would add over 100 bytes.
    assert!(
        sizes[1].abs_diff(sizes[0]) <= 16,
        "public body sizes {sizes:?}"
    );
    assert!(sizes[1] < 1024, "public body sizes {sizes:?}");
    Ok(())
}

#[tokio::test]
async fn a_detail_listener_serves_every_district_page_by_page() -> anyhow::Result<()> {
    let fake = FakeClever::start(clever_auth_tests::fake_clever::FakeCleverConfig {
        district_ids: vec![],
        generated_districts: 260,
        ..Default::default()
    })
    .await?;
    let host = host_for(&fake, false, &[("CLEVER_PROBE_BATCH", "1000")]).await?;
    let merged = all_pass(&host, 260).await?;
    assert_eq!(
        merged.district_ids().len(),
        260,
        "the helper follows the pages"
    );
    let page = |n: u32| {
        let url = host.url(&format!("{HEALTH}?page={n}"));
        async move {
            anyhow::Ok(scenario::Health {
                status: 200,
                body: http_client::get(&url).await?.json()?,
            })
        }
    };
    let first = page(1).await?;
    assert_eq!(first.body["districtsPage"]["pages"], 2);
    let mut seen = first.district_ids();
    assert_eq!(seen.len(), 250);
    let second = page(2).await?;
    assert_eq!(second.district_ids().len(), 10);
    seen.extend(second.district_ids());
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 260);
    assert!(first.body["checks"]["clever:credentials"].is_array());
    Ok(())
}
