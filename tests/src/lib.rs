//! Test support: the real host as a child process, loopback fakes, a small HTTP client, the
//! code blocks of the documents.

pub mod azure_scenario;
pub mod bicep;
pub mod container;
pub mod host_process;
pub mod http_client;
pub mod markdown;
pub mod paths;
pub mod readme_examples;
pub mod redis_server;
pub mod scenario;
pub mod spin;

pub mod fake_appinsights;
pub mod fake_azure;
pub mod fake_clever;
pub mod fake_support;
