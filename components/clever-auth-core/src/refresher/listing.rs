//! A district-token listing across its pages, and what a complete one means for the cache.

use crate::clever_wire::{DistrictToken, DistrictTokenListing, SkipReason};
use std::collections::BTreeSet;

/// More pages than this is taken as a server that loops, not as a listing.
pub const MAX_PAGES: usize = 1_000;

/// The pages of one listing seen so far.
#[derive(Debug, Default)]
pub struct Pages {
    pub tokens: Vec<DistrictToken>,
    /// Districts named by an entry that could not be used: their tokens stay.
    pub skipped_ids: BTreeSet<String>,
    /// An entry could not even be tied to a district: nothing is deleted on this listing.
    pub unattributed_skip: bool,
    pub pages: usize,
    seen_urls: BTreeSet<String>,
}

impl Pages {
    /// Adds one page; returns the absolute URL of the next page, or `Ok(None)` when this was
    /// the last one. The next link must stay on the token URL's origin: the next request
    /// carries the client credentials.
    pub fn add(
        &mut self,
        token_url: &str,
        page: DistrictTokenListing,
    ) -> Result<Option<String>, String> {
        self.pages += 1;
        for skipped in page.skipped {
            match skipped.district_id {
                Some(id) => {
                    self.skipped_ids.insert(id);
                }
                // Entries owned by something other than a district are not ours to keep.
                None if matches!(skipped.reason, SkipReason::NotDistrictOwner { .. }) => {}
                None => self.unattributed_skip = true,
            }
        }
        // A duplicate kept from an earlier page wins over a later one, as within a page.
        for token in page.tokens {
            if !self
                .tokens
                .iter()
                .any(|t| t.district_id == token.district_id)
            {
                self.tokens.push(token);
            }
        }
        let Some(next) = page.next else {
            return Ok(None);
        };
        let base = url::Url::parse(token_url).map_err(|e| format!("clever_token_url: {e}"))?;
        let next = base
            .join(&next)
            .map_err(|e| format!("links[rel=next] is not a URL: {e}"))?;
        if next.origin() != base.origin() {
            return Err("links[rel=next] points away from the token URL's origin".into());
        }
        if self.pages >= MAX_PAGES || !self.seen_urls.insert(next.to_string()) {
            return Err(format!(
                "the listing does not end (page {} links to a page already seen or past {MAX_PAGES})",
                self.pages
            ));
        }
        Ok(Some(next.into()))
    }
}

/// Which known districts a complete listing removes: those it lacks, unless an entry naming
/// them was skipped, or an entry could not be attributed at all.
pub fn removable(known: &BTreeSet<String>, kept: &[DistrictToken], pages: &Pages) -> Vec<String> {
    if pages.unattributed_skip {
        return Vec::new();
    }
    let listed: BTreeSet<&str> = kept.iter().map(|t| t.district_id.as_str()).collect();
    known
        .iter()
        .filter(|k| !listed.contains(k.as_str()) && !pages.skipped_ids.contains(*k))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clever_wire::SkippedEntry;
    use crate::secret::AccessToken;

    fn tok(id: &str) -> DistrictToken {
        DistrictToken {
            district_id: id.into(),
            token: AccessToken::new(format!("t-{id}")),
            scopes: vec![],
            created: None,
        }
    }

    const URL: &str = "https://clever.example/oauth/tokens?owner_type=district";

    #[test]
    fn follows_relative_next_links_on_the_same_origin_only() {
        let mut pages = Pages::default();
        let page = DistrictTokenListing {
            tokens: vec![tok("a")],
            skipped: vec![],
            next: Some("/oauth/tokens?owner_type=district&starting_after=a".into()),
        };
        assert_eq!(
            pages.add(URL, page).expect("ok").as_deref(),
            Some("https://clever.example/oauth/tokens?owner_type=district&starting_after=a")
        );
        let away = DistrictTokenListing {
            next: Some("https://evil.example/steal".into()),
            ..Default::default()
        };
        assert!(pages.add(URL, away).is_err());
    }

    #[test]
    fn a_looping_next_link_is_an_error() {
        let mut pages = Pages::default();
        let page = || DistrictTokenListing {
            next: Some("/p2".into()),
            ..Default::default()
        };
        assert!(pages.add(URL, page()).expect("first").is_some());
        assert!(pages.add(URL, page()).is_err());
    }

    #[test]
    fn skipped_entries_keep_their_district() {
        let mut pages = Pages::default();
        let page = DistrictTokenListing {
            tokens: vec![tok("a")],
            skipped: vec![SkippedEntry {
                index: 1,
                district_id: Some("b".into()),
                reason: SkipReason::MissingToken,
            }],
            next: None,
        };
        pages.add(URL, page).expect("ok");
        let known: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
        assert_eq!(removable(&known, &pages.tokens, &pages), ["c"]);
        pages.unattributed_skip = true;
        assert!(removable(&known, &pages.tokens, &pages).is_empty());
    }
}
