//! Measuring an encoder without training it: frozen features, k-NN classification, PCA, exact
//! nearest neighbours and UMAP. Used by training's monitor, transfer, clustering, curation and
//! the study's plots.

pub mod features;
pub mod knn;
pub mod neighbours;
pub mod pca;
pub mod umap;
