//! Where a request goes: the compiled route table (`table`), the backend chosen among a
//! route's (`balance`), the active checks that take failing backends out (`health`), and the
//! redirects of `com.docker.lb.redirects` (`redirect`).
pub mod balance;
pub mod health;
pub mod redirect;
pub mod table;
