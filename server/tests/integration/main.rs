//! All integration tests in one binary: storage on SQLite and PostgreSQL, the HTTP router in
//! process, and the `forecourt` binary's start-up behaviour.

mod support;

mod accounts;
mod balancer_store_history;
mod cli;
mod db;
mod http;
mod isolation;
mod layers;
mod ocpp_pending;
