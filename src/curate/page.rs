//! The explorer page (`pretext explore`).
