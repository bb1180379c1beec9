//! Which instruction set pretext's own kernels run with: the best the CPU has, or a lower one
//! asked for by `PRETEXT_SIMD` (`avx512`, `avx2` or `baseline`), to compare paths on one
//! machine. Every `simd_fn!` kernel is compiled once per level; the lane reductions use
//! [`super::lanes::LANES`] accumulators at every level, so that all levels add in the same
//! order and give the same bits (gemm, which picks its own AVX2 or AVX-512 kernels, can
//! still round differently from one CPU to another).

use std::sync::atomic::{AtomicU8, Ordering};

/// The environment variable that caps the level.
pub const SIMD_VAR: &str = "PRETEXT_SIMD";

/// An instruction-set level of the kernels, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// x86-64's baseline (SSE2), or plain code on other CPUs.
    Baseline,
    /// AVX2 with FMA (x86-64-v3).
    Avx2,
    /// AVX-512 F, BW, DQ and VL (x86-64-v4).
    Avx512,
}

impl SimdLevel {
    const ALL: [SimdLevel; 3] = [Self::Baseline, Self::Avx2, Self::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Avx2 => "avx2",
            Self::Avx512 => "avx512",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.name() == name)
    }

    /// Every level this CPU can run, lowest first.
    pub fn available() -> Vec<SimdLevel> {
        Self::ALL.into_iter().filter(|&l| l <= detected()).collect()
    }
}

impl std::fmt::Display for SimdLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The highest level this CPU supports.
pub fn detected() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        use std::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl") {
            return SimdLevel::Avx512;
        }
        if has!("avx2") && has!("fma") {
            return SimdLevel::Avx2;
        }
    }
    SimdLevel::Baseline
}

const UNSET: u8 = u8::MAX;
static LEVEL: AtomicU8 = AtomicU8::new(UNSET);

/// The level the kernels run at: the CPU's, capped by `PRETEXT_SIMD` (an unknown value is
/// ignored with a warning, once).
pub fn level() -> SimdLevel {
    match LEVEL.load(Ordering::Relaxed) {
        UNSET => {
            let cap = std::env::var(SIMD_VAR).ok().and_then(|v| {
                let parsed = SimdLevel::parse(&v);
                if parsed.is_none() {
                    eprintln!("warning: {SIMD_VAR}={v:?} is not avx512, avx2 or baseline; ignored");
                }
                parsed
            });
            set_level(cap.unwrap_or(SimdLevel::Avx512))
        }
        v => SimdLevel::ALL[v as usize],
    }
}

/// Runs the kernels at `wanted`, or at the CPU's highest level if that is lower; returns the
/// level set. For comparing levels within one process (tests, benchmarks).
pub fn set_level(wanted: SimdLevel) -> SimdLevel {
    let level = wanted.min(detected());
    LEVEL.store(level as u8, Ordering::Relaxed);
    level
}

/// A function whose body is compiled once for each [`SimdLevel`] and run at [`level`]:
/// pretext is built without `target-cpu`, and burn-flex's `gemm` dispatches the same way.
#[macro_export]
macro_rules! simd_fn {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments, clippy::unused_unit)]
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn body($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            {
                use $crate::kernels::simd::{level, SimdLevel};
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) -> $ret {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                fn avx512($($arg: $ty),*) -> $ret {
                    body($($arg),*)
                }
                match level() {
                    // SAFETY: `level` never exceeds what the CPU reports.
                    SimdLevel::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    SimdLevel::Avx2 => return unsafe { avx2($($arg),*) },
                    SimdLevel::Baseline => {}
                }
            }
            body($($arg),*)
        }
    };
}
