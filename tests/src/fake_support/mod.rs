//! What the loopback fakes (`fake_clever`, `fake_azure`) and their binaries share: the accept
//! loop and connection serving, scripted-fault queues, waiting on a request log, response
//! building, small utilities, and the binaries' signal handling and command channel.

pub mod commands;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod script;
pub(crate) mod server;
pub mod signals;
pub(crate) mod util;
pub(crate) mod wait;
