//! What the telemetry room is told at start-up: the Application Insights connection string,
//! how often to export, and the extra CA the exporter's TLS trusts.

use std::path::PathBuf;
use std::time::Duration;

/// How often each signal leaves the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intervals {
    /// Batched spans (requests, dependencies, alerts).
    pub traces: Duration,
    /// Batched log records.
    pub logs: Duration,
    /// Metric collection and export.
    pub metrics: Duration,
}

impl Intervals {
    /// Production: spans and log records every 5 s, metrics every 60 s (Application Insights
    /// aggregates metrics per minute).
    pub const PRODUCTION: Intervals = Intervals {
        traces: Duration::from_secs(5),
        logs: Duration::from_secs(5),
        metrics: Duration::from_secs(60),
    };

    /// The production intervals, or one interval for every signal (tests).
    pub fn with_override(ms: Option<u64>) -> Intervals {
        match ms {
            Some(ms) => {
                let every = Duration::from_millis(ms.max(1));
                Intervals {
                    traces: every,
                    logs: every,
                    metrics: every,
                }
            }
            None => Intervals::PRODUCTION,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// `APPLICATIONINSIGHTS_CONNECTION_STRING`; `None` (or blank) means telemetry is off.
    pub connection_string: Option<String>,
    pub intervals: Intervals,
    /// PEM bundle trusted in addition to the Mozilla roots (`--extra-ca`).
    pub extra_ca: Option<PathBuf>,
    /// One HTTP attempt to the ingestion endpoint may take this long.
    pub request_timeout: Duration,
}

/// Connection strings copied from the portal sometimes end with `;` or carry blanks around
/// the fields; the exporter's parser refuses both. Empty fields are dropped, fields trimmed.
pub fn normalise_connection_string(raw: &str) -> String {
    raw.split(';')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect::<Vec<_>>()
        .join(";")
}

/// `IngestionEndpoint`'s host, for the start-up line (the instrumentation key is not logged).
pub fn ingestion_host(connection_string: &str) -> Option<String> {
    connection_string.split(';').find_map(|field| {
        let (key, value) = field.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("IngestionEndpoint") {
            return None;
        }
        url::Url::parse(value.trim())
            .ok()?
            .host_str()
            .map(str::to_string)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_override_sets_every_interval() {
        assert_eq!(Intervals::with_override(None), Intervals::PRODUCTION);
        let fast = Intervals::with_override(Some(200));
        assert_eq!(fast.traces, Duration::from_millis(200));
        assert_eq!(fast.logs, Duration::from_millis(200));
        assert_eq!(fast.metrics, Duration::from_millis(200));
    }

    #[test]
    fn trailing_semicolons_and_blanks_are_tolerated() {
        assert_eq!(
            normalise_connection_string(
                " InstrumentationKey=abc ; IngestionEndpoint=https://x.example/ ;"
            ),
            "InstrumentationKey=abc;IngestionEndpoint=https://x.example/"
        );
    }

    #[test]
    fn the_ingestion_host_is_found() {
        assert_eq!(
            ingestion_host("InstrumentationKey=k;IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/"),
            Some("westeurope-5.in.applicationinsights.azure.com".into())
        );
        assert_eq!(ingestion_host("InstrumentationKey=k"), None);
    }
}
