//! Times programs on the device: GPU timestamps around the compute pass where the adapter has
//! `TIMESTAMP_QUERY`, else wall time around submit + wait.

use std::time::Instant;

use crate::error::{DrConvError, Result};
use crate::gpu::program::Program;
use crate::gpu::GpuContext;

/// Query slots: one begin/end pair per program of a `time_each` call.
const MAX_PASSES: u32 = 64;

struct Timestamps {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    period_ns: f64,
}

/// Reusable timer of one device; its query set and resolve buffer are made once.
pub struct Timer {
    ts: Option<Timestamps>,
}

impl Timer {
    pub fn new(ctx: &GpuContext) -> Self {
        let ts = ctx
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            .then(|| Timestamps {
                set: ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("bench timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2 * MAX_PASSES,
                }),
                resolve: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("bench timestamps resolve"),
                    size: 16 * MAX_PASSES as u64,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                }),
                period_ns: ctx.queue.get_timestamp_period() as f64,
            });
        Timer { ts }
    }

    /// What the times measure, for the report.
    pub fn kind(&self) -> &'static str {
        if self.ts.is_some() {
            "gpu-timestamps"
        } else {
            "wall"
        }
    }

    /// Milliseconds of one run of `program` in one compute pass.
    pub async fn time(&self, ctx: &GpuContext, program: &Program) -> Result<f64> {
        Ok(self.time_each(ctx, &[program]).await?[0])
    }

    /// Milliseconds of each program, each in its own compute pass (timestamps: one submission;
    /// wall time: one submission each, so the wait is included).
    pub async fn time_each(&self, ctx: &GpuContext, programs: &[&Program]) -> Result<Vec<f64>> {
        let Some(ts) = &self.ts else {
            let mut out = Vec::with_capacity(programs.len());
            for p in programs {
                let mut encoder = ctx.encoder("bench");
                p.encode(&mut encoder);
                let t0 = Instant::now();
                ctx.submit(encoder).await?;
                ctx.poll_wait()?;
                out.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            return Ok(out);
        };
        if programs.len() > MAX_PASSES as usize {
            return Err(DrConvError::TooLarge {
                what: "programs timed in one bench submission".into(),
                size: programs.len() as u64,
                limit: MAX_PASSES as u64,
            });
        }
        let mut encoder = ctx.encoder("bench");
        for (i, p) in programs.iter().enumerate() {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("bench"),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &ts.set,
                    beginning_of_pass_write_index: Some(2 * i as u32),
                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                }),
            });
            p.encode_into(&mut pass);
        }
        let n = 2 * programs.len() as u32;
        encoder.resolve_query_set(&ts.set, 0..n, &ts.resolve, 0);
        ctx.submit(encoder).await?;
        let bytes = ctx.read_bytes(&ts.resolve, 0, 8 * n as u64).await?;
        let ticks: &[u64] = bytemuck::cast_slice(&bytes);
        Ok(ticks
            .chunks_exact(2)
            .map(|t| t[1].saturating_sub(t[0]) as f64 * ts.period_ns * 1e-6)
            .collect())
    }
}

/// Median and minimum of repeated timings.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub reps: usize,
}

/// Repeats `run` after `warmup` calls until `budget_s` seconds of wall time have passed (at least
/// `min_reps`, at most `max_reps` timed calls) and returns the median and minimum of its results.
pub async fn median_of<F, Fut>(
    warmup: usize,
    min_reps: usize,
    max_reps: usize,
    budget_s: f64,
    mut run: F,
) -> Result<Stats>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<f64>>,
{
    for _ in 0..warmup {
        run().await?;
    }
    let t0 = Instant::now();
    let mut times = Vec::new();
    while times.len() < min_reps
        || (times.len() < max_reps && t0.elapsed().as_secs_f64() < budget_s)
    {
        times.push(run().await?);
    }
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    Ok(Stats {
        median: median(&mut times),
        min,
        reps: times.len(),
    })
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}
