//! The siamese methods as [`Learner`]s: SimCLR (NT-Xent between the projections of two views),
//! BYOL (the online network predicts an EMA target network's projection of the other view) and
//! SimSiam (BYOL without the EMA: the target is the online projection, gradient stopped).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::data_parallel::{DataParallel, gather_on};
use super::{
    ImageLearner, Learner, Optimisers, StepStats, backward, correct_predictions, to_tensors,
};
use crate::config::TrainConfig;
use crate::data::ImageSet;
use crate::data::loader::{BatchPlan, Normalizer};
use crate::losses::{byol_loss, l2_normalise, negative_cosine, nt_xent};
use crate::models::{Encoder, EncoderSpec, ProjectionMlp, Siamese, SiameseHeads};
use crate::tasks::views::SiameseConfig;
use crate::tasks::{Examples, Task, TaskKind};

/// What a checkpoint holds of a siamese run: the online network and BYOL's target.
#[derive(Module, Debug)]
pub struct SiameseState {
    pub online: Siamese,
    pub target: Option<Siamese>,
}

pub struct SiameseLearner {
    pub kind: TaskKind,
    pub online: Siamese,
    /// BYOL's momentum network (encoder and projector), never touched by backprop.
    pub target: Option<Siamese>,
    optim: Optimisers,
    cfg: SiameseConfig,
    device: Device,
    /// SimCLR only: each batch spread over several devices.
    parallel: Option<DataParallel>,
}

impl SiameseLearner {
    pub fn new(
        kind: TaskKind,
        spec: &EncoderSpec,
        cfg: &SiameseConfig,
        recipe: &TrainConfig,
        device: &Device,
    ) -> Self {
        let heads = |predictor: bool| SiameseHeads {
            projector: ProjectionMlp::new(
                spec.feature_dim(),
                cfg.projector_hidden,
                cfg.projection_dim,
                device,
            ),
            predictor: predictor.then(|| {
                ProjectionMlp::new(
                    cfg.projection_dim,
                    cfg.predictor_hidden,
                    cfg.projection_dim,
                    device,
                )
            }),
        };
        let online = Siamese {
            encoder: spec.init(device),
            heads: heads(kind != TaskKind::Simclr),
        };
        // The target starts as a copy of the online encoder and projector (its own parameter ids).
        let target = (kind == TaskKind::Byol).then(|| {
            let fresh = Siamese {
                encoder: spec.init(device),
                heads: heads(false),
            };
            ema_update(fresh, &online, 0.0)
        });
        Self {
            kind,
            online,
            target,
            optim: Optimisers::new(recipe),
            cfg: cfg.clone(),
            device: device.clone(),
            parallel: None,
        }
        .with_data_parallel(crate::device::data_parallel())
    }

    /// Spread SimCLR's batches over `parallel`'s devices (the model must be on the first).
    /// BYOL and SimSiam train on the first device alone, with a warning.
    pub fn with_data_parallel(mut self, parallel: Option<DataParallel>) -> Self {
        if let Some(p) = &parallel {
            if self.kind != TaskKind::Simclr {
                crate::device::warn_first_device_only(self.kind.name());
                return self;
            }
            self.device = p.main().clone();
        }
        self.parallel = parallel;
        self
    }

