//! Which compute device the process runs on: the CPU (burn's `flex` backend), a GPU through
//! burn's CubeCL runtimes (`wgpu`, `vulkan`, `cuda`), or libtorch, PyTorch's own C++ library
//! (`tch-cuda`, `tch-cpu`), chosen once at start by `--device`.
//! Several devices train one batch together through [`data_parallel`]; several processes
//! (ranks, started by `mpirun` or `srun`) through [`ranks`].

pub mod data_parallel;
#[cfg(feature = "mpi")]
mod mpi;
pub mod precision;
pub mod rank_grads;
pub mod ranks;

pub use precision::Precision;

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use burn::tensor::Device;

/// A device as written on the command line: `cpu`, `wgpu`, `wgpu:N`, `vulkan`, `vulkan:N`,
/// `cuda`, `cuda:N`, `tch-cuda`, `tch-cuda:N`, `tch-cpu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    /// `None`: the adapter wgpu ranks first (a high-power GPU where there is one).
    Wgpu(Option<usize>),
    /// wgpu pinned to Vulkan, with kernels compiled to SPIR-V rather than WGSL: burn's path to
    /// cooperative-matrix (tensor-core) matrix products. `None` as for `Wgpu`.
    Vulkan(Option<usize>),
    Cuda(usize),
    /// libtorch on an NVIDIA GPU (burn's `tch` backend): cuDNN convolutions and cuBLAS matrix
    /// products, the kernels PyTorch itself runs.
    TchCuda(usize),
    /// libtorch on the CPU: the `tch` build's check that runs without a GPU.
    TchCpu,
}

impl Default for DeviceSpec {
    fn default() -> Self {
        DeviceSpec::Cpu
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Wgpu(None) => write!(f, "wgpu"),
            DeviceSpec::Wgpu(Some(i)) => write!(f, "wgpu:{i}"),
            DeviceSpec::Vulkan(None) => write!(f, "vulkan"),
            DeviceSpec::Vulkan(Some(i)) => write!(f, "vulkan:{i}"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
            DeviceSpec::TchCuda(i) => write!(f, "tch-cuda:{i}"),
            DeviceSpec::TchCpu => write!(f, "tch-cpu"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, index) = match s.split_once(':') {
            Some((kind, index)) => {
                let index = index.parse::<usize>().map_err(|_| {
                    format!("device '{s}': the index after ':' must be a number, as in cuda:0")
                })?;
                (kind, Some(index))
            }
            None => (s, None),
        };
        match (kind, index) {
            ("cpu", None) => Ok(DeviceSpec::Cpu),
            ("cpu", Some(_)) => Err(format!("device '{s}': the CPU takes no index")),
            ("wgpu", index) => Ok(DeviceSpec::Wgpu(index)),
            ("vulkan", index) => Ok(DeviceSpec::Vulkan(index)),
            ("cuda", index) => Ok(DeviceSpec::Cuda(index.unwrap_or(0))),
            ("tch-cuda", index) => Ok(DeviceSpec::TchCuda(index.unwrap_or(0))),
            ("tch-cpu", None) => Ok(DeviceSpec::TchCpu),
            ("tch-cpu", Some(_)) => Err(format!("device '{s}': the CPU takes no index")),
            _ => Err(format!(
                "device '{s}': expected cpu, wgpu, wgpu:N, vulkan, vulkan:N, cuda, cuda:N, \
                 tch-cuda, tch-cuda:N or tch-cpu"
            )),
        }
    }
}

/// Several devices for data-parallel training, as in `cuda:0,cuda:1`.
pub fn parse_device_list(s: &str) -> Result<Vec<DeviceSpec>, String> {
    let specs = s
        .split(',')
        .map(|part| part.trim().parse())
        .collect::<Result<Vec<DeviceSpec>, String>>()?;
    if specs.is_empty() {
        return Err("no device given".into());
    }
    if specs
        .iter()
        .any(|d| std::mem::discriminant(d) != std::mem::discriminant(&specs[0]))
    {
        return Err(format!(
            "devices '{s}': data-parallel devices must all be of one kind"
        ));
    }
    Ok(specs)
}

/// `--devices`: several devices of one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceList(pub Vec<DeviceSpec>);

impl FromStr for DeviceList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_device_list(s).map(DeviceList)
    }
}

