//! One module per `interlock` subcommand.
pub mod admin_client;
pub mod certs;
pub mod control;
pub mod count;
pub mod l4;
pub mod proxy;
pub mod ready;
pub mod run;
pub mod status;
