//! The defects of issue 10, each pinned by a run of the machine against scripted replies.

use super::*;
use crate::lifecycle::TokenEntry;
use crate::settings::{self, Settings};
use crate::status::{RelistRequest, StatusSnapshot};
use crate::UnixMillis;
use std::collections::BTreeMap;

const T0: UnixMillis = 1_750_000_000_000;

fn settings() -> Settings {
    settings::load(|k| {
        Ok(match k {
            "clever_token_url" => Some("https://clever.test/oauth/tokens".into()),
            _ => None,
        })
    })
    .expect("defaults are legal")
}

fn secrets(fp: u64) -> SecretsView {
    SecretsView {
        generation: 0,
        fingerprint: Some(fp),
    }
}

fn listing(ids: &[&str], next: Option<&str>) -> HttpResult {
    let data: Vec<String> = ids
        .iter()
        .map(|id| {
            format!(r#"{{"owner":{{"type":"district","id":"{id}"}},"access_token":"tok-{id}"}}"#)
        })
        .collect();
    let next = next.map_or(String::new(), |n| {
        format!(r#",{{"rel":"next","uri":"{n}"}}"#)
    });
    let body = format!(
        r#"{{"data":[{}],"links":[{{"rel":"self","uri":"/x"}}{next}]}}"#,
        data.join(",")
    );
    Ok(Reply {
        status: 200,
        headers: vec![],
        body: body.into_bytes(),
    })
}

fn status(code: u16) -> HttpResult {
    Ok(Reply {
        status: code,
        headers: vec![],
        body: b"{}".to_vec(),
    })
}

/// The store between runs.
#[derive(Default)]
struct Store {
    cycle: Cycle,
    status: StatusSnapshot,
    tokens: BTreeMap<String, TokenEntry>,
    requests: Vec<(UnixMillis, Request)>,
}

impl Store {
    /// One run at `now`; `answer` replies to each request. Returns the next due instant.
    fn run(
        &mut self,
        now: UnixMillis,
        s: &Settings,
        fp: u64,
        relist: Option<RelistRequest>,
        mut answer: impl FnMut(&Request) -> HttpResult,
    ) -> UnixMillis {
        let inputs = Inputs {
            now,
            settings: s.clone(),
            secrets: secrets(fp),
            relist,
            random: [0.5, 0.5],
        };
        let mut m = Machine::start(
            inputs,
            std::mem::take(&mut self.cycle),
            std::mem::take(&mut self.status),
            self.tokens.values().cloned().collect(),
        );
        while let Some(a) = m.poll_action() {
            match a {
                Action::Http(r) => {
                    self.requests.push((now, r.clone()));
                    let reply = answer(&r);
                    m.on_http(now, reply);
                }
                Action::PutToken(e) => {
                    self.tokens.insert(e.district_id.clone(), e);
                }
                Action::DeleteToken(id) => {
                    self.tokens.remove(&id);
                }
                Action::Log(_) => {}
            }
        }
        let (f, _) = m.finish(now);
        self.cycle = f.cycle;
        self.status = f.status;
        f.next_due_at
    }

    fn token_calls(&self) -> Vec<UnixMillis> {
        self.requests
            .iter()
            .filter(|(_, r)| matches!(r, Request::ListPage { url: None }))
            .map(|(t, _)| *t)
            .collect()
    }
}

fn ok_or_probe(ids: &'static [&'static str]) -> impl FnMut(&Request) -> HttpResult {
    move |r| match r {
        Request::ListPage { .. } => listing(ids, None),
        _ => status(200),
    }
}

#[test]
fn defect_1_a_permanent_error_at_refresh_time_waits_the_cooldown() {
    let s = settings();
    let mut store = Store::default();
    let refresh = store.run(T0, &s, 1, None, ok_or_probe(&["a"]));
    assert_eq!(refresh, T0 + 2_700_000, "exactly 75 % of the hour");
    // At the refresh point Clever answers 400: the next call is a cooldown away, not now.
    let next = store.run(refresh, &s, 1, None, |_| status(400));
    assert_eq!(next, refresh + s.retry_max_delay_ms);
    // A run in between (a health request) does not call Clever.
    store.run(refresh + 10, &s, 1, None, |_| status(400));
    assert_eq!(store.token_calls().len(), 2);
}

#[test]
fn defect_1_giving_up_after_the_retries_honours_the_cooldown_and_the_hint() {
    let s = settings();
    let mut store = Store::default();
    let mut now = T0;
    let mut calls = 0;
    for _ in 0..=s.retry_max {
        now = store.run(now, &s, 1, None, |_| status(503));
        calls += 1;
    }
    assert_eq!(store.token_calls().len(), calls);
    let last = *store.token_calls().last().expect("calls");
    assert_eq!(
        now,
        last + s.retry_max_delay_ms,
        "a new cycle after the cooldown, not at once"
    );
}

#[test]
fn defect_4_every_page_is_followed_and_nothing_listed_is_deleted() {
    let s = settings();
    let mut store = Store::default();
    store.run(T0, &s, 1, None, |r| match r {
        Request::ListPage { url: None } => listing(
            &["a", "b"],
            Some("/oauth/tokens?owner_type=district&starting_after=b"),
        ),
        Request::ListPage { url: Some(u) } if u.ends_with("after=b") => listing(
            &["c", "d"],
            Some("/oauth/tokens?owner_type=district&starting_after=d"),
        ),
        Request::ListPage { .. } => listing(&["e"], None),
        _ => status(200),
    });
    assert_eq!(
        store.tokens.keys().collect::<Vec<_>>(),
        ["a", "b", "c", "d", "e"]
    );
    let pages: Vec<&Request> = store
        .requests
        .iter()
        .map(|(_, r)| r)
        .filter(|r| matches!(r, Request::ListPage { .. }))
        .collect();
    assert_eq!(pages.len(), 3);
    assert_eq!(
        pages[1],
        &Request::ListPage {
            url: Some(
                "https://clever.test/oauth/tokens?owner_type=district&starting_after=b".into()
            )
        }
    );
}

#[test]
fn defect_4_one_empty_listing_deletes_nothing_a_second_confirms() {
    let s = settings();
    let mut store = Store::default();
    let refresh = store.run(T0, &s, 1, None, ok_or_probe(&["a", "b"]));
    let again = store.run(refresh, &s, 1, None, ok_or_probe(&[]));
    assert_eq!(store.tokens.len(), 2, "one empty answer wipes nothing");
    assert_eq!(again, refresh + s.retry_base_ms);
    store.run(again, &s, 1, None, ok_or_probe(&[]));
    assert!(store.tokens.is_empty(), "confirmed by a second listing");
}

#[test]
fn defect_4_a_skipped_entry_keeps_its_token() {
    let s = settings();
    let mut store = Store::default();
    let refresh = store.run(T0, &s, 1, None, ok_or_probe(&["a", "b"]));
    store.run(refresh, &s, 1, None, |r| match r {
        Request::ListPage { .. } => Ok(Reply {
            status: 200,
            headers: vec![],
            body: br#"{"data":[{"owner":{"type":"district","id":"a"},"access_token":"tok-a2"},{"owner":{"type":"district","id":"b"}}]}"#.to_vec(),
        }),
        _ => status(200),
    });
    assert!(
        store.tokens.contains_key("b"),
        "b's entry was malformed, not absent"
    );
}

#[test]
fn defect_5_a_probe_429_holds_reprobes_and_the_relisting() {
    let s = settings();
    let mut store = Store::default();
    store.run(T0, &s, 1, None, |r| match r {
        Request::ListPage { .. } => listing(&["a"], None),
        _ => Ok(Reply {
            status: 429,
            headers: vec![("Retry-After".into(), b"600".to_vec())],
            body: b"{}".to_vec(),
        }),
    });
    let held = store.status.districts["a"].rate_limited_until;
    assert_eq!(held, Some(T0 + 600_000));
    assert!(
        store.cycle.refresh_due_at >= T0 + 600_000,
        "the early relisting waits for the hint"
    );
}

#[test]
fn defect_5_a_hint_beyond_the_maximum_wait_is_not_undercut() {
    let s = settings();
    let mut store = Store::default();
    let hint_s = s.rate_limit_max_wait_secs * 3;
    let next = store.run(T0, &s, 1, None, |_| {
        Ok(Reply {
            status: 429,
            headers: vec![("Retry-After".into(), hint_s.to_string().into_bytes())],
            body: b"{}".to_vec(),
        })
    });
    assert_eq!(next, T0 + hint_s * 1000);
    assert_eq!(
        store.status.service.rate_limited_until,
        Some(T0 + hint_s * 1000)
    );
}

#[test]
fn defect_6_refresh_is_exactly_75_percent_and_success_time_is_recorded() {
    let s = settings();
    assert_eq!(s.refresh_jitter, 0.0, "jitter is opt-in");
    let mut store = Store::default();
    store.run(T0, &s, 1, None, ok_or_probe(&["a"]));
    assert_eq!(store.tokens["a"].refresh_at, T0 + 2_700_000);
    assert_eq!(store.status.service.last_successful_auth, Some(T0));
}

#[test]
fn defect_6_a_failing_probe_verdict_stands_across_a_new_listing() {
    let s = settings();
    let mut store = Store::default();
    let next = store.run(T0, &s, 1, None, |r| match r {
        Request::ListPage { .. } => listing(&["a"], None),
        _ => status(503),
    });
    assert_eq!(store.status.districts["a"].consecutive_failures, 1);
    // The early relisting: the listing itself succeeds; the district stays failing until its
    // own probe says otherwise.
    let inputs_now = next;
    let mut saw_failing_after_listing = false;
    store.run(inputs_now, &s, 1, None, |r| match r {
        Request::ListPage { .. } => listing(&["a"], None),
        _ => {
            saw_failing_after_listing = true;
            status(200)
        }
    });
    assert!(saw_failing_after_listing, "re-probed");
    assert_eq!(store.status.districts["a"].consecutive_failures, 0);
}

#[test]
fn defect_6_rate_limiting_keeps_its_start_across_retries() {
    let s = settings();
    let mut store = Store::default();
    let mut now = T0;
    for _ in 0..4 {
        now = store.run(now, &s, 1, None, |_| {
            Ok(Reply {
                status: 429,
                headers: vec![("Retry-After".into(), b"100".to_vec())],
                body: b"{}".to_vec(),
            })
        });
    }
    assert_eq!(store.status.service.rate_limited_since, Some(T0));
}

#[test]
fn spin_a_new_secret_is_tried_as_soon_as_seen_after_a_401() {
    let s = settings();
    let mut store = Store::default();
    let next = store.run(T0, &s, 1, None, |_| status(401));
    assert_eq!(
        next,
        T0 + CREDENTIALS_RECHECK_MS,
        "rechecked soon, not in 5 minutes"
    );
    // Same secret at the recheck: no call.
    store.run(next, &s, 1, None, |_| status(401));
    assert_eq!(store.token_calls().len(), 1);
    // Another secret (same generation 0, as under Spin): tried at once.
    store.run(next + 1_000, &s, 2, None, ok_or_probe(&["a"]));
    assert_eq!(store.token_calls().len(), 2);
    assert!(store.tokens.contains_key("a"));
}

#[test]
fn a_relist_request_is_served_once_and_spaced() {
    let s = settings();
    let mut store = Store::default();
    store.run(T0, &s, 1, None, ok_or_probe(&["a"]));
    let req = RelistRequest {
        at: T0 + 500,
        district: Some("a".into()),
        reason: "token_rejected".into(),
    };
    // Before the spacing: not yet.
    assert!(!store.cycle.due(T0 + 600, &secrets(1), Some(&req)));
    let at = T0 + s.retry_base_ms;
    assert!(store.cycle.due(at, &secrets(1), Some(&req)));
    store.run(at, &s, 1, Some(req.clone()), ok_or_probe(&["a"]));
    assert_eq!(store.token_calls(), [T0, at]);
    // Served: the same request does not make another listing due.
    assert!(!store.cycle.due(at + 60_000, &secrets(1), Some(&req)));
}
