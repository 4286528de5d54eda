//! The Application Insights pipeline: one `opentelemetry-application-insights` exporter behind
//! the span, log and metric providers, and the HTTP client it sends with.
//!
//! The SDK's batch processors and periodic reader run on their own threads and drive the
//! exporter with a blocking executor; the client hands each upload to the host's tokio runtime
//! and waits for it there, so no tokio worker ever blocks on telemetry and an unreachable
//! endpoint only delays the telemetry threads.

use super::alerts::ErrorsAsExceptions;
use super::settings::{Intervals, Settings};
use crate::redact;
use anyhow::{Context, Result};
use bytes::Bytes;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use opentelemetry::KeyValue;
use opentelemetry_application_insights::Exporter;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::logs::{BatchLogProcessor, SdkLoggerProvider};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::borrow::Cow;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Upload responses are a few hundred bytes; anything much larger is not Application Insights.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The three providers, all exporting through one exporter.
pub struct Pipeline {
    pub tracer_provider: SdkTracerProvider,
    pub logger_provider: SdkLoggerProvider,
    pub meter_provider: SdkMeterProvider,
}

/// Builds the pipeline. Errors are for the caller to report: a bad connection string, an
/// unreadable extra CA.
pub fn build(
    settings: &Settings,
    connection_string: &str,
    tls: Arc<rustls::ClientConfig>,
    runtime: tokio::runtime::Handle,
) -> Result<Pipeline> {
    let client = ScrubbingClient::new(tls, settings.request_timeout, runtime)?;
    let exporter = Exporter::new_from_connection_string(connection_string, client)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("APPLICATIONINSIGHTS_CONNECTION_STRING is not a valid connection string")?;
    Ok(providers(exporter, settings.intervals, resource()))
}

fn providers(
    exporter: Exporter<ScrubbingClient>,
    intervals: Intervals,
    resource: Resource,
) -> Pipeline {
    let spans = BatchSpanProcessor::builder(exporter.clone())
        .with_batch_config(
            opentelemetry_sdk::trace::BatchConfigBuilder::default()
                .with_scheduled_delay(intervals.traces)
                .build(),
        )
        .build();
    let tracer_provider = SdkTracerProvider::builder()
        .with_span_processor(spans)
        .with_resource(resource.clone())
        .build();

    let logs = BatchLogProcessor::builder(exporter.clone())
        .with_batch_config(
            opentelemetry_sdk::logs::BatchConfigBuilder::default()
                .with_scheduled_delay(intervals.logs)
                .build(),
        )
        .build();
    let logger_provider = SdkLoggerProvider::builder()
        // Runs first: marks error records as exceptions before the batch processor sees them.
        .with_log_processor(ErrorsAsExceptions)
        .with_log_processor(logs)
        .with_resource(resource.clone())
        .build();

    let reader = PeriodicReader::builder(exporter)
        .with_interval(intervals.metrics)
        .build();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource)
        .build();

    Pipeline {
        tracer_provider,
        logger_provider,
        meter_provider,
    }
}

/// `service.name` becomes the cloud role; the App Service instance id (or the host name) the
/// role instance.
fn resource() -> Resource {
    let instance = ["WEBSITE_INSTANCE_ID", "HOSTNAME", "COMPUTERNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()));
    let mut builder = Resource::builder()
        .with_service_name("clever-auth")
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if let Some(instance) = instance {
        builder = builder.with_attribute(KeyValue::new("service.instance.id", instance));
    }
    builder.build()
}

/// The exporter's HTTP client: reqwest on the host's rustls configuration (TLS ≥ 1.2, Mozilla
/// roots plus `--extra-ca`), scrubbing every payload just before it leaves the process.
#[derive(Debug, Clone)]
pub struct ScrubbingClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    /// Whether the last upload failed: failures are logged when they start and end, not at
    /// every retry.
    failing: Arc<AtomicBool>,
}

