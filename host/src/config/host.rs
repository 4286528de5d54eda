//! The `wasi:config/store@0.2.0-draft-2024-09-27` host trait.

use super::ConfigView;
use crate::bindings::wasi::config::store::{Error, Host};

impl Host for ConfigView<'_> {
    fn get(&mut self, key: String) -> Result<Option<String>, Error> {
        self.source.get(&key).map_err(Error::Upstream)
    }

    fn get_all(&mut self) -> Result<Vec<(String, String)>, Error> {
        self.source.get_all().map_err(Error::Upstream)
    }
}
