//! The agent's configuration, in one place: `args` (what flags, `INTERLOCK_*` variables and
//! the TOML file give, one group per plane), `defaults` (every default as a named constant),
//! `resolve` (the groups and defaults turned into one plain config per plane, noting where
//! each value came from) and `print` (`interlock run --print-config`). Planes take the
//! resolved configs; nothing here reads the command line itself.
pub mod args;
pub mod defaults;
mod print;
mod resolve;

pub use args::{AccessLogFormat, AgentArgs, ControlArgs, HttpArgs, L4Args, LogFormat, Role, RunArgs, XdpMode};
pub use print::Entry;
pub use resolve::{
    control_config, host_name, http_config, parse_file, AgentConfig, ControlConfig, Given, HttpConfig, L4Config,
    Origins, Settings, Source,
};

#[cfg(test)]
mod tests;
