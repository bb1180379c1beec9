//! Data-parallel training over several devices. The global batch is cut into one contiguous
//! shard per device; each device runs forward and backward on its shard with its own copy of the
//! model (its own autodiff graph, on its own thread); the gradients are all-reduced onto the
//! first device, weighted by shard size, so that one optimiser step there sees the gradient of
//! the global batch's mean loss. This is the arithmetic of PyTorch's DistributedDataParallel:
//! BatchNorm normalises each shard with its own statistics; the running statistics, which the
//! copies share, average the devices' updates.
//!
//! The reduction is built on burn's tensor operations (`to_device`, `add`), so it runs on every
//! backend. burn 0.22's own collective `all_reduce` is implemented only by its CubeCL backends
//! (not by `flex`, whose one device cannot be split), so the CPU tests could not use it.

use std::ops::Range;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};

/// The devices a data-parallel learner spreads each batch over; the first holds the model.
#[derive(Clone, Debug)]
pub struct DataParallel {
    devices: Vec<Device>,
}

impl DataParallel {
    /// `devices` are training (autodiff) devices; the same device may appear twice, which
    /// runs two shards side by side on it (how the CPU tests stand in for two GPUs).
    pub fn new(devices: Vec<Device>) -> Self {
        assert!(!devices.is_empty(), "data parallelism needs a device");
        Self { devices }
    }

    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    pub fn main(&self) -> &Device {
        &self.devices[0]
    }

    /// `rows` cut into one contiguous, near-equal range per device, in order; a device gets an
    /// empty range when there are fewer rows than devices.
    pub fn shard_ranges(&self, rows: usize) -> Vec<Range<usize>> {
        let parts = self.devices.len();
        (0..parts)
            .map(|i| (i * rows / parts)..((i + 1) * rows / parts))
            .collect()
    }

    /// A copy of `model` forked onto every device (each with its own autodiff graph).
    pub fn replicate<M: Module>(&self, model: &M) -> Vec<M> {
        self.devices
            .iter()
            .map(|device| model.clone().fork(device))
            .collect()
    }

    /// Run `work(shard, item, device)` for every device at once, `items[i]` going to device `i`;
    /// the results come back in device order. The first shard runs on the calling thread:
    /// BatchNorm's running statistics are shared between copies of a model and kept per
    /// thread, and the thread that trains every step folds the others' updates in.
    pub fn run<T, R, F>(&self, items: Vec<T>, work: F) -> Vec<R>
    where
        T: Send,
        R: Send,
        F: Fn(usize, T, &Device) -> R + Sync,
    {
        assert_eq!(items.len(), self.devices.len(), "one item per device");
        let work = &work;
        std::thread::scope(|scope| {
            let mut items = items.into_iter().zip(&self.devices).enumerate();
            let (_, (first, main)) = items.next().expect("at least one device");
            let others: Vec<_> = items
                .map(|(i, (item, device))| scope.spawn(move || work(i, item, device)))
                .collect();
            let first = work(0, first, main);
            std::iter::once(first)
                .chain(others.into_iter().map(|h| match h.join() {
                    Ok(r) => r,
                    Err(panic) => std::panic::resume_unwind(panic),
                }))
                .collect()
        })
    }

    /// [`run`](Self::run) on a fresh replica of `model` per device.
    pub fn map<M, R, F>(&self, model: &M, work: F) -> Vec<R>
    where
        M: Module + Send,
        R: Send,
        F: Fn(usize, M, &Device) -> R + Sync,
    {
        self.run(self.replicate(model), work)
    }

    /// The all-gather: every device's rows (`parts[i]` from device `i`), concatenated in device
    /// order, on each device. The copies carry no gradient; a loss over them sends its
    /// gradient back with [`DataParallel::scatter_rows`].
    pub fn all_gather(&self, parts: &[Tensor<2>]) -> Vec<Tensor<2>> {
        self.devices
            .iter()
            .map(|device| gather_on(parts, device))
            .collect()
    }

