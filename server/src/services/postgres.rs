//! A throwaway PostgreSQL cluster (`initdb` + `pg_ctl`) for tests and benchmarks.
