//! A YOLO-style neck with two DRConv blocks, in burn, trained on the GPU with drconv's kernels:
//!
//! ```text
//! cargo run --release --features burn-dev --example burn_neck
//! ```
//!
//! The task is the demo's content-dependent filter (grey where the neighbourhood is bright,
//! doubled contrast where it is dark) of the bundled image at three scales. The model
//! (Conv-BN-SiLU stem, DRConv-BN-SiLU blocks with 2 and 4 regions, a 1x1 head) trains with burn's
//! Adam beside the same model with a plain 3x3 `Conv2d` in each DRConv's place; the example
//! prints both losses, writes each DRConv block's learned region map to `out/burn_neck/`, then
//! loads the PyTorch export of the same model (`scripts/export_burn_neck.py`, the reference
//! `DRConv2d`) and checks that burn + drconv compute PyTorch's output. `--cpu` runs all of it on
//! burn's CPU backend (burn's ops instead of our kernels); `--help` lists the options.

#[path = "burn_neck/model.rs"]
mod model;

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::store::{ModuleSnapshot, PytorchStore};
use burn::tensor::{Device, Tensor, TensorData};
use clap::Parser;
use drconv::burn::{DrConv2d, Path, PYTORCH_KEEP_INDICES};
use drconv::internal::demo::image_io::{
    fit, load_rgb, region_overlay, save_png, to_tensor, upscale,
};
use drconv::internal::demo::target::{make_target, DESCRIPTION};
use indicatif::{ProgressBar, ProgressStyle};
use model::{ConvNeck, Neck, Net};

#[derive(Debug, Parser)]
#[command(
    name = "burn_neck",
    about = "DRConv blocks in a burn model, trained on the GPU"
)]
struct Args {
    /// Adam steps per model.
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-2)]
    lr: f64,
    /// The image sizes (longer side) trained on, in turn.
    #[arg(long, value_delimiter = ',', default_values_t = [64, 48, 32])]
    scales: Vec<u32>,
    /// Where the region maps go.
    #[arg(long, default_value = "out/burn_neck")]
    out: PathBuf,
    /// burn's CPU backend (burn's ops) instead of the wgpu device (drconv's kernels).
    #[arg(long)]
    cpu: bool,
}

/// One scale of the task: the image and its target, as burn tensors, and the image itself.
struct Sample {
    x: Tensor<4>,
    target: Tensor<4>,
    image: image::RgbImage,
}

fn burn_tensor(t: &drconv::Tensor, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(t.data.clone(), t.shape.clone()), device)
}

fn samples(scales: &[u32], device: &Device) -> drconv::Result<Vec<Sample>> {
    let full = load_rgb(None)?;
    scales
        .iter()
        .map(|&side| {
            let image = fit(full.clone(), side)?;
            let x = to_tensor(&image, 3)?;
            let (target, _) = make_target(&x)?;
            Ok(Sample {
                x: burn_tensor(&x, device),
                target: burn_tensor(&target, device),
                image,
            })
        })
        .collect()
}

