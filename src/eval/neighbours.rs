//! Exact nearest neighbours by cosine similarity.

// Stand-in for wt-a's implementation (same struct and accessor) so that curate::select
// compiles before the merge; the merge takes wt-a's file.
pub struct Neighbours {
    pub n: usize,
    pub k: usize,
    pub index: Vec<u32>,
    pub similarity: Vec<f32>,
}

impl Neighbours {
    pub fn of(&self, i: usize) -> (&[u32], &[f32]) {
        let r = i * self.k..(i + 1) * self.k;
        (&self.index[r.clone()], &self.similarity[r])
    }
}