    /// SimCLR over several devices, with the gradient of the global batch. Every device projects
    /// its shard; the projections are all-gathered on the first device, where NT-Xent over the
    /// whole batch (every device's negatives) gives the gradient of each projection; each
    /// device backpropagates its rows of it, and the parameter gradients are all-reduced.
    fn simclr_parallel_step(
        &mut self,
        parallel: &DataParallel,
        ex: &Examples,
        lr: f64,
    ) -> StepStats {
        let n = ex.labels.len();
        let ranges = parallel.shard_ranges(n);
        let projected = parallel.map(&self.online, |i, replica: Siamese, device| {
            let (views, _) = to_tensors(&ex.shard(ranges[i].clone()), device);
            let projections = replica.project(views);
            (replica, projections)
        });
        let parts: Vec<Tensor<2>> = projected.iter().map(|(_, p)| p.clone()).collect();
        let gathered = gather_on(&parts, parallel.main()).require_grad();
        let (z1, z2) = split_pairs(gathered.clone());
        let (loss, logits, targets) = nt_xent(z1, z2, self.cfg.temperature);
        let loss_value: f32 = loss.clone().into_scalar();
        if !loss_value.is_finite() {
            return StepStats::diverged(loss_value);
        }
        let hits = correct_predictions(logits.detach(), targets);
        let upstream = gathered
            .grad(&loss.backward())
            .expect("the gathered projections take part in the loss");
        let rows: Vec<usize> = ranges.iter().map(|r| 2 * r.len()).collect();
        let upstream = parallel.scatter_rows(upstream, &rows);
        let shards: Vec<_> = projected.into_iter().zip(upstream).collect();
        let grads = parallel.run(shards, |_, ((replica, projections), upstream), _| {
            // d(sum(p * g))/dp = g: backpropagates this device's rows of the loss gradient.
            let surrogate = (projections * upstream).sum();
            let grads = backward(surrogate, (&replica.encoder, &replica.heads));
            (replica, grads)
        });
        let (replicas, grads): (Vec<Siamese>, Vec<_>) = grads.into_iter().unzip();
        let first = replicas.into_iter().next().expect("one shard per device");
        // The upstream gradient is already that of the global mean: the shards add up.
        let ones = vec![1.0; grads.len()];
        let grads = parallel.all_reduce_parts((&first.encoder, &first.heads), grads, &ones);
        let Siamese { encoder, heads } = first;
        let (encoder, heads) = self.optim.apply((encoder, heads), grads, (lr, lr));
        self.online = Siamese { encoder, heads };
        StepStats {
            loss: loss_value,
            hits,
            counted: 2 * n,
        }
    }

    /// BYOL's target momentum `progress` (0 to 1) of the way through training: it rises from
    /// the base momentum to 1 along a cosine.
    pub fn momentum(&self, progress: f64) -> f64 {
        byol_momentum(self.cfg.momentum, progress)
    }
}

/// 1 - (1 - base) (cos(pi progress) + 1) / 2 (Grill et al. 2020).
pub fn byol_momentum(base: f64, progress: f64) -> f64 {
    1.0 - (1.0 - base) * ((std::f64::consts::PI * progress.clamp(0.0, 1.0)).cos() + 1.0) / 2.0
}

/// The first and second view of every pair, from rows stored pairwise (`[2n, d]`).
fn split_pairs(x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
    let [rows, d] = x.dims();
    let n = rows / 2;
    let pairs = x.reshape([n, 2, d]);
    (
        pairs.clone().narrow(1, 0, 1).reshape([n, d]),
        pairs.narrow(1, 1, 1).reshape([n, d]),
    )
}

/// How many rows of `a` have their own row of `b` as the most similar (cosine) row of `b`.
fn partner_hits(a: Tensor<2>, b: Tensor<2>) -> usize {
    let [n, _] = a.dims();
    let device = a.device();
    let similarity = l2_normalise(a).matmul(l2_normalise(b).transpose());
    let own = Tensor::<1, Int>::from_data(
        TensorData::new((0..n as i64).collect::<Vec<_>>(), [n]),
        &device,
    );
    let hits: i64 = similarity
        .argmax(1)
        .reshape([n])
        .equal(own)
        .int()
        .sum()
        .into_scalar();
    hits as usize
}

