//! Prometheus metrics, served on a separate local listener.