    /// The rows of `gradient` (gathered in device order from parts of `rows[i]` rows) that
    /// belong to each device, moved there: the backward of [`DataParallel::all_gather`].
    pub fn scatter_rows(&self, gradient: Tensor<2>, rows: &[usize]) -> Vec<Tensor<2>> {
        let mut start = 0;
        rows.iter()
            .zip(&self.devices)
            .map(|(&n, device)| {
                let part = gradient.clone().narrow(0, start, n);
                start += n;
                Tensor::from_inner(part.to_device(&device.clone().inner()))
            })
            .collect()
    }

    /// [`all_reduce`](Self::all_reduce) of every device's (encoder, heads) gradients, as
    /// `crate::train::backward` splits them, onto the first device's copies.
    pub fn all_reduce_parts<E: Module, H: Module>(
        &self,
        (encoder, heads): (&E, &H),
        grads: Vec<(GradientsParams, GradientsParams)>,
        weights: &[f64],
    ) -> (GradientsParams, GradientsParams) {
        let (encoder_grads, head_grads): (Vec<_>, Vec<_>) = grads.into_iter().unzip();
        (
            self.all_reduce(encoder, encoder_grads, weights),
            self.all_reduce(heads, head_grads, weights),
        )
    }

    /// The all-reduce: `sum_i weights[i] * grads[i]` for every parameter of `module`, on the
    /// first device. A shard that left a parameter without a gradient adds nothing for it.
    pub fn all_reduce<M: Module>(
        &self,
        module: &M,
        grads: Vec<GradientsParams>,
        weights: &[f64],
    ) -> GradientsParams {
        let mut reduce = WeightedSum {
            shards: grads.into_iter().zip(weights.iter().copied()).collect(),
            device: self.main().clone().inner(),
            out: GradientsParams::new(),
        };
        module.visit(&mut reduce);
        reduce.out
    }
}

/// `parts` (detached) concatenated on `device`.
pub fn gather_on(parts: &[Tensor<2>], device: &Device) -> Tensor<2> {
    Tensor::cat(
        parts
            .iter()
            .map(|p| p.clone().detach().to_device(device))
            .collect(),
        0,
    )
}

/// Shard weights for a mean loss: each shard's share of the global batch.
pub fn shard_weights(ranges: &[Range<usize>]) -> Vec<f64> {
    let total: usize = ranges.iter().map(|r| r.len()).sum();
    ranges
        .iter()
        .map(|r| r.len() as f64 / total.max(1) as f64)
        .collect()
}

struct WeightedSum {
    shards: Vec<(GradientsParams, f64)>,
    device: Device,
    out: GradientsParams,
}

impl ModuleVisitor for WeightedSum {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let mut sum: Option<Tensor<D>> = None;
        for (grads, weight) in &mut self.shards {
            if let Some(g) = grads.remove::<D>(param.id) {
                let g = g.to_device(&self.device).mul_scalar(*weight);
                sum = Some(match sum {
                    Some(s) => s + g,
                    None => g,
                });
            }
        }
        if let Some(sum) = sum {
            self.out.register(param.id, sum);
        }
    }
}

