//! One module per `interlock` subcommand.
pub mod count;
