//! Every WGSL module of the crate through naga's front end, validator and the four native back
//! ends, without a GPU. This is how the Metal (MSL) and DX12 (HLSL) paths are tested on Linux;
//! SPIR-V and GLSL are also exercised for real by the Vulkan and GL suites.
//!
//! Each test walks every shader and reports all failures at once, so one broken module does not
//! hide another.

use drconv::internal::gpu::limits::LOGITS_GEN_LISTS_STORAGE_BINDINGS;
use drconv::internal::gpu::shaders::{Shader, ALL};
use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use naga::{AddressSpace, Module, ShaderStage};

/// WebGPU's default limits: what every adapter guarantees, and all a browser grants unasked.
const MAX_INVOCATIONS: u32 = 256;
const MAX_STORAGE_BUFFERS_PER_STAGE: usize = 8;
const MAX_WORKGROUP_STORAGE_BYTES: u32 = 16384;
const MAX_UNIFORM_BINDING_BYTES: u32 = 65536;

/// Parses and validates a module. The shaders use no optional capability (no f16, f64,
/// subgroups or immediates), so they validate with `Capabilities::empty()`: the set every
/// backend supports.
fn parse(shader: &Shader) -> Result<(Module, ModuleInfo), String> {
    let source = shader.source();
    let module = naga::front::wgsl::parse_str(&source).map_err(|e| {
        format!(
            "{}: WGSL parse error:\n{}",
            shader.name,
            e.emit_to_string(&source)
        )
    })?;
    let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
        .validate(&module)
        .map_err(|e| {
            format!(
                "{}: validation error:\n{}",
                shader.name,
                e.emit_to_string(&source)
            )
        })?;
    Ok((module, info))
}

/// Runs `check` on every parsed shader and fails with every error found.
fn for_each_shader(check: impl Fn(&Shader, &Module, &ModuleInfo) -> Vec<String>) {
    let mut errors = Vec::new();
    for shader in ALL {
        match parse(shader) {
            Ok((module, info)) => errors.extend(check(shader, &module, &info)),
            Err(e) => errors.push(e),
        }
    }
    assert!(
        errors.is_empty(),
        "{} problem(s):\n\n{}",
        errors.len(),
        errors.join("\n\n")
    );
}

#[test]
fn registry_lists_every_shader_file() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files: Vec<String> = ["shaders", "src/bench"]
        .iter()
        .flat_map(|dir| {
            std::fs::read_dir(format!("{root}/{dir}"))
                .unwrap()
                .map(move |e| format!("{dir}/{}", e.unwrap().file_name().to_string_lossy()))
        })
        .filter(|n| n.ends_with(".wgsl") && n != "shaders/common.wgsl")
        .collect();
    files.sort();
    let mut registered: Vec<String> = ALL.iter().map(|s| s.file.to_string()).collect();
    registered.sort();
    registered.dedup();
    assert_eq!(
        files, registered,
        "every shaders/*.wgsl (and the benchmark's) must be in gpu::shaders::ALL"
    );
}

#[test]
fn entry_points_match_registry_and_fit_webgpu_defaults() {
    for_each_shader(|shader, module, info| {
        let mut errors = Vec::new();
        let mut found: Vec<&str> = module
            .entry_points
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        found.sort_unstable();
        let mut declared = shader.entry_points.to_vec();
        declared.sort_unstable();
        if found != declared {
            errors.push(format!(
                "{}: WGSL entry points {found:?}, registry {declared:?}",
                shader.name
            ));
        }
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        for (i, ep) in module.entry_points.iter().enumerate() {
            let at = format!("{}::{}", shader.name, ep.name);
            if ep.stage != ShaderStage::Compute {
                errors.push(format!("{at}: stage {:?}, expected compute", ep.stage));
            }
            let invocations: u32 = ep.workgroup_size.iter().product();
            if invocations > MAX_INVOCATIONS {
                errors.push(format!(
                    "{at}: workgroup {:?} has {invocations} invocations, WebGPU guarantees {MAX_INVOCATIONS}",
                    ep.workgroup_size
                ));
            }
            let uses = info.get_entry_point(i);
            let used = |space: fn(&AddressSpace) -> bool| {
                module
                    .global_variables
                    .iter()
                    .filter(move |(h, g)| space(&g.space) && !uses[*h].is_empty())
            };
            let storage = used(|s| matches!(s, AddressSpace::Storage { .. })).count();
            // The one entry plans take only where the device allows more (`gpu::decide`).
            let most = match at.as_str() {
                "gen_lists::logits_gen_lists" => LOGITS_GEN_LISTS_STORAGE_BINDINGS as usize,
                _ => MAX_STORAGE_BUFFERS_PER_STAGE,
            };
            if storage > most {
                errors.push(format!(
                    "{at}: binds {storage} storage buffers, over {most}"
                ));
            }
            for (_, g) in used(|s| *s == AddressSpace::Uniform) {
                if layouter[g.ty].size > MAX_UNIFORM_BINDING_BYTES {
                    errors.push(format!(
                        "{at}: a {}-byte uniform binding, WebGPU guarantees {MAX_UNIFORM_BINDING_BYTES}",
                        layouter[g.ty].size
                    ));
                }
            }
            let shared: u32 = used(|s| *s == AddressSpace::WorkGroup)
                .map(|(_, g)| layouter[g.ty].size)
                .sum();
            if shared > MAX_WORKGROUP_STORAGE_BYTES {
                errors.push(format!(
                    "{at}: {shared} bytes of workgroup memory, WebGPU guarantees {MAX_WORKGROUP_STORAGE_BYTES}"
                ));
            }
        }
        errors
    });
}

