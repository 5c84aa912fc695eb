//! One module per `interlock` subcommand.
pub mod count;
pub mod l4;
