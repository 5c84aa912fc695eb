//! Where a request goes: the compiled route table (`table`), the backend chosen among a
//! route's (`balance`), and the active checks that take failing backends out (`health`).
pub mod balance;
pub mod health;
pub mod table;
