//! Exact nearest neighbours by cosine similarity.
