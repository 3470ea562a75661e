//! The layer's parameters on the device, one storage buffer each, in state_dict order.

use crate::error::Result;
use crate::gpu::buffers::GpuTensor;
use crate::gpu::context::GpuContext;
use crate::params::{DrConvParams, ParamId};
use crate::tensor::Tensor;

#[derive(Debug, Clone)]
pub struct GpuParams {
    pub tensors: [GpuTensor; 6],
}

impl GpuParams {
    pub fn upload(ctx: &GpuContext, p: &DrConvParams) -> Result<Self> {
        let mut out = Vec::with_capacity(6);
        for id in ParamId::ALL {
            let t = Tensor::new(&p.shape(id), p.get(id).to_vec())?;
            out.push(ctx.upload(id.name(), &t)?);
        }
        let tensors: [GpuTensor; 6] = out.try_into().expect("six parameters");
        Ok(GpuParams { tensors })
    }

    pub fn get(&self, id: ParamId) -> &GpuTensor {
        &self.tensors[id.index()]
    }

    /// Overwrites the device copy with host values (shapes already checked by `DrConvParams`).
    pub fn write(&self, ctx: &GpuContext, p: &DrConvParams) -> Result<()> {
        for id in ParamId::ALL {
            ctx.write(self.get(id), p.get(id))?;
        }
        Ok(())
    }

    pub async fn read(
        &self,
        ctx: &GpuContext,
        config: crate::config::DrConvConfig,
    ) -> Result<DrConvParams> {
        let mut values: [Vec<f32>; 6] = Default::default();
        for id in ParamId::ALL {
            values[id.index()] = self.get(id).read(ctx).await?.data;
        }
        DrConvParams::from_values(config, values)
    }
}
