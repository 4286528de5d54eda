//! The health-view signal (see `clever_auth_core::health_view`): the host alone decides, per
//! listener, whether a request may see the per-district detail.

use clever_auth_core::health_view::{DETAIL_HEADER, DETAIL_HEADER_VALUE};
use hyper::header::{HeaderMap, HeaderValue};

/// What one listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HealthView {
    /// The public answer: status, `lastSuccessfulAuth`, `error`, counts.
    #[default]
    Public,
    /// The per-district detail (a loopback listener, or the operator's `--health-detail`).
    Detail,
}

/// Removes whatever the client sent under the signal's name, then sets the listener's own
/// signal: a client can never ask for the detail by sending the header itself.
pub fn apply(headers: &mut HeaderMap, view: HealthView) {
    headers.remove(DETAIL_HEADER);
    if view == HealthView::Detail {
        headers.insert(DETAIL_HEADER, HeaderValue::from_static(DETAIL_HEADER_VALUE));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_header_never_survives_on_a_public_listener() {
        let mut h = HeaderMap::new();
        h.append(DETAIL_HEADER, HeaderValue::from_static("detail"));
        h.append(DETAIL_HEADER, HeaderValue::from_static("DETAIL"));
        apply(&mut h, HealthView::Public);
        assert!(h.get(DETAIL_HEADER).is_none());
    }

    #[test]
    fn a_detail_listener_sets_exactly_one_value() {
        let mut h = HeaderMap::new();
        h.append(DETAIL_HEADER, HeaderValue::from_static("public"));
        apply(&mut h, HealthView::Detail);
        let values: Vec<_> = h.get_all(DETAIL_HEADER).iter().collect();
        assert_eq!(values, [DETAIL_HEADER_VALUE]);
    }
}
