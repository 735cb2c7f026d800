//! The checker (being written).
