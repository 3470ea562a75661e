//! The demo at small settings on the GPU (lavapipe on CI): every file written and readable, the
//! region-aware model beating the one-region model, both losses falling, and the saved weights
//! giving the same output when reloaded (through the API and through `--weights`). Plus the
//! CPU-only pieces: the target is exactly a 2-region DRConv, images round-trip, the plot draws.

use std::path::{Path, PathBuf};

use drconv::cpu;
use drconv::internal::demo::image_io::{self, BUNDLED_IMAGE};
use drconv::internal::demo::plot::{loss_plot, Curve};
use drconv::internal::demo::target::{box3, make_target, oracle_params};
use drconv::internal::demo::{apply_on, train_on, DemoArgs};
use drconv::weights::{infer_config, load_safetensors};
use drconv::{DrConv2d, GpuContext, Mode};

/// A fresh output folder under the target directory (removed first if a previous run left it).
fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// regions.png: the zoomed overlay (blocks of `zoom` equal pixels, not blank) at the top left, a
/// legend below it with one palette swatch per region, white elsewhere.
fn check_region_map(path: &Path, side: u32, zoom: u32, regions: usize) {
    let img = load_png(path).to_rgb8();
    let (w, h) = img.dimensions();
    assert!(w >= side && h > side, "{} is {w}x{h}", path.display());
    let white = [255, 255, 255];
    let mut blank = true;
    for y in 0..side {
        for x in 0..side {
            let p = img.get_pixel(x, y).0;
            let block = img.get_pixel(x - x % zoom, y - y % zoom).0;
            assert_eq!(
                p, block,
                "map pixel ({x}, {y}) breaks its {zoom}x{zoom} block"
            );
            blank &= p == white;
        }
    }
    assert!(!blank, "the map in {} is blank", path.display());
    for y in 0..side {
        for x in side..w {
            assert_eq!(img.get_pixel(x, y).0, white, "beside the map at ({x}, {y})");
        }
    }
    let in_legend = |c: &[u8; 3]| (side..h).any(|y| (0..w).any(|x| img.get_pixel(x, y).0 == *c));
    for colour in &image_io::PALETTE[..regions] {
        assert!(in_legend(colour), "legend lacks swatch {colour:?}");
    }
}

/// The image at `path`, which must be a PNG.
fn load_png(path: &Path) -> image::DynamicImage {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let format = image::guess_format(&bytes).unwrap();
    assert_eq!(format, image::ImageFormat::Png, "{}", path.display());
    image::load_from_memory(&bytes).unwrap()
}

fn png_size(path: &Path) -> (u32, u32) {
    let img = load_png(path);
    (img.width(), img.height())
}

#[test]
fn demo_trains_writes_and_reloads() {
    pollster::block_on(async {
        let ctx = GpuContext::new()
            .await
            .expect("a GPU adapter (lavapipe on CI)");
        let out = out_dir("demo-train");
        let args = DemoArgs {
            size: 32,
            steps: 300,
            loss_every: 10,
            zoom: 2,
            quiet: true,
            out: out.clone(),
            ..DemoArgs::default()
        };
        let run = train_on(&ctx, &args).await.unwrap();
        let s = &run.summary;
        assert_eq!((s.width, s.height), (32, 32));

        // Every file, PNGs at the zoomed size.
        for name in [
            "input.png",
            "target.png",
            "output_single.png",
            "output_regions.png",
        ] {
            assert_eq!(png_size(&out.join(name)), (64, 64), "{name}");
        }
        check_region_map(&out.join("regions.png"), 64, 2, s.regions.region_num);
        let (pw, ph) = png_size(&out.join("loss.png"));
        assert!(pw >= 320 && ph >= 200, "loss.png is {pw}x{ph}");
        assert!(out.join("weights.safetensors").is_file());
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
        for key in ["adapter", "backend", "steps", "single", "regions"] {
            assert!(json.get(key).is_some(), "summary.json lacks {key}");
        }
        assert_eq!(json["steps"], 300);
        assert!(json["regions"]["ms_per_step"].as_f64().unwrap() > 0.0);
        assert_eq!(s.files.len(), 8, "{:?}", s.files);

        // Learning: both fell, and region awareness wins.
        for m in [&s.single, &s.regions] {
            assert!(
                m.final_loss < 0.1 * m.first_loss,
                "region_num {}: loss {} -> {}",
                m.region_num,
                m.first_loss,
                m.final_loss
            );
        }
        assert!(
            s.regions.final_loss < 0.5 * s.single.final_loss,
            "region_num {} loss {} is not well below region_num 1 loss {}",
            s.regions.region_num,
            s.regions.final_loss,
            s.single.final_loss
        );
        // The reported final loss is the MSE of the reported output.
        let mse = drconv::internal::demo::fit::mse(&run.regions.output, &run.target).unwrap();
        assert_eq!(mse, s.regions.final_loss);

        // Reload the written weights: same config, same parameters, same output and regions.
        let path = out.join("weights.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        let config = infer_config(&bytes, 1, 1, 1).unwrap();
        assert_eq!(config, run.regions.config);
        let params = load_safetensors(&config, &path).unwrap();
        assert_eq!(params, run.regions.params);
        let mut layer = DrConv2d::new(ctx.clone(), &params).unwrap();
        let x = layer.upload(&run.input).unwrap();
        layer.plan(&x, Mode::Inference).await.unwrap().poison(&ctx);
        let trace = layer.forward_trace(&x, Mode::Inference).await.unwrap();
        assert_eq!(trace.output.data, run.regions.output.data);
        assert_eq!(trace.region_index, run.regions.region);

        // And through `--weights`, as `drconv demo --weights` runs it.
        let applied_dir = out_dir("demo-apply");
        let apply_args = DemoArgs {
            weights: Some(path.clone()),
            out: applied_dir.clone(),
            ..args.clone()
        };
        let applied = apply_on(&ctx, &apply_args, &path).await.unwrap();
        assert_eq!(applied.summary.config, run.regions.config);
        assert_eq!(applied.output.data, run.regions.output.data);
        assert_eq!(applied.region, run.regions.region);
        for name in ["input.png", "output.png", "regions.png"] {
            assert_eq!(png_size(&applied_dir.join(name)), (64, 64), "{name}");
        }
        assert!(applied_dir.join("summary.json").is_file());
        // Identical output tensors give identical PNGs.
        let a = image::open(applied_dir.join("output.png")).unwrap();
        let b = image::open(out.join("output_regions.png")).unwrap();
        assert_eq!(a.to_rgb8(), b.to_rgb8());
    });
}

#[test]
fn demo_rejects_bad_options() {
    pollster::block_on(async {
        let ctx = GpuContext::new()
            .await
            .expect("a GPU adapter (lavapipe on CI)");
        let bad = [
            DemoArgs {
                steps: 0,
                ..DemoArgs::default()
            },
            DemoArgs {
                regions: 0,
                size: 8,
                steps: 1,
                out: out_dir("demo-bad-regions"),
                quiet: true,
                ..DemoArgs::default()
            },
            DemoArgs {
                image: Some(PathBuf::from("/nonexistent/drconv-demo.png")),
                ..DemoArgs::default()
            },
        ];
        for args in bad {
            let err = train_on(&ctx, &args).await.unwrap_err().to_string();
            assert!(
                err.contains("--steps")
                    || err.contains("region_num")
                    || err.contains("nonexistent"),
                "unexpected error: {err}"
            );
        }
        let missing = Path::new("/nonexistent/weights.safetensors");
        let err = apply_on(&ctx, &DemoArgs::default(), missing)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("weights.safetensors"), "{err}");
    });
}

