//! Measuring an encoder without training it: frozen features, k-NN classification, PCA. Used
//! by training's monitor, transfer, clustering and the study's plots.

pub mod features;
pub mod knn;
pub mod pca;