/// The largest absolute difference between two equally long parameter lists (for tests).
#[cfg(test)]
pub(crate) fn largest_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainConfig;
    use crate::data::examples::Examples;
    use crate::losses::cross_entropy;
    use crate::models::{Arch, Classifier, ClassifierHead, EncoderSpec, Stem};
    use crate::train::{ClassifierLearner, Learner, Optimisers, backward, to_tensors};
    use burn::tensor::{Distribution, TensorData};

    struct Flatten(Vec<f32>);
    impl ModuleVisitor for Flatten {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if param.val().is_require_grad() {
                let data = param.val().into_data().convert::<f32>();
                self.0.extend(data.try_to_vec::<f32>().unwrap());
            }
        }
    }

    fn trained_values(m: &impl Module) -> Vec<f32> {
        let mut flat = Flatten(Vec::new());
        m.visit(&mut flat);
        flat.0
    }

    fn batch(n: usize) -> Examples {
        let pixels = Tensor::<1>::random([n * 64], Distribution::Default, &Device::flex());
        Examples {
            views: pixels.into_data().try_to_vec::<f32>().unwrap(),
            view_shape: [1, 8, 8],
            labels: (0..n as i64).map(|i| i % 3).collect(),
            arity: 1,
            groups: Vec::new(),
        }
    }

    /// The CPU twice stands in for two devices. The reference trains on one device with the
    /// same global batch, each half normalised by its own BatchNorm statistics as on two devices.
    #[test]
    fn two_cpu_devices_train_like_one_device_with_the_same_global_batch() {
        let device = Device::flex().autodiff();
        device.seed(7);
        let spec = EncoderSpec {
            arch: Arch::Convnet4,
            width: 4,
            in_channels: 1,
            mean: vec![0.0],
            std: vec![1.0],
            stem: Stem::Cifar,
            vit: None,
            input_size: None,
            start: None,
        };
        let model = Classifier {
            encoder: spec.init(&device),
            head: ClassifierHead::linear(spec.feature_dim(), 3, &device),
        };
        let recipe = TrainConfig::default();
        let parallel = DataParallel::new(vec![device.clone(), device.clone()]);
        let mut learner =
            ClassifierLearner::new(model.clone(), &recipe, 0.5).with_data_parallel(parallel);
        let mut reference = model.clone();
        let mut optim = Optimisers::new(&recipe);
        let start = trained_values(&model);
        // 7 examples: shards of 3 and 4, so the shard weighting is tested too.
        for step in 0..3 {
            let ex = batch(7);
            let stats = learner.step(&ex, 0.1, 0.0);
            let loss = [(0..3, 3.0 / 7.0), (3..7, 4.0 / 7.0)]
                .into_iter()
                .map(|(range, weight)| {
                    let (views, labels) = to_tensors(&ex.shard(range), &device);
                    cross_entropy(reference.forward(views, 1), labels).mul_scalar(weight)
                })
                .reduce(|a, b| a + b)
                .unwrap();
            let reference_loss: f32 = loss.clone().into_scalar();
            // The shards sum in another order than one batch would: float32 rounding, which
            // grows a little with every step, on random data that differs from run to run.
            let gap = (stats.loss - reference_loss).abs();
            assert!(
                gap < 1e-4,
                "step {step}: {} vs {reference_loss}",
                stats.loss
            );
            let grads = backward(loss, (&reference.encoder, &reference.head));
            let (encoder, head) = optim.apply(
                (reference.encoder.clone(), reference.head.clone()),
                grads,
                (0.05, 0.1),
            );
            reference = Classifier { encoder, head };
            let worst =
                largest_difference(&trained_values(&learner.model), &trained_values(&reference));
            assert!(worst < 1e-4, "step {step}: parameters differ by {worst}");
        }
        let moved = largest_difference(&trained_values(&learner.model), &start);
        assert!(moved > 1e-3, "training moved nothing ({moved})");
    }

    #[test]
    fn all_gather_returns_every_devices_rows_in_order() {
        let device = Device::flex();
        let parallel = DataParallel::new(vec![device.clone(), device.clone(), device.clone()]);
        let part = |first: f32, rows: usize| {
            let values: Vec<f32> = (0..rows * 2).map(|i| first + i as f32).collect();
            Tensor::<2>::from_data(TensorData::new(values, [rows, 2]), &device)
        };
        let parts = vec![part(0.0, 1), part(2.0, 3), part(8.0, 2)];
        let gathered = parallel.all_gather(&parts);
        assert_eq!(gathered.len(), 3);
        let expected: Vec<f32> = (0..12).map(|i| i as f32).collect();
        for g in &gathered {
            assert_eq!(g.dims(), [6, 2]);
            assert_eq!(g.clone().into_data().try_to_vec::<f32>().unwrap(), expected);
        }
        // Its backward hands each device its own rows again.
        let back = parallel.scatter_rows(gathered[0].clone(), &[1, 3, 2]);
        for (b, p) in back.into_iter().zip(parts) {
            assert_eq!(
                b.into_data().try_to_vec::<f32>().unwrap(),
                p.into_data().try_to_vec::<f32>().unwrap()
            );
        }
    }

    #[test]
    fn shards_cover_the_batch_in_order_with_weights_summing_to_one() {
        let parallel = DataParallel::new(vec![Device::flex(); 3]);
        let ranges = parallel.shard_ranges(10);
        assert_eq!(ranges, vec![0..3, 3..6, 6..10]);
        let weights = shard_weights(&ranges);
        assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((weights[2] - 0.4).abs() < 1e-12);
    }
}