impl DeviceSpec {
    /// The burn device (without autodiff), or why this build cannot make it.
    pub fn device(self) -> Result<Device, String> {
        match self {
            DeviceSpec::Cpu => Ok(Device::flex()),
            DeviceSpec::Wgpu(index) => wgpu_device(index),
            DeviceSpec::Vulkan(index) => vulkan_device(index),
            DeviceSpec::Cuda(index) => cuda_device(index),
            DeviceSpec::TchCuda(index) => tch_device(Some(index)),
            DeviceSpec::TchCpu => tch_device(None),
        }
    }
}

/// The adapter `index` names: the first wgpu ranks, or the N-th discrete GPU.
#[cfg(any(feature = "wgpu", feature = "vulkan"))]
fn adapter(index: Option<usize>) -> burn::tensor::DeviceKind {
    use burn::tensor::DeviceKind;
    match index {
        None => DeviceKind::DefaultDevice,
        Some(i) => DeviceKind::DiscreteGpu(i),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_device(index: Option<usize>) -> Result<Device, String> {
    Ok(Device::wgpu(adapter(index)))
}

#[cfg(feature = "vulkan")]
fn vulkan_device(index: Option<usize>) -> Result<Device, String> {
    Ok(Device::vulkan(adapter(index)))
}

#[cfg(not(feature = "vulkan"))]
fn vulkan_device(_: Option<usize>) -> Result<Device, String> {
    Err(not_built("vulkan"))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device(_: Option<usize>) -> Result<Device, String> {
    Err(not_built("wgpu"))
}

#[cfg(feature = "cuda")]
fn cuda_device(index: usize) -> Result<Device, String> {
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_: usize) -> Result<Device, String> {
    Err(not_built("cuda"))
}

/// libtorch's CUDA device `index`, or its CPU device for `None`. burn 0.22 marks burn-tch as
/// deprecated in favour of its CubeCL backends, but those have no cuDNN, and `cuda` cannot be
/// built without a download (docs/gpu.md).
#[cfg(feature = "tch")]
#[allow(deprecated)]
fn tch_device(index: Option<usize>) -> Result<Device, String> {
    Ok(match index {
        Some(i) => Device::libtorch_cuda(i),
        None => Device::libtorch(),
    })
}

#[cfg(not(feature = "tch"))]
fn tch_device(_: Option<usize>) -> Result<Device, String> {
    Err(not_built("tch"))
}

#[cfg(any(
    not(feature = "wgpu"),
    not(feature = "vulkan"),
    not(feature = "cuda"),
    not(feature = "tch")
))]
fn not_built(feature: &str) -> String {
    format!(
        "this pretext was built without the '{feature}' backend; rebuild it with \
         `cargo build --release --features {feature}` (README, 'GPUs')"
    )
}

static SELECTED: OnceLock<DeviceSpec> = OnceLock::new();
static PRECISION: OnceLock<Precision> = OnceLock::new();

/// Process-wide settings that must be made before any other thread starts: libtorch reads its
/// TF32 switch for cuBLAS from the environment once. TF32 matrix products are allowed, as
/// PyTorch allows them in cuDNN's convolutions (`TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=0` forbids
/// them).
pub fn prepare_process() {
    #[cfg(feature = "tch")]
    if std::env::var_os(TCH_TF32_VARIABLE).is_none() {
        // SAFETY: called first thing in `main`, while no other thread can read the environment.
        unsafe { std::env::set_var(TCH_TF32_VARIABLE, "1") };
    }
}

#[cfg(feature = "tch")]
const TCH_TF32_VARIABLE: &str = "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE";

/// The float type of every device, chosen once before [`select`] (fp32 if never chosen).
pub fn set_precision(precision: Precision) -> Result<(), String> {
    let chosen = *PRECISION.get_or_init(|| precision);
    if chosen != precision {
        return Err(format!(
            "precision {precision} asked for after {chosen} was already in use"
        ));
    }
    Ok(())
}

