//! `drconv::burn::set_path`: a registered wgpu device runs burn's ops on request and goes back to
//! our kernels, with the same output; a device drconv was not given is an error. Its own test
//! binary: the switch is per device and process-wide, and the other burn tests expect kernels.

mod burn_common;

use burn::tensor::{Device, Distribution, Tensor};
use burn_common::*;
use drconv::burn::{path, set_path, DrConv2dConfig, Path};

#[test]
fn set_path_switches_a_registered_device_and_refuses_others() {
    let device = wgpu();
    let layer = DrConv2dConfig::new(6, 5, 3, 4)
        .with_padding(1)
        .init(&device);
    let x = Tensor::<4>::random([2, 6, 9, 11], Distribution::Normal(0.0, 1.0), &device);
    assert_eq!(layer.path(&device), Path::Kernels);
    let kernels = values(layer.forward(x.clone()));

    set_path(&device, Path::BurnOps).unwrap();
    assert_eq!(path(&device), Path::BurnOps);
    let ops = values(layer.forward(x.clone()));
    set_path(&device, Path::Kernels).unwrap();
    assert_eq!(layer.path(&device), Path::Kernels);
    assert_eq!(
        values(layer.forward(x)),
        kernels,
        "our kernels again, bit for bit"
    );

    let (atol, rtol) = FORWARD;
    for (i, (k, o)) in kernels.iter().zip(&ops).enumerate() {
        assert!(
            f64::from((k - o).abs()) <= atol + rtol * f64::from(o.abs()),
            "element {i}: kernels {k}, burn ops {o}"
        );
    }

    let err = set_path(&Device::flex(), Path::Kernels)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not a wgpu device registered with drconv"),
        "{err}"
    );
    assert_eq!(path(&Device::flex()), Path::BurnOps);
}
