//! All integration tests in one binary: storage on SQLite and PostgreSQL, the HTTP router in
//! process, and the `forecourt` binary's start-up behaviour.

mod support;

mod balancer_budget_props;
mod balancer_sim_day;
mod balancer_store_history;
mod cli;
mod http;
mod ocpp_pending;
mod store;