pub fn precision() -> Precision {
    *PRECISION.get_or_init(Precision::default)
}

/// Choose the process's device once, before any tensor is made. Later calls must agree.
/// A GPU is started here, so that a machine without one fails with a message, not a panic
/// in the middle of a run.
pub fn select(spec: DeviceSpec) -> Result<(), String> {
    ready(spec)?;
    let chosen = *SELECTED.get_or_init(|| spec);
    if chosen != spec {
        return Err(format!(
            "device {spec} asked for after {chosen} was already in use"
        ));
    }
    Ok(())
}

/// Check that this build can make `spec`'s device and, for a GPU, that it starts.
fn ready(spec: DeviceSpec) -> Result<(), String> {
    let mut device = spec.device()?;
    configure(spec, precision(), &mut device)?;
    if spec != DeviceSpec::Cpu {
        start(spec, &device)?;
    }
    Ok(())
}

/// Sets the device's float type to the run's precision, before any tensor is made on it, and
/// libtorch's cuDNN to autotune its convolutions (as `torch.backends.cudnn.benchmark`).
fn configure(spec: DeviceSpec, precision: Precision, device: &mut Device) -> Result<(), String> {
    #[cfg(feature = "tch")]
    if let DeviceSpec::TchCuda(_) = spec {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let Some(dtype) = precision.float_dtype() else {
        return Ok(());
    };
    if spec == DeviceSpec::Cpu {
        return Err(format!(
            "precision {precision}: pretext's CPU kernels compute in fp32; {precision} runs on \
             the GPU and libtorch devices (wgpu, vulkan, cuda, tch-cuda, tch-cpu)"
        ));
    }
    match device.configure(dtype) {
        // A device named twice in `--devices` is configured twice.
        Err(_) if device.settings().float_dtype == dtype => Ok(()),
        outcome => {
            outcome.map_err(|e| format!("device {spec} cannot compute in {precision}: {e:?}"))
        }
    }
}

/// Make one small tensor on `device` and read it back. GPU runtimes panic when no adapter or
/// driver is found; the panic becomes an error naming the device.
fn start(spec: DeviceSpec, device: &Device) -> Result<(), String> {
    use burn::tensor::Tensor;
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome =
        std::panic::catch_unwind(|| Tensor::<1>::ones([4], device).sum().into_scalar::<f32>());
    std::panic::set_hook(quiet);
    match outcome {
        Ok(sum) if sum == 4.0 => Ok(()),
        Ok(sum) => Err(format!("device {spec} computed 1+1+1+1 = {sum}")),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown error".into());
            Err(format!(
                "device {spec} could not be started ({}); is there a GPU with a working \
                 driver (Vulkan for wgpu and vulkan, CUDA for cuda and tch-cuda)?",
                why.lines().next().unwrap_or("")
            ))
        }
    }
}

static PARALLEL: OnceLock<Vec<DeviceSpec>> = OnceLock::new();

/// Train data-parallel over `specs` (`--devices`); the first also becomes the process's
/// device, which holds the model and runs everything that is not a training step.
pub fn select_data_parallel(specs: &[DeviceSpec]) -> Result<(), String> {
    let first = *specs.first().ok_or("no device given")?;
    select(first)?;
    for spec in &specs[1..] {
        ready(*spec)?;
    }
    PARALLEL
        .set(specs.to_vec())
        .map_err(|_| "the data-parallel devices were already chosen".to_string())
}

/// The data-parallel set-up: the devices of [`select_data_parallel`] when it named more than
/// one, or the process's one device when it is one of several ranks. Each batch is cut into
/// one shard per device of every rank; the devices' gradients are summed in the process, then
/// over the ranks.
pub fn data_parallel() -> Option<data_parallel::DataParallel> {
    let devices = match PARALLEL.get().filter(|specs| specs.len() > 1) {
        Some(specs) => specs
            .iter()
            .map(|s| s.device().expect("checked when selected").autodiff())
            .collect(),
        None if ranks::world() > 1 => vec![train_device()],
        None => return None,
    };
    Some(data_parallel::DataParallel::new(devices))
}

