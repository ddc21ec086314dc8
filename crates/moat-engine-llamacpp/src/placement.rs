//! Where a model runs: the GPUs that llama.cpp's build found, how many layers go to them, and
//! a line for people that says so. Offloading itself is llama.cpp's (`n_gpu_layers`).

use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::{list_llama_ggml_backend_devices, LlamaBackendDeviceType};

use crate::LoadOptions;

/// A GPU that this build of llama.cpp can offload to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuDevice {
    /// llama.cpp's name for it (`CUDA0`, `Vulkan0`, `MTL0`).
    pub name: String,
    /// The driver's description (`NVIDIA H100 80GB HBM3`).
    pub description: String,
    pub memory_total_bytes: u64,
    pub memory_free_bytes: u64,
}

/// The GPUs llama.cpp sees; empty on a CPU build or a machine without one. Initializes the
/// backend first (device discovery needs it).
pub fn gpu_devices() -> Vec<GpuDevice> {
    if crate::backend().is_err() {
        return Vec::new();
    }
    list_llama_ggml_backend_devices()
        .into_iter()
        .filter(|device| {
            matches!(
                device.device_type,
                LlamaBackendDeviceType::Gpu | LlamaBackendDeviceType::IntegratedGpu
            )
        })
        .map(|device| GpuDevice {
            name: device.name,
            description: device.description,
            memory_total_bytes: u64::try_from(device.memory_total).unwrap_or(u64::MAX),
            memory_free_bytes: u64::try_from(device.memory_free).unwrap_or(u64::MAX),
        })
        .collect()
}

/// llama.cpp's model parameters for `options` (its defaults, which offload every layer when a
/// GPU is present, unless `gpu_layers` says otherwise).
pub(crate) fn model_params(options: &LoadOptions) -> LlamaModelParams {
    let params = LlamaModelParams::default();
    match options.gpu_layers {
        Some(layers) => params.with_n_gpu_layers(layers),
        None => params,
    }
}

/// Whether any of the model's layers run on a GPU.
pub(crate) fn offloads(gpus: &[GpuDevice], gpu_layers: Option<u32>) -> bool {
    !gpus.is_empty() && gpu_layers != Some(0)
}

/// One line on where the model runs. llama.cpp offloads the repeating layers and then the
/// output layer, so a model of `n_layer` layers has `n_layer + 1` to offload.
pub(crate) fn describe(gpus: &[GpuDevice], gpu_layers: Option<u32>, n_layer: u32) -> String {
    let offloadable = n_layer.saturating_add(1);
    let offloaded = gpu_layers.map_or(offloadable, |layers| layers.min(offloadable));
    if !offloads(gpus, gpu_layers) {
        return "CPU".to_string();
    }
    let names: Vec<String> = gpus
        .iter()
        .map(|gpu| format!("{} ({})", gpu.name, gpu.description))
        .collect();
    format!("{}: {offloaded} of {offloadable} layers", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h100() -> GpuDevice {
        GpuDevice {
            name: "CUDA0".into(),
            description: "NVIDIA H100 80GB HBM3".into(),
            memory_total_bytes: 80 << 30,
            memory_free_bytes: 79 << 30,
        }
    }

    #[test]
    fn without_a_gpu_the_model_runs_on_the_cpu() {
        assert_eq!(describe(&[], None, 30), "CPU");
        assert_eq!(describe(&[], Some(10), 30), "CPU");
    }

    #[test]
    fn zero_gpu_layers_keeps_the_model_on_the_cpu() {
        assert_eq!(describe(&[h100()], Some(0), 30), "CPU");
        assert!(!offloads(&[h100()], Some(0)));
        assert!(!offloads(&[], None));
        assert!(offloads(&[h100()], None));
    }

    #[test]
    fn the_default_offloads_every_layer_and_the_output() {
        assert_eq!(
            describe(&[h100()], None, 30),
            "CUDA0 (NVIDIA H100 80GB HBM3): 31 of 31 layers"
        );
    }

    #[test]
    fn a_layer_count_is_capped_at_what_the_model_has() {
        assert_eq!(
            describe(&[h100()], Some(12), 30),
            "CUDA0 (NVIDIA H100 80GB HBM3): 12 of 31 layers"
        );
        assert_eq!(
            describe(&[h100()], Some(999), 30),
            "CUDA0 (NVIDIA H100 80GB HBM3): 31 of 31 layers"
        );
    }

    #[test]
    fn model_params_pass_the_layer_count_through() {
        let mut options = LoadOptions::new("m");
        assert_eq!(model_params(&options).n_gpu_layers(), -1);
        options.gpu_layers = Some(0);
        assert_eq!(model_params(&options).n_gpu_layers(), 0);
        options.gpu_layers = Some(7);
        assert_eq!(model_params(&options).n_gpu_layers(), 7);
    }
}