impl ScrubbingClient {
    pub fn new(
        tls: Arc<rustls::ClientConfig>,
        timeout: Duration,
        runtime: tokio::runtime::Handle,
    ) -> Result<ScrubbingClient> {
        let mut tls = (*tls).clone();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(timeout)
            .timeout(timeout)
            // The ingestion endpoint never redirects; a redirect would carry the payload
            // somewhere unplanned.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the Application Insights HTTP client")?;
        Ok(ScrubbingClient {
            client,
            runtime,
            failing: Arc::default(),
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for ScrubbingClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let gzip = parts
            .headers
            .get(http::header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        // On the telemetry thread, not on a tokio worker: this is the CPU-bound part.
        let body = scrub_payload(body, gzip)?;
        let client = self.client.clone();
        let upload = self.runtime.spawn(async move {
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let status = response.status();
            let headers = response.headers().clone();
            let mut bytes = Vec::new();
            let mut response = response;
            while let Some(chunk) = response.chunk().await? {
                if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    break;
                }
                bytes.extend_from_slice(&chunk);
            }
            let mut builder = http::Response::builder().status(status);
            if let Some(h) = builder.headers_mut() {
                *h = headers;
            }
            Ok::<_, HttpError>(builder.body(Bytes::from(bytes))?)
        });
        let result = upload
            .await
            .map_err(|e| HttpError::from(format!("telemetry upload task: {e}")))
            .and_then(|r| r);
        self.note(&result);
        result
    }
}

impl ScrubbingClient {
    /// Logs (stdout only: this room's records are not exported) when uploads start failing
    /// and when they work again.
    fn note(&self, result: &Result<Response<Bytes>, HttpError>) {
        let problem = match result {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("HTTP {}", r.status().as_u16())),
            Err(e) => Some(e.to_string()),
        };
        match problem {
            Some(problem) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        operation = "telemetry",
                        error = %problem,
                        "Application Insights upload failed; retrying in the background (health and tokens are not affected)"
                    );
                }
            }
            None => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        operation = "telemetry",
                        "Application Insights uploads work again"
                    );
                }
            }
        }
    }
}

/// The payload as it may leave: gunzipped, scrubbed, gzipped again (the original bytes when
/// nothing was removed). A payload that cannot be read is not sent at all.
pub fn scrub_payload(body: Bytes, gzip: bool) -> Result<Bytes, HttpError> {
    let text = if gzip {
        let mut plain = Vec::new();
        GzDecoder::new(body.as_ref())
            .read_to_end(&mut plain)
            .map_err(|e| HttpError::from(format!("telemetry payload is not gzip: {e}")))?;
        plain
    } else {
        body.to_vec()
    };
    let text = String::from_utf8(text)
        .map_err(|_| HttpError::from("telemetry payload is not UTF-8; not sent"))?;
    match redact::scrub(&text) {
        Cow::Borrowed(_) => Ok(body),
        Cow::Owned(clean) if gzip => {
            let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
            encoder.write_all(clean.as_bytes())?;
            Ok(Bytes::from(encoder.finish()?))
        }
        Cow::Owned(clean) => Ok(Bytes::from(clean)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Bytes {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).expect("gzip");
        Bytes::from(e.finish().expect("gzip"))
    }

    #[test]
    fn an_unchanged_payload_keeps_its_bytes() {
        let body = gzip(br#"[{"name":"Microsoft.ApplicationInsights.Message"}]"#);
        let out = scrub_payload(body.clone(), true).expect("scrubbed");
        assert_eq!(out, body);
        let plain = Bytes::from_static(b"[]");
        assert_eq!(scrub_payload(plain.clone(), false).expect("plain"), plain);
    }

    #[test]
    fn an_unreadable_payload_is_not_sent() {
        assert!(scrub_payload(Bytes::from_static(b"not gzip"), true).is_err());
        assert!(scrub_payload(gzip(&[0xff, 0xfe]), true).is_err());
    }
}
