//! Choosing images to label (`pretext select`).
