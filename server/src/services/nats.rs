//! A throwaway NATS server (`nats-server`) for tests and benchmarks.