impl Learner for SiameseLearner {
    type Batch = Examples;
    fn inputs(ex: &Examples) -> usize {
        ex.num_views()
    }
    fn step(&mut self, ex: &Examples, lr: f64, progress: f64) -> StepStats {
        let n = ex.labels.len();
        if let Some(parallel) = self.parallel.clone()
            && n >= parallel.devices().len()
        {
            return self.simclr_parallel_step(&parallel, ex, lr);
        }
        let (views, _) = to_tensors(ex, &self.device);
        let projections = self.online.project(views.clone());
        let (loss, hits) = match self.kind {
            TaskKind::Simclr => {
                let (z1, z2) = split_pairs(projections);
                let (loss, logits, targets) = nt_xent(z1, z2, self.cfg.temperature);
                (loss, correct_predictions(logits.detach(), targets))
            }
            TaskKind::Byol => {
                let target = self.target.as_ref().expect("BYOL has a target network");
                let (p1, p2) = split_pairs(self.online.predict(projections));
                let (t1, t2) = split_pairs(target.project(views).detach());
                let hits = partner_hits(p1.clone().detach(), t2.clone())
                    + partner_hits(p2.clone().detach(), t1.clone());
                (byol_loss(p1, t2) + byol_loss(p2, t1), hits)
            }
            _ => {
                let (z1, z2) = split_pairs(projections.clone());
                let (p1, p2) = split_pairs(self.online.predict(projections));
                let (z1, z2) = (z1.detach(), z2.detach());
                let hits = partner_hits(p1.clone().detach(), z2.clone())
                    + partner_hits(p2.clone().detach(), z1.clone());
                let loss = (negative_cosine(p1, z2) + negative_cosine(p2, z1)).mul_scalar(0.5);
                (loss, hits)
            }
        };
        let loss_value: f32 = loss.clone().into_scalar();
        if !loss_value.is_finite() {
            return StepStats::diverged(loss_value);
        }
        let Siamese { encoder, heads } = self.online.clone();
        let (encoder, heads) = self.optim.step(loss, (encoder, heads), (lr, lr));
        self.online = Siamese { encoder, heads };
        if let Some(target) = self.target.take() {
            self.target = Some(ema_update(target, &self.online, self.momentum(progress)));
        }
        StepStats {
            loss: loss_value,
            hits,
            counted: 2 * n,
        }
    }

    fn save_parts(&self) -> Result<[Vec<u8>; 3], String> {
        let state = SiameseState {
            online: self.online.clone(),
            target: self.target.clone(),
        };
        self.optim.parts(&state)
    }

    fn load_parts(&mut self, parts: [Vec<u8>; 3]) -> Result<(), (&'static str, String)> {
        let mut state = SiameseState {
            online: self.online.clone(),
            target: self.target.clone(),
        };
        self.optim.load(&mut state, parts)?;
        self.online = state.online;
        self.target = state.target.map(|t| t.no_grad());
        Ok(())
    }
}

impl ImageLearner for SiameseLearner {
    fn encoder(&self) -> Encoder {
        self.online.encoder.clone()
    }
}

/// Every float tensor of a module (parameters and BatchNorm statistics), flattened, in the
/// module's visiting order.
struct Flatten(Vec<Tensor<1>>);

impl ModuleVisitor for Flatten {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val().detach();
        let n = value.shape().num_elements();
        self.0.push(value.reshape([n]));
    }
}

/// target <- m target + (1 - m) online, tensor by tensor in visiting order.
struct Blend {
    online: std::vec::IntoIter<Tensor<1>>,
    momentum: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let online = self
            .online
            .next()
            .expect("target and online have the same structure");
        let m = self.momentum;
        param.map(|t| {
            let shape = t.shape();
            (t.detach().mul_scalar(m) + online.reshape(shape).mul_scalar(1.0 - m)).detach()
        })
    }
}

/// BYOL's target update: the target's encoder and projector move to `momentum` times
/// themselves plus `1 - momentum` times the online network's (0 copies the online network).
/// The result takes no gradients.
pub fn ema_update(target: Siamese, online: &Siamese, momentum: f64) -> Siamese {
    let mut encoder = Flatten(Vec::new());
    online.encoder.visit(&mut encoder);
    let mut projector = Flatten(Vec::new());
    online.heads.projector.visit(&mut projector);
    let Siamese { encoder: te, heads } = target;
    let te = te.map(&mut Blend {
        online: encoder.0.into_iter(),
        momentum,
    });
    let tp = heads.projector.map(&mut Blend {
        online: projector.0.into_iter(),
        momentum,
    });
    Siamese {
        encoder: te,
        heads: SiameseHeads {
            projector: tp,
            predictor: None,
        },
    }
    .no_grad()
}