fn mse(y: Tensor<4>, t: Tensor<4>) -> Tensor<1> {
    (y - t).powi_scalar(2).mean()
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

/// Trains `model` for `args.steps` Adam steps, cycling through the scales; returns it and the
/// seconds per step.
fn train<M: Net>(name: &str, mut model: M, data: &[Sample], args: &Args) -> (M, f64) {
    let mut optim = AdamConfig::new().init();
    let bar = ProgressBar::new(args.steps as u64).with_style(
        ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    let start = Instant::now();
    for step in 0..args.steps {
        let s = &data[step % data.len()];
        let loss = mse(model.run(s.x.clone()), s.target.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(args.lr, model, grads);
        if step % 20 == 0 || step + 1 == args.steps {
            bar.set_message(format!("loss {:.5}", scalar(loss)));
        }
        bar.inc(1);
    }
    bar.finish();
    (model, start.elapsed().as_secs_f64() / args.steps as f64)
}

/// The eval-mode loss at every scale (`data` on a device without autodiff).
fn eval_losses<M: Net>(model: &M, data: &[Sample]) -> Vec<f64> {
    let model = model.valid();
    data.iter()
        .map(|s| scalar(mse(model.run(s.x.clone()), s.target.clone())))
        .collect()
}

/// Each DRConv block's region map at the largest scale, over the image, as PNGs.
fn write_region_maps(
    model: &Neck,
    sample: &Sample,
    out: &std::path::Path,
) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let model = model.valid();
    let inputs = model.block_inputs(sample.x.clone());
    let blocks: [(&str, &DrConv2d); 2] = [
        ("block1", &model.block1.drconv),
        ("block2", &model.block2.drconv),
    ];
    let mut paths = Vec::new();
    for ((name, layer), input) in blocks.into_iter().zip(inputs) {
        let regions: Vec<i32> = layer
            .regions(input)
            .map_err(|e| e.to_string())?
            .into_data()
            .convert::<i32>()
            .try_to_vec::<i32>()
            .map_err(|e| format!("{e:?}"))?;
        let overlay = region_overlay(&sample.image, &regions).map_err(|e| e.to_string())?;
        let path = out.join(format!("{name}_regions.png"));
        save_png(&upscale(&overlay, 4), &path).map_err(|e| e.to_string())?;
        paths.push(path);
    }
    Ok(paths)
}

/// Loads the PyTorch export and returns the largest difference from PyTorch's output.
fn pytorch_match(device: &Device) -> Result<f64, String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/burn_neck");
    let mut model = Neck::new(device);
    let mut store = PytorchStore::from_file(format!("{dir}/neck.pt"))
        .map_indices_contiguous_except(PYTORCH_KEEP_INDICES)
        .allow_partial(true);
    model.load_from(&mut store).map_err(|e| e.to_string())?;
    let bytes = std::fs::read(format!("{dir}/neck_io.safetensors")).map_err(|e| e.to_string())?;
    let io = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| e.to_string())?;
    let get = |name: &str| -> Result<drconv::Tensor, String> {
        let v = io.tensor(name).map_err(|e| e.to_string())?;
        drconv::Tensor::new(v.shape(), bytemuck::pod_collect_to_vec(v.data()))
            .map_err(|e| e.to_string())
    };
    let (x, want) = (get("x")?, get("y_eval")?);
    let y = model.forward(burn_tensor(&x, device));
    let got = y
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| format!("{e:?}"))?;
    if got.len() != want.data.len() {
        return Err(format!(
            "the neck gave {} outputs, PyTorch's file holds {}",
            got.len(),
            want.data.len()
        ));
    }
    let mut worst = 0.0f64;
    for (g, w) in got.iter().zip(&want.data) {
        let err = (g - w).abs() as f64;
        if err > 1e-5 + 1e-4 * w.abs() as f64 {
            return Err(format!("output {g} differs from PyTorch's {w}"));
        }
        worst = worst.max(err);
    }
    Ok(worst)
}

fn run(args: &Args) -> Result<(), String> {
    let device = if args.cpu {
        Device::flex()
    } else {
        drconv::burn::init_wgpu(&Default::default()).map_err(|e| e.to_string())?
    };
    let path = match Neck::new(&device).block1.drconv.path(&device) {
        Path::Kernels => "drconv's WGSL kernels on burn's wgpu device",
        Path::BurnOps => "burn's ops (the reference algorithm)",
    };
    println!("task: {DESCRIPTION}, image at {:?} px", args.scales);
    println!("DRConv runs {path}");
    let train_device = device.clone().autodiff();
    let data = samples(&args.scales, &train_device).map_err(|e| e.to_string())?;
    let (dr, dr_step) = train("DRConv", Neck::new(&train_device), &data, args);
    let (conv, conv_step) = train("Conv2d", ConvNeck::new(&train_device), &data, args);
    let eval = samples(&args.scales, &device).map_err(|e| e.to_string())?;
    let (dr_loss, conv_loss) = (eval_losses(&dr, &eval), eval_losses(&conv, &eval));
    println!(
        "\n{:>8} {:>12} {:>12} {:>22}",
        "scale", "DRConv MSE", "Conv2d MSE", "Conv2d / DRConv MSE"
    );
    for ((side, d), c) in args.scales.iter().zip(&dr_loss).zip(&conv_loss) {
        // Above 1: DRConv fits the target better than plain convs of the same layout.
        println!("{side:>6}px {d:>12.5} {c:>12.5} {:>21.2}x", c / d);
    }
    println!(
        "time per step: DRConv neck {:.1} ms, Conv2d neck {:.1} ms",
        dr_step * 1e3,
        conv_step * 1e3
    );
    for p in write_region_maps(&dr, &eval[0], &args.out)? {
        println!("wrote {}", p.display());
    }
    let worst = pytorch_match(&device)?;
    println!("PyTorch export (examples/burn_neck/neck.pt): output matches PyTorch's, max error {worst:.2e}");
    Ok(())
}

fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match run(&Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("burn_neck: error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
