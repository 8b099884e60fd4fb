//! Dynamic load balancing: a sans-IO core that shares a site's fixed grid connection among its
//! charging sessions, per phase and per circuit, and a day simulator that drives it through the
//! independent referee's workloads (`../shared/lb-bench`).
//!
//! The [`Balancer`] owns no sockets and reads no clock. The caller feeds it [`Event`]s with the
//! current time and carries the [`Command`]s it returns to the chargers (as OCPP
//! SetChargingProfile), then reports each command's fate back. See `engine.rs` for the safety rules.
//! This crate depends on nothing that does I/O, so the compiler keeps it that way; the async shell
//! that drives it lives in the server (`server/src/balancing/`).

mod alloc;
pub mod clock;
pub mod config;
pub mod engine;
pub mod policy;
pub mod sim;
pub mod store;
pub mod units;
pub mod view;

pub use config::{
    CircuitConfig, ConfigError, ConfigWarning, ConnectorConfig, HandoverConfig, LearningConfig, SiteConfig,
    SiteMeter, StoreConfig, Wiring,
};
pub use engine::{
    Attention, Balancer, CarriedSession, Command, ConnectorView, EvPhases, Event, EventError, MeterDoubt,
    NodeView, SessionInfo, SetAside, SmartState, Snapshot,
};
pub use store::{Lens, RiseHistory, RiseLearning, Unchanged};
pub use units::*;
