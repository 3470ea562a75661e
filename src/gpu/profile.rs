//! Named GPUs for the plan report (`drconv plan --profile NAME`): what a plan's decisions read
//! of a device (a [`Target`]: not a CPU adapter, indirect dispatch, WebGPU's default limits
//! raised to what desktop drivers report) and the figures a roofline needs. Figures are the
//! vendors' published FP32 peaks (no tensor cores: the layer runs f32 FMAs) and memory
//! bandwidths; `slots_per_unit` is how many 64-invocation workgroups one compute unit holds at
//! once (NVIDIA: 2048 threads and at most 32 blocks per SM; AMD: 32 waves of 64 per CU; Apple:
//! 1024 threads per core).

use serde::Serialize;

use crate::gpu::decide::Target;
use crate::gpu::variants::{AdapterTraits, VariantOverrides};

/// One GPU's figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GpuProfile {
    pub name: &'static str,
    /// What the name stands for.
    pub device: &'static str,
    /// SMs (NVIDIA), CUs (AMD), GPU cores (Apple).
    pub compute_units: u32,
    /// 64-invocation workgroups one compute unit runs at once.
    pub slots_per_unit: u32,
    /// FP32 peak, TFLOP/s (FMA = 2 FLOPs).
    pub fp32_tflops: f64,
    /// Memory bandwidth, GB/s.
    pub bandwidth_gbs: f64,
    /// Invocations per subgroup (warp / wavefront / SIMD-group).
    pub subgroup_size: u32,
    /// Workgroup memory per workgroup the driver offers, bytes.
    pub workgroup_storage: u32,
}

/// The profiles `drconv plan --profile` knows.
pub const PROFILES: [GpuProfile; 6] = [
    GpuProfile {
        name: "h100",
        device: "NVIDIA H100 SXM5 80 GB",
        compute_units: 132,
        slots_per_unit: 32,
        fp32_tflops: 67.0,
        bandwidth_gbs: 3350.0,
        subgroup_size: 32,
        workgroup_storage: 49152,
    },
    GpuProfile {
        name: "h200",
        device: "NVIDIA H200 SXM 141 GB",
        compute_units: 132,
        slots_per_unit: 32,
        fp32_tflops: 67.0,
        bandwidth_gbs: 4800.0,
        subgroup_size: 32,
        workgroup_storage: 49152,
    },
    GpuProfile {
        name: "a100",
        device: "NVIDIA A100 SXM4 80 GB",
        compute_units: 108,
        slots_per_unit: 32,
        fp32_tflops: 19.5,
        bandwidth_gbs: 2039.0,
        subgroup_size: 32,
        workgroup_storage: 49152,
    },
    GpuProfile {
        name: "rtx4090",
        device: "NVIDIA GeForce RTX 4090",
        compute_units: 128,
        slots_per_unit: 24,
        fp32_tflops: 82.6,
        bandwidth_gbs: 1008.0,
        subgroup_size: 32,
        workgroup_storage: 49152,
    },
    GpuProfile {
        name: "rx7900xtx",
        device: "AMD Radeon RX 7900 XTX (FP32 without dual issue)",
        compute_units: 96,
        slots_per_unit: 32,
        fp32_tflops: 30.7,
        bandwidth_gbs: 960.0,
        subgroup_size: 64,
        workgroup_storage: 65536,
    },
    GpuProfile {
        name: "m2",
        device: "Apple M2 (10-core GPU)",
        compute_units: 10,
        slots_per_unit: 16,
        fp32_tflops: 3.6,
        bandwidth_gbs: 100.0,
        subgroup_size: 32,
        workgroup_storage: 32768,
    },
];

impl GpuProfile {
    /// The profile called `name`, or an error listing the names.
    pub fn named(name: &str) -> Result<GpuProfile, String> {
        PROFILES
            .iter()
            .find(|p| p.name == name)
            .copied()
            .ok_or_else(|| {
                let names: Vec<_> = PROFILES.iter().map(|p| p.name).collect();
                format!("no GPU profile {name:?}; known: {}", names.join(", "))
            })
    }

    /// What a plan's decisions read of this GPU: its family's variants, indirect dispatch,
    /// desktop limits.
    pub fn target(&self, forced: VariantOverrides) -> Target {
        Target {
            traits: AdapterTraits {
                cpu: false,
                indirect: true,
            },
            limits: wgpu::Limits {
                max_storage_buffer_binding_size: (2u64 << 30) - 4,
                max_buffer_size: 2 << 30,
                max_compute_workgroup_storage_size: self.workgroup_storage,
                max_compute_invocations_per_workgroup: 1024,
                max_compute_workgroup_size_x: 1024,
                max_compute_workgroup_size_y: 1024,
                max_storage_buffers_per_shader_stage: 16,
                ..wgpu::Limits::default()
            },
            forced,
            merge_stages: true,
            compute_units: self.compute_units as u64,
        }
    }

    /// Workgroups of 64 invocations the whole chip runs at once.
    pub fn slots(&self) -> u64 {
        (self.compute_units * self.slots_per_unit) as u64
    }

    /// The least time, seconds, `flops` and `bytes` can take on this GPU.
    pub fn floor_s(&self, flops: u64, bytes: u64) -> f64 {
        let compute = flops as f64 / (self.fp32_tflops * 1e12);
        let memory = bytes as f64 / (self.bandwidth_gbs * 1e9);
        compute.max(memory)
    }
}
