//! The production image under podman (`cargo xtask image --check`): started as App Service
//! starts it, against the fakes on podman's bridge.

pub mod app_service;
pub mod layers;
pub mod pod;
pub mod podman;
pub mod redis;
pub mod sidecar;