/// Whether `--devices` named more than one device.
pub fn several_devices() -> bool {
    PARALLEL.get().is_some_and(|specs| specs.len() > 1)
}

/// Tells, once per task, that data-parallel training does not cover `task`, which then trains
/// on the first device (a study or transfer builds many learners of one task).
pub fn warn_first_device_only(task: &str) {
    static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if !warned.iter().any(|t| t == task) {
        warned.push(task.to_string());
        eprintln!(
            "warning: data-parallel training covers SimCLR and the classifier tasks; \
             {task} trains on the first device only"
        );
    }
}

/// The device chosen by [`select`], the CPU if none was.
pub fn selected() -> DeviceSpec {
    *SELECTED.get_or_init(DeviceSpec::default)
}

/// Whether `device` is the CPU's flex backend (with or without autodiff), where pretext's own
/// kernels run.
pub fn is_flex(device: &Device) -> bool {
    matches!(
        device.clone().inner().as_dispatch(),
        burn::backend::DispatchDevice::Flex(_)
    )
}

/// The device training runs on, and the one inference runs on.
pub fn train_device() -> Device {
    infer_device().autodiff()
}

pub fn infer_device() -> Device {
    selected()
        .device()
        .expect("select() checked that this build can make the device")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_and_print_back() {
        for (text, spec) in [
            ("cpu", DeviceSpec::Cpu),
            ("wgpu", DeviceSpec::Wgpu(None)),
            ("wgpu:1", DeviceSpec::Wgpu(Some(1))),
            ("vulkan", DeviceSpec::Vulkan(None)),
            ("vulkan:0", DeviceSpec::Vulkan(Some(0))),
            ("cuda:0", DeviceSpec::Cuda(0)),
            ("tch-cuda:1", DeviceSpec::TchCuda(1)),
            ("tch-cpu", DeviceSpec::TchCpu),
        ] {
            assert_eq!(text.parse::<DeviceSpec>(), Ok(spec));
            assert_eq!(spec.to_string(), text);
        }
        assert_eq!("cuda".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("tch-cuda".parse::<DeviceSpec>(), Ok(DeviceSpec::TchCuda(0)));
    }

    #[test]
    fn bf16_is_refused_on_the_cpu_kernels_and_fp32_changes_nothing() {
        let err = configure(DeviceSpec::Cpu, Precision::Bf16, &mut Device::flex()).unwrap_err();
        assert!(err.contains("fp32") && err.contains("tch-cuda"), "{err}");
        assert_eq!(
            configure(DeviceSpec::Cpu, Precision::Fp32, &mut Device::flex()),
            Ok(())
        );
    }

    #[cfg(not(feature = "tch"))]
    #[test]
    fn the_tch_backend_left_out_of_the_build_is_named_with_the_fix() {
        let err = DeviceSpec::TchCuda(0).device().unwrap_err();
        assert!(err.contains("--features tch"), "{err}");
    }

    #[test]
    fn bad_device_names_say_what_is_expected() {
        for bad in ["gpu", "cuda:x", "cpu:1", "tch-cpu:0", "tch", ""] {
            let err = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(err.contains("device"), "{bad}: {err}");
        }
        let err = parse_device_list("cpu,wgpu").unwrap_err();
        assert!(err.contains("one kind"), "{err}");
        assert_eq!(
            parse_device_list("cuda:0, cuda:1"),
            Ok(vec![DeviceSpec::Cuda(0), DeviceSpec::Cuda(1)])
        );
    }

    #[cfg(not(feature = "wgpu"))]
    #[test]
    fn a_backend_left_out_of_the_build_is_named_with_the_fix() {
        let err = DeviceSpec::Wgpu(None).device().unwrap_err();
        assert!(err.contains("--features wgpu"), "{err}");
    }

    #[cfg(not(feature = "vulkan"))]
    #[test]
    fn the_vulkan_backend_left_out_of_the_build_is_named_with_the_fix() {
        let err = DeviceSpec::Vulkan(Some(1)).device().unwrap_err();
        assert!(err.contains("--features vulkan"), "{err}");
    }
}
