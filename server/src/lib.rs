//! The Forecourt server: storage, the web pages' backend, health and metrics, and (in their own
//! modules) the OCPP central system and the load balancer.

pub mod auth;
pub mod balancer;
pub mod cli;
pub mod driver;
pub mod http;
pub mod ocpp;
pub mod seed;
pub mod serve;
pub mod settings;
pub mod simulate;
pub mod store;
pub mod telemetry;
pub mod themes;
pub mod web;

pub use settings::Settings;
