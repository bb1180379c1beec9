//! Exponential moving averages of any module (BYOL's and DINO's target networks).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;

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

/// The values of every float tensor of `online`, in visiting order, for [`blend`].
pub fn snapshot<M: Module>(online: &M) -> Vec<Tensor<1>> {
    let mut values = Flatten(Vec::new());
    online.visit(&mut values);
    values.0
}

/// `target` moved to `momentum` times itself plus `1 - momentum` times the `online` module that
/// `online` is a [`snapshot`] of (0 copies it), every float tensor of it, BatchNorm statistics
/// included. The result takes no gradients.
pub fn blend<M: Module>(target: M, online: Vec<Tensor<1>>, momentum: f64) -> M {
    target
        .map(&mut Blend {
            online: online.into_iter(),
            momentum,
        })
        .no_grad()
}

/// [`blend`] of `target` toward `online`; both must have the same structure.
pub fn update<M: Module>(target: M, online: &M, momentum: f64) -> M {
    blend(target, snapshot(online), momentum)
}

/// The momentum `progress` (0 to 1) of the way through training: it rises from `base` to 1
/// along a cosine, 1 - (1 - base) (cos(pi progress) + 1) / 2 (BYOL, Grill et al. 2020).
pub fn cosine_momentum(base: f64, progress: f64) -> f64 {
    1.0 - (1.0 - base) * ((std::f64::consts::PI * progress.clamp(0.0, 1.0)).cos() + 1.0) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;

    fn values(m: &impl Module) -> Vec<f32> {
        let mut flat = Flatten(Vec::new());
        m.visit(&mut flat);
        flat.0
            .into_iter()
            .flat_map(|t| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap())
            .collect()
    }

    #[test]
    fn momentum_rises_from_the_base_to_one_along_a_cosine() {
        assert!((cosine_momentum(0.99, 0.0) - 0.99).abs() < 1e-12);
        assert!((cosine_momentum(0.99, 0.5) - 0.995).abs() < 1e-12);
        assert!((cosine_momentum(0.99, 1.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn update_blends_every_tensor_and_zero_copies() {
        let device = Device::flex();
        let a: Linear = LinearConfig::new(3, 2).init(&device);
        let b: Linear = LinearConfig::new(3, 2).init(&device);
        let (va, vb) = (values(&a), values(&b));
        assert_ne!(va, vb);
        let blended = values(&update(a.clone(), &b, 0.75));
        for ((x, y), got) in va.iter().zip(&vb).zip(&blended) {
            assert!(
                (got - (0.75 * x + 0.25 * y)).abs() < 1e-6,
                "{got} vs {x} {y}"
            );
        }
        assert_eq!(values(&update(a, &b, 0.0)), vb);
    }
}
