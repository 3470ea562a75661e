//! Compute pipelines compiled once per (shader, entry point) and shared by every plan and layer
//! on the device; shapes travel in uniforms, never in the pipeline key.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::gpu::shaders::Shader;

#[derive(Default)]
pub struct PipelineCache {
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<(&'static str, &'static str), wgpu::ComputePipeline>>,
}

impl PipelineCache {
    /// The pipeline for `shader`'s `entry`, compiling it on first use.
    pub fn get(
        &self,
        device: &wgpu::Device,
        shader: &Shader,
        entry: &'static str,
    ) -> wgpu::ComputePipeline {
        let key = (shader.name, entry);
        if let Some(p) = self
            .pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return p.clone();
        }
        let module = {
            let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
            modules
                .entry(shader.name)
                .or_insert_with(|| {
                    device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(shader.name),
                        source: wgpu::ShaderSource::Wgsl(shader.source().into()),
                    })
                })
                .clone()
        };
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        self.pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, pipeline.clone());
        pipeline
    }

    /// Number of compiled pipelines (tests check plans reuse them).
    pub fn len(&self) -> usize {
        self.pipelines.lock().map(|p| p.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
