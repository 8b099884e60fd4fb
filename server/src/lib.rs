//! The Forecourt server: storage, the web pages' backend, health and metrics, and (in their own
//! modules) the OCPP central system and the load balancer.

pub mod access;
pub mod accounts;
pub mod auth;
pub mod balancing;
pub mod cli;
pub mod db;
pub mod driver;
pub mod electrics;
pub mod http;
pub mod mail;
pub mod network;
pub mod ocpp;
pub mod seed;
pub mod serve;
pub mod settings;
pub mod simulate;
pub mod telemetry;
pub mod themes;
pub mod throttle;
pub mod web;

/// The pure balancer core, a crate of its own (`server/balancer/`); `balancing` drives it.
pub use forecourt_balancer as balancer;
pub use settings::Settings;
