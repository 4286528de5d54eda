//! Order statistics over the measured timings.

pub(super) fn median(v: &mut [f64]) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// The most timestamps (ms, sorted) in any window of `width` ms.
pub(super) fn max_in_window(times: &[f64], width: f64) -> usize {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= width {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts() {
        assert_eq!(max_in_window(&[], 100.0), 0);
        assert_eq!(max_in_window(&[0.0, 50.0, 99.0, 100.0, 150.0], 100.0), 3);
        assert_eq!(max_in_window(&[0.0, 200.0, 400.0], 100.0), 1);
    }
}
