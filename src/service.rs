//! STUB: server life cycle.
