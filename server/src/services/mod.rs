//! Throwaway instances of the engines a multi-node deployment runs on (PostgreSQL and
//! NATS), for the tests and the bench tool: each starts from Debian's binaries in a
//! temporary directory on a free loopback port and is stopped and removed on drop. Never
//! used by a running server.

pub mod nats;
pub mod postgres;