/// The target is what a hand-built 2-region DRConv computes (CPU reference): the region-aware
/// model can reach it, and [`make_target`] agrees with the documented rule.
#[test]
fn target_is_a_two_region_drconv() {
    let img = image_io::fit(image_io::decode(BUNDLED_IMAGE, "bundled").unwrap(), 40).unwrap();
    let x = image_io::to_tensor(&img, 3).unwrap();
    let (t, bright) = make_target(&x).unwrap();
    let oracle = oracle_params().unwrap();
    let trace = cpu::forward(&oracle, &x).unwrap();
    let (err, ok) = drconv::verify::compare(&trace.output.data, &t.data, 1e-5, 1e-4);
    assert!(ok, "oracle output differs from the target by {err}");
    let plane = 40 * 40;
    let lum: Vec<f32> = (0..plane)
        .map(|i| image_io::luma([x.data[i], x.data[plane + i], x.data[2 * plane + i]]))
        .collect();
    let lum_box = box3(&lum, 40, 40);
    let mut grey = 0;
    for i in 0..plane {
        // Away from exact ties, region 0 (grey) is chosen exactly where the target is grey.
        if lum_box[i].abs() > 1e-5 {
            assert_eq!(trace.region_index[i] == 0, bright[i], "pixel {i}");
        }
        grey += bright[i] as usize;
    }
    // The photo has both kinds of neighbourhood in good measure.
    assert!(
        grey > plane / 5 && grey < plane * 4 / 5,
        "{grey} of {plane} grey"
    );
}

#[test]
fn images_round_trip_and_plot_draws() {
    let img = image_io::fit(image_io::decode(BUNDLED_IMAGE, "bundled").unwrap(), 50).unwrap();
    assert_eq!(img.dimensions(), (50, 50));
    let t = image_io::to_tensor(&img, 3).unwrap();
    assert_eq!(t.shape, vec![1, 3, 50, 50]);
    assert_eq!(image_io::to_image(&t).unwrap(), img);
    let region: Vec<i32> = (0..2500).map(|i| i % 3).collect();
    assert_eq!(image_io::region_counts(&region, 3), vec![834, 833, 833]);
    let overlay = image_io::region_overlay(&img, &region).unwrap();
    assert_ne!(overlay.get_pixel(0, 0), overlay.get_pixel(1, 0));
    assert!(image_io::region_overlay(&img, &region[1..]).is_err());

    let a: Vec<(u64, f32)> = vec![(0, 5.0), (50, 0.1), (100, 0.02)];
    let b: Vec<(u64, f32)> = vec![(0, 2.0), (50, 0.01), (100, 0.002)];
    let plot = loss_plot(
        "loss",
        &[
            Curve {
                label: "one",
                colour: [255, 0, 0],
                points: &a,
            },
            Curve {
                label: "two",
                colour: [0, 0, 255],
                points: &b,
            },
        ],
    )
    .unwrap();
    let count = |c: [u8; 3]| plot.pixels().filter(|p| p.0 == c).count();
    assert!(count([255, 0, 0]) > 200, "red curve missing");
    assert!(count([0, 0, 255]) > 200, "blue curve missing");
    assert!(count([0, 0, 0]) > 500, "axes and labels missing");
    let empty: Vec<(u64, f32)> = vec![(0, f32::NAN)];
    assert!(loss_plot(
        "x",
        &[Curve {
            label: "nan",
            colour: [0, 0, 0],
            points: &empty
        }]
    )
    .is_err());
}
