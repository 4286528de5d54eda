//! `wasi:config` capability: settings from app settings (environment), secrets from the
//! configured secrets provider.

mod host;
mod provider;
mod runtime_config;

pub use provider::{EnvProvider, NoProvider, Provider};
pub use runtime_config::{ConfigSource, SecretsSource};

use crate::bindings::wasi::config::store;
use wasmtime::component::{HasData, Linker};

pub struct ConfigView<'a> {
    pub source: &'a ConfigSource,
}

pub struct Config;

impl HasData for Config {
    type Data<'a> = ConfigView<'a>;
}

pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> ConfigView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, Config>(linker, view)
}
