//! UMAP: a 2-D map of the embeddings.