/// Share of held-out images whose second view's encoder feature is the nearest (cosine) to the
/// first view's among `batch_size` images: the pretext accuracy of a siamese method.
pub fn evaluate_pairs(
    encoder: &Encoder,
    set: &ImageSet,
    normalizer: &Normalizer,
    task: &dyn Task,
    batch_size: usize,
) -> f64 {
    let encoder = encoder.valid();
    let device = super::infer_device();
    let plan = BatchPlan::for_evaluation(set, normalizer, task, batch_size);
    let (mut hits, mut seen) = (0usize, 0usize);
    let indices: Vec<usize> = (0..set.len).collect();
    for chunk in indices.chunks(batch_size.max(2)) {
        if chunk.len() < 2 {
            continue;
        }
        let ex = plan.make(chunk).expect(super::IN_MEMORY);
        let (views, _) = to_tensors(&ex, &device);
        let (f1, f2) = split_pairs(encoder.forward(views));
        hits += partner_hits(f1, f2);
        seen += chunk.len();
    }
    hits as f64 / seen.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Arch, Stem};
    use crate::train::data_parallel::largest_difference;
    use crate::train::train_device;
    use burn::optim::GradientsParams;
    use burn::tensor::Distribution;

    fn spec() -> EncoderSpec {
        EncoderSpec {
            arch: Arch::Convnet4,
            width: 2,
            in_channels: 1,
            mean: vec![0.0],
            std: vec![1.0],
            stem: Stem::Cifar,
        }
    }

    fn small() -> SiameseConfig {
        SiameseConfig {
            projector_hidden: 8,
            projection_dim: 4,
            predictor_hidden: 8,
            ..SiameseConfig::default()
        }
    }

    fn values(m: &impl Module) -> Vec<f32> {
        let mut flat = Flatten(Vec::new());
        m.visit(&mut flat);
        flat.0
            .into_iter()
            .flat_map(|t| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap())
            .collect()
    }

    /// For every value of `m`'s float tensors: whether it is a trained parameter (not a
    /// BatchNorm statistic).
    fn trainable(m: &impl Module) -> Vec<bool> {
        struct Mask(Vec<bool>);
        impl ModuleVisitor for Mask {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let value = param.val();
                let n = value.shape().num_elements();
                self.0
                    .extend(std::iter::repeat_n(value.is_require_grad(), n));
            }
        }
        let mut mask = Mask(Vec::new());
        m.visit(&mut mask);
        mask.0
    }

    fn batch(n: usize) -> Examples {
        let tensor = Tensor::<1>::random([2 * n * 64], Distribution::Default, &Device::flex());
        Examples {
            views: tensor.into_data().try_to_vec::<f32>().unwrap(),
            view_shape: [1, 8, 8],
            labels: vec![0; n],
            arity: 2,
        }
    }

    /// SimCLR over two devices (here the CPU twice) with its all-gathered negatives trains like
    /// one device with the same global batch: the reference projects each half on its own (as
    /// each device's BatchNorm does), takes NT-Xent over all of it and steps once.
    #[test]
    fn simclr_on_two_devices_matches_one_device_with_the_global_batch() {
        let device = train_device();
        device.seed(3);
        let recipe = TrainConfig::default();
        let mut single = SiameseLearner::new(TaskKind::Simclr, &spec(), &small(), &recipe, &device);
        let mut parallel =
            SiameseLearner::new(TaskKind::Simclr, &spec(), &small(), &recipe, &device)
                .with_data_parallel(Some(DataParallel::new(vec![
                    device.clone(),
                    device.clone(),
                ])));
        parallel.online = single.online.clone();
        let start = values(&single.online);
        for step in 0..3 {
            let ex = batch(6);
            parallel.step(&ex, 0.1, 0.0);
            let halves: Vec<Tensor<2>> = [0..3, 3..6]
                .into_iter()
                .map(|r| single.online.project(to_tensors(&ex.shard(r), &device).0))
                .collect();
            let (z1, z2) = split_pairs(Tensor::cat(halves, 0));
            let (loss, _, _) = nt_xent(z1, z2, single.cfg.temperature);
            let Siamese { encoder, heads } = single.online.clone();
            let (encoder, heads) = single.optim.step(loss, (encoder, heads), (0.1, 0.1));
            single.online = Siamese { encoder, heads };
            let mask = trainable(&single.online);
            let trained = |m: &Siamese| -> Vec<f32> {
                values(m)
                    .into_iter()
                    .zip(&mask)
                    .filter_map(|(v, t)| t.then_some(v))
                    .collect()
            };
            let worst = largest_difference(&trained(&parallel.online), &trained(&single.online));
            assert!(worst < 1e-5, "step {step}: parameters differ by {worst}");
        }
        let moved = largest_difference(&values(&parallel.online), &start);
        assert!(moved > 1e-3, "training moved nothing ({moved})");
    }

    #[test]
    fn momentum_rises_from_the_base_to_one_along_a_cosine() {
        assert!((byol_momentum(0.99, 0.0) - 0.99).abs() < 1e-12);
        assert!((byol_momentum(0.99, 0.5) - 0.995).abs() < 1e-12);
        assert!((byol_momentum(0.99, 1.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn ema_update_blends_every_tensor() {
        let device = train_device();
        let learner = SiameseLearner::new(
            TaskKind::Byol,
            &spec(),
            &small(),
            &TrainConfig::default(),
            &device,
        );
        let target = learner.target.clone().unwrap();
        // The target starts as an exact copy of the online encoder and projector.
        let online_part = |s: &Siamese| [values(&s.encoder), values(&s.heads.projector)].concat();
        assert_eq!(online_part(&target), online_part(&learner.online));
        // Against a different network, m = 0.75 lands a quarter of the way there.
        let other = SiameseLearner::new(
            TaskKind::Byol,
            &spec(),
            &small(),
            &TrainConfig::default(),
            &device,
        );
        let before = online_part(&target);
        let toward = online_part(&other.online);
        let blended = online_part(&ema_update(target, &other.online, 0.75));
        assert_eq!(blended.len(), before.len());
        let mut moved = 0;
        for ((b, t), got) in before.iter().zip(&toward).zip(&blended) {
            assert!(
                (got - (0.75 * b + 0.25 * t)).abs() < 1e-5,
                "{got} vs {b} {t}"
            );
            moved += (b != t) as usize;
        }
        assert!(moved > 0);
    }

    #[test]
    fn backprop_never_reaches_the_target_which_moves_only_by_ema() {
        let device = train_device();
        let mut learner = SiameseLearner::new(
            TaskKind::Byol,
            &spec(),
            &small(),
            &TrainConfig::default(),
            &device,
        );
        let ex = batch(6);
        // No gradient for any target parameter.
        let (views, _) = to_tensors(&ex, &device);
        let target = learner.target.clone().unwrap();
        let (p1, p2) = split_pairs(
            learner
                .online
                .predict(learner.online.project(views.clone())),
        );
        let (t1, t2) = split_pairs(target.project(views).detach());
        let mut grads = (byol_loss(p1, t2) + byol_loss(p2, t1)).backward();
        assert!(GradientsParams::from_module(&mut grads, &target).is_empty());
        assert!(!GradientsParams::from_module(&mut grads, &learner.online.encoder).is_empty());
        // After a step every parameter of the target is exactly m * old target + (1 - m) * new
        // online. (BatchNorm's running statistics also follow the target's own forward passes.)
        let trainable = [
            trainable(&learner.online.encoder),
            trainable(&learner.online.heads.projector),
        ]
        .concat();
        let before = [values(&target.encoder), values(&target.heads.projector)].concat();
        learner.step(&ex, 0.1, 0.0);
        let online = [
            values(&learner.online.encoder),
            values(&learner.online.heads.projector),
        ]
        .concat();
        let t = learner.target.as_ref().unwrap();
        let after = [values(&t.encoder), values(&t.heads.projector)].concat();
        let m = 0.99f32;
        let mut changed = 0;
        assert_eq!(trainable.len(), before.len());
        for (((b, o), a), _) in before
            .iter()
            .zip(&online)
            .zip(&after)
            .zip(&trainable)
            .filter(|(_, t)| **t)
        {
            assert!((a - (m * b + (1.0 - m) * o)).abs() < 1e-5, "{a} vs {b} {o}");
            changed += ((a - b).abs() > 1e-9) as usize;
        }
        assert!(changed > 0, "the EMA moved the target");
    }

    /// Gradient values of every parameter of `m` that has one, in visiting order.
    struct GradValues<'a>(&'a GradientsParams, Vec<f32>);
    impl ModuleVisitor for GradValues<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.0.get::<D>(param.id) {
                self.1
                    .extend(g.into_data().convert::<f32>().try_to_vec::<f32>().unwrap());
            }
        }
    }

    #[test]
    fn simsiam_stops_the_gradient_through_the_target_branch() {
        let device = train_device();
        let learner = SiameseLearner::new(
            TaskKind::Simsiam,
            &spec(),
            &small(),
            &TrainConfig::default(),
            &device,
        );
        let (views, _) = to_tensors(&batch(4), &device);
        let gradient = |stop: bool| {
            let z = learner.online.project(views.clone());
            let (_, z2) = split_pairs(z.clone());
            let (p1, _) = split_pairs(learner.online.predict(z));
            let z2 = if stop { z2.detach() } else { z2 };
            let mut grads = negative_cosine(p1, z2).backward();
            let grads = GradientsParams::from_module(&mut grads, &learner.online.encoder);
            let mut values = GradValues(&grads, Vec::new());
            learner.online.encoder.visit(&mut values);
            values.1
        };
        // With the target branch detached, the gradient is that of the prediction side alone,
        // so it differs from the gradient through both branches.
        let (stopped, both) = (gradient(true), gradient(false));
        assert_eq!(stopped.len(), both.len());
        assert!(!stopped.is_empty());
        let differ = stopped
            .iter()
            .zip(&both)
            .filter(|(a, b)| (*a - *b).abs() > 1e-7)
            .count();
        assert!(differ > stopped.len() / 10, "{differ} of {}", stopped.len());
        // And it is the same as against a constant copy of the target: nothing flows through it.
        let z = learner.online.project(views.clone());
        let (_, z2) = split_pairs(z.clone());
        let constant = Tensor::<2>::from_data(z2.into_data(), &device);
        let (p1, _) = split_pairs(learner.online.predict(z));
        let mut grads = negative_cosine(p1, constant).backward();
        let grads = GradientsParams::from_module(&mut grads, &learner.online.encoder);
        let mut values = GradValues(&grads, Vec::new());
        learner.online.encoder.visit(&mut values);
        for (a, b) in stopped.iter().zip(&values.1) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn each_method_steps_with_a_finite_loss_and_counts_pairs() {
        let device = train_device();
        for kind in [TaskKind::Simclr, TaskKind::Byol, TaskKind::Simsiam] {
            let mut learner =
                SiameseLearner::new(kind, &spec(), &small(), &TrainConfig::default(), &device);
            let stats = learner.step(&batch(5), 0.05, 0.3);
            assert!(stats.loss.is_finite(), "{kind:?}");
            assert_eq!(stats.counted, 10);
            assert!(stats.hits <= 10);
            let parts = learner.save_parts().unwrap();
            learner.load_parts(parts).unwrap();
        }
    }
}