#[test]
fn spirv() {
    for_each_shader(|shader, module, info| {
        let opts = spv::Options::default();
        let mut errors = Vec::new();
        for &entry in shader.entry_points {
            let pipeline = spv::PipelineOptions {
                shader_stage: ShaderStage::Compute,
                entry_point: entry.to_string(),
            };
            let words = match spv::write_vec(module, info, &opts, Some(&pipeline)) {
                Ok(w) => w,
                Err(e) => {
                    errors.push(format!("{}::{entry}: SPIR-V: {e}", shader.name));
                    continue;
                }
            };
            // OpEntryPoint stores the name as a nul-terminated UTF-8 literal.
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            let needle = [entry.as_bytes(), &[0]].concat();
            if words.first() != Some(&0x0723_0203)
                || !bytes.windows(needle.len()).any(|w| w == needle)
            {
                errors.push(format!(
                    "{}::{entry}: no SPIR-V header or entry point name",
                    shader.name
                ));
            }
        }
        errors
    });
}

#[test]
fn msl() {
    for_each_shader(|shader, module, info| {
        // Metal 2.0: what wgpu's Metal backend needs at minimum.
        let opts = msl::Options {
            lang_version: (2, 0),
            ..Default::default()
        };
        let (src, ti) =
            match msl::write_string(module, info, &opts, &msl::PipelineOptions::default()) {
                Ok(r) => r,
                Err(e) => return vec![format!("{}: MSL: {e}", shader.name)],
            };
        if ti.entry_point_names.len() != shader.entry_points.len() {
            return vec![format!(
                "{}: MSL has {} entry points",
                shader.name,
                ti.entry_point_names.len()
            )];
        }
        ti.entry_point_names
            .iter()
            .filter_map(|name| match name {
                Err(e) => Some(format!("{}: MSL entry point: {e}", shader.name)),
                Ok(n) if !src.contains(&format!("kernel void {n}(")) => {
                    Some(format!("{}: no `kernel void {n}(` in the MSL", shader.name))
                }
                Ok(_) => None,
            })
            .collect()
    });
}

#[test]
fn hlsl() {
    for_each_shader(|shader, module, info| {
        // Shader model 5.1: DX12's minimum, what wgpu compiles with FXC.
        let opts = hlsl::Options {
            shader_model: hlsl::ShaderModel::V5_1,
            ..Default::default()
        };
        let mut src = String::new();
        let reflection = match hlsl::Writer::new(&mut src, &opts, &hlsl::PipelineOptions::default())
            .write(module, info, None)
        {
            Ok(r) => r,
            Err(e) => return vec![format!("{}: HLSL: {e}", shader.name)],
        };
        let mut errors = Vec::new();
        for (ep, name) in module
            .entry_points
            .iter()
            .zip(&reflection.entry_point_names)
        {
            let [x, y, z] = ep.workgroup_size;
            match name {
                Err(e) => errors.push(format!("{}: HLSL entry point: {e}", shader.name)),
                Ok(n) if !src.contains(&format!("[numthreads({x}, {y}, {z})]\nvoid {n}(")) => {
                    errors.push(format!(
                        "{}: no `[numthreads] void {n}(` in the HLSL",
                        shader.name
                    ))
                }
                Ok(_) => {}
            }
        }
        errors
    });
}

