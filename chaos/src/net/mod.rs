//! Network faults (being written).
