//! Looking at and curating what an encoder learned: the explorer page and its thumbnails, the
//! nearest-neighbour grid, and choosing which images to label (`select`). Each works on an
//! embedding (features, labels, where each image came from) that `pipeline` computes.

pub mod atlas;
pub mod grid;
pub mod page;
pub mod select;