#[test]
fn glsl() {
    // GLES 3.1 is what wgpu's GL backend needs for compute; 4.30 core is desktop GL's equivalent.
    let versions = [glsl::Version::new_gles(310), glsl::Version::Desktop(430)];
    for_each_shader(|shader, module, info| {
        let mut errors = Vec::new();
        // A GLSL program has one entry point: translate each separately (it becomes `main`).
        for (ep, version) in module
            .entry_points
            .iter()
            .flat_map(|e| versions.map(|v| (e, v)))
        {
            let opts = glsl::Options {
                version,
                ..Default::default()
            };
            let pipeline = glsl::PipelineOptions {
                shader_stage: ShaderStage::Compute,
                entry_point: ep.name.clone(),
                multiview: None,
            };
            let mut src = String::new();
            let at = format!("{}::{} (GLSL {version})", shader.name, ep.name);
            let written = glsl::Writer::new(
                &mut src,
                module,
                info,
                &opts,
                &pipeline,
                naga::proc::BoundsCheckPolicies::default(),
            )
            .and_then(|mut w| w.write());
            if let Err(e) = written {
                errors.push(format!("{at}: {e}"));
                continue;
            }
            let [x, y, z] = ep.workgroup_size;
            let layout =
                format!("layout(local_size_x = {x}, local_size_y = {y}, local_size_z = {z}) in;");
            if !src.starts_with("#version")
                || !src.contains(&layout)
                || !src.contains("void main()")
            {
                errors.push(format!(
                    "{at}: missing #version, `{layout}` or `void main()`"
                ));
            }
        }
        errors
    });
}

/// WGSL (and so Chrome's Tint) rejects a bitwise `&`, `|` or `^` mixed with another binary
/// operator without parentheses ("mixing '<' and '&' requires parenthesis"); naga accepts it, so
/// the browser would be the first to fail. Checks every shader line at each parenthesis depth
/// (binary operators are written with spaces around them in this crate's shaders).
#[test]
fn bitwise_operators_are_parenthesised_for_tint() {
    let mut errors = Vec::new();
    for shader in drconv::internal::gpu::shaders::ALL {
        for (n, line) in shader.source().lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if let Some(e) = mixed_bitwise(code) {
                errors.push(format!(
                    "{} line {}: {e}: {}",
                    shader.name,
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// The first operator mixed with a bitwise one at the same depth of one expression, if any.
fn mixed_bitwise(code: &str) -> Option<String> {
    const OTHER: [&str; 16] = [
        "+", "-", "*", "/", "%", "<", ">", "<=", ">=", "==", "!=", "<<", ">>", "&&", "||", "=",
    ];
    // Per open parenthesis depth: (saw a bitwise operator, first other operator seen).
    let mut stack: Vec<(bool, Option<String>)> = vec![(false, None)];
    let tokens: Vec<&str> = code
        .split_inclusive(['(', ')', ',', ';', '{', '}', '[', ']'])
        .collect();
    for chunk in tokens {
        let (body, delim) = match chunk.chars().last() {
            Some(c @ ('(' | ')' | ',' | ';' | '{' | '}' | '[' | ']')) => {
                (&chunk[..chunk.len() - 1], Some(c))
            }
            _ => (chunk, None),
        };
        for word in body.split_whitespace() {
            let top = stack.last_mut().expect("depth 0 stays");
            if matches!(word, "&" | "|" | "^") {
                top.0 = true;
            } else if OTHER.contains(&word) && word != "=" {
                top.1.get_or_insert_with(|| word.to_string());
            } else if word == "=" {
                *top = (false, None);
            }
            if let (true, Some(other)) = (top.0, &top.1) {
                return Some(format!("bitwise operator beside `{other}`"));
            }
        }
        match delim {
            Some('(' | '[') => stack.push((false, None)),
            Some(')' | ']') if stack.len() > 1 => {
                stack.pop();
            }
            Some(',' | ';' | '{' | '}') => {
                *stack.last_mut().expect("depth 0 stays") = (false, None)
            }
            _ => {}
        }
    }
    None
}
